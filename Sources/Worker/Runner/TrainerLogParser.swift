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
/// - After it, every number the real trainer prints (train_gpt_v2.py at edu-ide/index-tts 7de3cca:
///   `| 374.2steps/min 24.9samples/s 0.16s/step ETA:0.0h | grad_norm=4.08 (clipped 0.50)
///   lr_eff=9.619e-06 GPU=0.0GB data=3.7%`), named after the TensorBoard tag of the same number
///   where there is one: `train/steps_per_min`, `train/samples_per_sec`, `train/time_per_step`,
///   `train/eta_hours`, `train/grad_norm` (the norm before clipping), `train/gradient_norm_clipped`
///   (min(norm, clip)), `train/lr_effective`, `train/gpu_memory_allocated_gb`,
///   `train/data_wait_pct` (data loading's share of the step); `[Val]`'s `val_time=Nmin` is
///   `val/time_minutes`. A rate may also be written with a space (`374.2 steps/min`).
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
                // Rates: `374.2steps/min` (the real trainer: no space) or `374.2 steps/min`.
                if let (unit, key) = rateUnits.first(where: { word.hasSuffix($0.unit) }) {
                    let glued = word.dropLast(unit.count)
                    if !glued.isEmpty, let v = number(glued) {
                        values.append((key: key, value: v))
                    } else if glued.isEmpty, i > 0, let v = number(words[i - 1]) {
                        values.append((key: key, value: v))
                    }
                } else if word.hasPrefix("ETA:"), let v = number(word.dropFirst(4), dropping: "h") {
                    values.append((key: "train/eta_hours", value: v))
                } else if word == "(clipped", i + 1 < words.count, let v = number(words[i + 1], dropping: ")") {
                    values.append((key: "train/gradient_norm_clipped", value: v))
                } else if let (key, raw) = keyValue(word) {
                    switch key {
                    case "grad_norm": if let v = number(raw) { values.append((key: "train/grad_norm", value: v)) }
                    case "lr_eff": if let v = number(raw) { values.append((key: "train/lr_effective", value: v)) }
                    case "GPU": if let v = number(raw, dropping: "GB") { values.append((key: "train/gpu_memory_allocated_gb", value: v)) }
                    case "data": if let v = number(raw, dropping: "%") { values.append((key: "train/data_wait_pct", value: v)) }
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

    /// The rate units after the first `|` and the keys they become (the TensorBoard tags of the
    /// same numbers, so both sources de-duplicate).
    private static let rateUnits: [(unit: String, key: String)] = [
        ("steps/min", "train/steps_per_min"), ("samples/s", "train/samples_per_sec"), ("s/step", "train/time_per_step"),
    ]

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
