import Foundation

/// Number formatting shared by alert summaries (only on transitions, never per point).
enum AlertText {
    /// Four significant digits; `NaN`, `+Inf`, `-Inf` for non-finite values.
    static func number(_ x: Double) -> String {
        if x.isNaN { return "NaN" }
        if x.isInfinite { return x > 0 ? "+Inf" : "-Inf" }
        return String(format: "%.4g", x)
    }

    /// A ratio as `2.01×`.
    static func ratio(_ x: Double) -> String { String(format: "%.2f×", x) }

    /// A signed percentage, `+3.1%` / `-12%`.
    static func percent(_ x: Double) -> String { String(format: "%+.1f%%", x * 100) }

    /// `1h 02m`, `3m 20s`, `45s`.
    static func duration(_ seconds: Double) -> String {
        guard seconds.isFinite, seconds >= 0 else { return "?" }
        let s = Int(seconds.rounded())
        if s >= 86_400 { return "\(s / 86_400)d \(s % 86_400 / 3600)h" }
        if s >= 3600 { return String(format: "%dh %02dm", s / 3600, s % 3600 / 60) }
        if s >= 60 { return String(format: "%dm %02ds", s / 60, s % 60) }
        return "\(s)s"
    }
}
