/// A job spec that cannot be used, with where in the YAML the problem is and what to change.
public struct JobSpecError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The field's path in the spec (`presets.a6000.batch_size`), or "" for the whole document.
    public let field: String
    /// 1-based line of the offending node, when known.
    public let line: Int?
    /// 1-based column of the offending node, when known.
    public let column: Int?
    /// What is wrong and what to write instead.
    public let message: String

    public init(field: String, line: Int? = nil, column: Int? = nil, message: String) {
        self.field = field
        self.line = line
        self.column = column
        self.message = message
    }

    public var description: String {
        let place = line.map { "line \($0)" + (column.map { ", column \($0)" } ?? "") }
        switch (field.isEmpty, place) {
        case (true, nil): return "job spec: \(message)"
        case (true, let p?): return "job spec, \(p): \(message)"
        case (false, nil): return "job spec field '\(field)': \(message)"
        case (false, let p?): return "job spec field '\(field)' (\(p)): \(message)"
        }
    }
}
