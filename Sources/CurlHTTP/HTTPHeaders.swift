/// An ordered list of HTTP header fields with case-insensitive lookup.
///
/// Order and spelling are kept as given: signed upload URLs must get exactly the headers the
/// server asked for.
public struct HTTPHeaders: Sendable, Equatable, Sequence, ExpressibleByDictionaryLiteral, CustomStringConvertible {
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(name: String, value: String) {
            self.name = name
            self.value = value
        }
    }

    public private(set) var fields: [Field]

    public init() { fields = [] }

    public init(_ pairs: [(String, String)]) { fields = pairs.map { Field(name: $0.0, value: $0.1) } }

    public init(dictionaryLiteral elements: (String, String)...) { self.init(elements) }

    public var isEmpty: Bool { fields.isEmpty }
    public var count: Int { fields.count }

    /// The first value of `name` (case-insensitive), or nil.
    public subscript(name: String) -> String? {
        let key = name.lowercased()
        return fields.first { $0.name.lowercased() == key }?.value
    }

    /// Every value of `name` (case-insensitive), in order.
    public func values(for name: String) -> [String] {
        let key = name.lowercased()
        return fields.filter { $0.name.lowercased() == key }.map(\.value)
    }

    public func contains(_ name: String) -> Bool { self[name] != nil }

    /// Appends a field (keeps existing fields of the same name).
    public mutating func add(_ name: String, _ value: String) { fields.append(Field(name: name, value: value)) }

    /// Replaces every field of `name` with one field.
    public mutating func set(_ name: String, _ value: String) {
        remove(name)
        add(name, value)
    }

    public mutating func remove(_ name: String) {
        let key = name.lowercased()
        fields.removeAll { $0.name.lowercased() == key }
    }

    public func makeIterator() -> IndexingIterator<[Field]> { fields.makeIterator() }

    /// Names only: values may be secrets (`Authorization`).
    public var description: String { "HTTPHeaders(" + fields.map(\.name).joined(separator: ", ") + ")" }

    /// Parses `"Name:Value"` strings as W&B returns them in `uploadHeaders`: split at the first
    /// `:`, value trimmed (wandb-core `filetransfer.ParseHeaders`). Strings without `:` are skipped.
    public static func parseNameColonValue(_ lines: [String]) -> HTTPHeaders {
        var h = HTTPHeaders()
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = trimHeaderText(line[..<colon])
            let value = trimHeaderText(line[line.index(after: colon)...])
            if !name.isEmpty { h.add(name, value) }
        }
        return h
    }
}

/// Trims spaces and tabs (and trailing CR/LF) from both ends.
fileprivate func trimHeaderText<S: StringProtocol>(_ text: S) -> String {
    var s = Substring(text)
    while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
    while let l = s.last, l == " " || l == "\t" || l == "\r" || l == "\n" || l == "\r\n" { s.removeLast() }
    return String(s)
}
