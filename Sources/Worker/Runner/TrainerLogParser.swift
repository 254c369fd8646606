import Shared

/// One metrics line the IndexTTS-2 trainer (`trainers/train_gpt_v2.py`) prints on stdout:
///
///     [Train] epoch=E step=S text_loss=… mel_loss=… mel_top1=… lr=… | …steps/min … ETA:…h | grad_norm=… GPU=…GB
///     [Val] epoch=E step=S text_loss=… mel_loss=… mel_top1=… | val_time=…min
public struct TrainerLogLine: Sendable, Equatable {
    /// Which kind of line: its metrics get the phase as key prefix (`train/…`, `val/…`).
    public enum Phase: String, Sendable, Equatable {
        case train
        case val
    }

    public var phase: Phase
    public var epoch: Int?
    public var step: Int64
    /// The numbers of the line with their full keys (`train/text_loss`), in line order. NaN and
    /// ±Inf are carried.
    public var values: [(key: String, value: Double)]

    public init(phase: Phase, epoch: Int?, step: Int64, values: [(key: String, value: Double)]) {
        self.phase = phase
        self.epoch = epoch
        self.step = step
        self.values = values
    }

    /// The line's metrics as points of run `runId`, stamped with `wallTime` (when the line was read).
    public func metricPoints(runId: String, wallTime: Double) -> [MetricPoint] {
        values.map { MetricPoint(runId: runId, step: step, key: $0.key, value: $0.value, wallTime: wallTime) }
    }

    public static func == (a: TrainerLogLine, b: TrainerLogLine) -> Bool {
        a.phase == b.phase && a.epoch == b.epoch && a.step == b.step && a.values.count == b.values.count
            && zip(a.values, b.values).allSatisfy { $0.key == $1.key && $0.value.bitPattern == $1.value.bitPattern }
    }
}

/// Turns the trainer's `[Train]` and `[Val]` stdout lines into metrics; every other line is nil.
///
/// - The marker may follow a prefix (a timestamp, a logger name); the first `[Train]`/`[Val]` counts.
/// - Before the first `|`, every `key=number` becomes `<phase>/key` (`text_loss`, `mel_loss`,
///   `mel_top1`, `lr`, and whatever else the trainer adds there, e.g. `speaker_loss`); `epoch` and
///   `step` are the line's position, not metrics (`step=S/T` is read as S).
/// - After it, `N steps/min` becomes `train/steps_per_min`, `grad_norm=N` `train/grad_norm` and
///   `val_time=Nmin` `val/time_minutes` (the TensorBoard tag for it); ETA and GPU memory are skipped.
/// - `nan`, `inf`, `-inf` (Python's spellings) are carried as values; a token that is not a number
///   is skipped; a line without `step=` is not a metrics line.
public enum TrainerLogParser {
    /// Parses one line (without its newline).
    public static func parse(_ line: Substring) -> TrainerLogLine? {
        let phase: TrainerLogLine.Phase
        let rest: Substring
        if let r = line.range(of: "[Train]") {
            phase = .train
            rest = line[r.upperBound...]
        } else if let r = line.range(of: "[Val]") {
            phase = .val
            rest = line[r.upperBound...]
        } else {
            return nil
        }
        let segments = rest.split(separator: "|", omittingEmptySubsequences: false)
        var epoch: Int?
        var step: Int64?
        var values: [(key: String, value: Double)] = []
        for token in segments.first.map(tokens) ?? [] {
            guard let (key, raw) = keyValue(token) else { continue }
            switch key {
            case "epoch": epoch = Int(raw.split(separator: "/").first ?? raw)
            case "step": step = Int64(raw.split(separator: "/").first ?? raw)
            default:
                if let v = number(raw) { values.append((key: "\(phase.rawValue)/\(key)", value: v)) }
            }
        }
        for segment in segments.dropFirst() {
            let words = tokens(segment)
            for (i, word) in words.enumerated() {
                if word == "steps/min", i > 0, let v = number(words[i - 1]) {
                    values.append((key: "train/steps_per_min", value: v))
                } else if let (key, raw) = keyValue(word) {
                    switch key {
                    case "grad_norm": if let v = number(raw) { values.append((key: "train/grad_norm", value: v)) }
                    case "val_time": if let v = number(raw, dropping: "min") { values.append((key: "val/time_minutes", value: v)) }
                    default: continue
                    }
                }
            }
        }
        guard let step else { return nil }
        return TrainerLogLine(phase: phase, epoch: epoch, step: step, values: values)
    }

    /// Parses one line.
    public static func parse(_ line: String) -> TrainerLogLine? { parse(line[...]) }

    private static func tokens(_ s: Substring) -> [Substring] {
        s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "," || $0 == "\r" })
    }

    private static func keyValue(_ token: Substring) -> (Substring, Substring)? {
        guard let eq = token.firstIndex(of: "="), eq != token.startIndex else { return nil }
        return (token[..<eq], token[token.index(after: eq)...])
    }

    /// A decimal number, or Python's `nan`/`inf`/`-inf`; `dropping` a unit suffix if present.
    private static func number(_ raw: Substring, dropping unit: String = "") -> Double? {
        var s = raw
        if !unit.isEmpty, s.hasSuffix(unit) { s = s.dropLast(unit.count) }
        switch s.lowercased() {
        case "nan", "+nan", "-nan": return .nan
        case "inf", "+inf", "infinity": return .infinity
        case "-inf", "-infinity": return -.infinity
        default: return Double(s)
        }
    }
}
