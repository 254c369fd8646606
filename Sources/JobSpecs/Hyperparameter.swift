import Foundation

/// A scalar written in a job spec, kept exactly as written (`1e-5` stays `1e-5` on the command
/// line and in run names), with its numeric value when it is a number.
public struct ParameterValue: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// The text as written in the YAML (without quotes).
    public var text: String
    /// The value as a number, if the text is one (`1e-5`, `30000`, `30_000`).
    public var number: Double? { Double(text.replacingOccurrences(of: "_", with: "")) }

    public init(_ text: String) { self.text = text }

    public var description: String { text }
}

/// One named hyperparameter (`lr: 1e-5`), usable as `{lr}` in the command.
public struct Hyperparameter: Sendable, Equatable, Hashable {
    public var name: String
    public var value: ParameterValue

    public init(name: String, value: ParameterValue) {
        self.name = name
        self.value = value
    }
}
