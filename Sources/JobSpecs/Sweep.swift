import Foundation

/// A grid sweep: `sweep: {grid: {lr: [1e-5, 2e-5], warmup: [1000, 30000]}}` — one run per
/// combination of the axes' values.
public struct SweepGrid: Sendable, Equatable, Hashable {
    /// One swept hyperparameter and its values, in the order written.
    public struct Axis: Sendable, Equatable, Hashable {
        public var name: String
        public var values: [ParameterValue]
        public init(name: String, values: [ParameterValue]) {
            self.name = name
            self.values = values
        }
    }

    /// The axes in the order written; the first varies slowest.
    public var axes: [Axis]

    public init(axes: [Axis]) { self.axes = axes }

    /// How many runs the grid makes; `Int.max` when that many cannot be counted (the product of
    /// the axes' sizes overflows), which is refused like any grid too large.
    public var count: Int {
        axes.reduce(1) { product, axis in
            let (n, overflow) = product.multipliedReportingOverflow(by: axis.values.count)
            return overflow ? .max : n
        }
    }

    /// Every combination, first axis slowest: `[[lr=1e-5, warmup=1000], [lr=1e-5, warmup=30000], …]`.
    public func combinations() -> [[Hyperparameter]] {
        var result: [[Hyperparameter]] = [[]]
        for axis in axes {
            result = result.flatMap { prefix in axis.values.map { prefix + [Hyperparameter(name: axis.name, value: $0)] } }
        }
        return result
    }

    /// The run name of a combination: `name` + value for each axis, joined by `_`
    /// (`lr1e-5_warmup30k`). See ``label(_:)`` for how values are written.
    public static func runName(_ combination: [Hyperparameter]) -> String {
        combination.map { $0.name + label($0.value) }.joined(separator: "_")
    }

    /// A value as it appears in a run name: whole multiples of 1,000,000 / 1,000 as `NM` / `Nk`
    /// (`30000` → `30k`), other values as written (`1e-5`, `0.5`), with characters outside
    /// `A-Z a-z 0-9 . - +` replaced by `-`.
    public static func label(_ value: ParameterValue) -> String {
        let trimmed = value.text.replacingOccurrences(of: "_", with: "")
        if let n = Int64(trimmed), n != 0 {
            if n % 1_000_000 == 0 { return "\(n / 1_000_000)M" }
            if n % 1000 == 0 { return "\(n / 1000)k" }
        }
        return String(value.text.map { c -> Character in
            c.isASCII && (c.isLetter || c.isNumber || c == "." || c == "-" || c == "+") ? c : "-"
        })
    }
}
