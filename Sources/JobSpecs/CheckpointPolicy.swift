import Foundation

/// Which checkpoint a resumed run starts from (`resume:` in a job spec).
public enum ResumePolicy: String, Sendable, Equatable, CaseIterable {
    /// The newest checkpoint **with optimizer state** (a full-state pin or file); a newer light
    /// checkpoint (model only) is used only when no full-state one exists. The default: resuming
    /// from a light checkpoint restarts AdamW and the LR schedule (the whole warm-up again).
    case full
    /// The newest checkpoint of any kind, light or full: fewer steps repeated, at the price of
    /// fresh optimizer state and a restarted schedule when it is light.
    case newest
}

/// Which pinned checkpoints a run keeps (`keep: {last: N, best: K, by: eval/cer}`).
///
/// A pin is deleted once it is neither among the newest `last` pins nor among the `best` best by
/// `by` (lower is better for losses and error rates, higher for `eval/sim`-like measures named
/// in ``higherIsBetter``), and no queued or running evaluation and no resume still needs it.
/// Without `keep:` every pin is kept.
public struct RetentionPolicy: Sendable, Equatable, Hashable {
    /// How many of the newest pins to keep (nil: no limit by age).
    public var last: Int?
    /// How many of the best pins by ``measure`` to keep (nil or 0: none kept for being best).
    public var best: Int?
    /// The measure that ranks pins: a metric key logged at the pin's step (`eval/cer`,
    /// `val/text_loss`, `eval/wer`, …).
    public var measure: String

    /// Measures where a larger value is better; every other measure is better when smaller.
    public static let higherIsBetter: Set<String> = ["eval/sim", "val/mel_top1", "train/mel_top1", "eval/accuracy"]

    public init(last: Int?, best: Int?, measure: String = "eval/cer") {
        self.last = last
        self.best = best
        self.measure = measure
    }

    /// True when a larger ``measure`` is better.
    public var higherIsBetter: Bool { Self.higherIsBetter.contains(measure) }
}

extension Duration {
    /// Parses `90`, `90s`, `20m`, `1h`, `1h30m` (a bare number is seconds). Nil for anything else.
    public static func parseSpec(_ text: String) -> Duration? {
        let t = text.trimmingCharacters(in: .whitespaces).lowercased()
        if let n = Double(t), n.isFinite, n >= 0 { return .milliseconds(Int64((n * 1000).rounded())) }
        var total = 0.0
        var number = ""
        var sawUnit = false
        for c in t {
            if c.isNumber || c == "." { number.append(c); continue }
            guard let n = Double(number) else { return nil }
            switch c {
            case "h": total += n * 3600
            case "m": total += n * 60
            case "s": total += n
            default: return nil
            }
            number = ""
            sawUnit = true
        }
        guard sawUnit, number.isEmpty, total.isFinite else { return nil }
        return .milliseconds(Int64((total * 1000).rounded()))
    }
}
