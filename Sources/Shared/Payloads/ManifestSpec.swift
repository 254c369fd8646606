import Foundation

/// A manifest as the trainer takes it: `path.jsonl::ko` — a path and an optional language hint
/// after the last `::`, `@` or `=` (checked in that order, as the trainer's `parse_manifest_specs`
/// does).
public struct ManifestSpec: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var path: String
    /// Lower-cased language hint (`ko`), or nil.
    public var language: String?

    public init(path: String, language: String? = nil) {
        self.path = path
        self.language = language
    }

    /// Parses `path.jsonl::ko`, `path.jsonl@ko`, `path.jsonl=ko` or a bare path.
    public init(parsing raw: String) {
        let value = raw.trimmingCharacters(in: .whitespaces)
        for separator in ["::", "@", "="] {
            if let r = value.range(of: separator, options: .backwards) {
                let lang = value[r.upperBound...].trimmingCharacters(in: .whitespaces).lowercased()
                self.init(path: value[..<r.lowerBound].trimmingCharacters(in: .whitespaces), language: lang.isEmpty ? nil : lang)
                return
            }
        }
        self.init(path: value)
    }

    /// The trainer's argument form: `path::lang`, or the path alone.
    public var description: String { language.map { "\(path)::\($0)" } ?? path }
}
