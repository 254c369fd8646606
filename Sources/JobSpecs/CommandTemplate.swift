/// A trainer command line with `{placeholder}`s, rendered into an argv array — never a shell
/// string, so a value with spaces or quotes stays one argument and nothing is interpreted by a shell.
///
/// Written in a job spec either as one string, split like a POSIX shell splits words (whitespace
/// separates; `'…'` is literal; `"…"` allows `\"`, `\\`, `\$` and `` \` `` escapes; a backslash
/// outside quotes escapes the next character; no expansion of any kind), or as a YAML list of
/// words, one argument each. In the list form an element that is itself a list is an **optional
/// group**: it is left out when any placeholder in it is empty, e.g.
/// `[--resume, "{resume_checkpoint}"]` disappears on a first start. A flag word followed by a word
/// that is exactly one placeholder is such a group implicitly (``render(_:)``), in both forms.
///
/// Placeholders are `{name}` with `name` an identifier; `{{` and `}}` are literal braces; any other
/// brace is literal. A placeholder may stand for a list (the manifests): a word or group holding
/// one is repeated once per item (`[--train-manifest, "{train_manifests}"]` becomes
/// `--train-manifest a.jsonl::ko --train-manifest b.jsonl::ko`).
public struct CommandTemplate: Sendable, Equatable, Hashable {
    /// One element of the template.
    public enum Part: Sendable, Equatable, Hashable {
        /// A word always present (repeated per item of a list placeholder; gone if the list is empty).
        case word(String)
        /// Words present only when every placeholder in them has a non-empty value.
        case optional([String])
    }

    public var parts: [Part]

    public init(parts: [Part]) { self.parts = parts }

    /// A template from one command line, split into words like a shell would.
    public init(commandLine: String) throws(CommandTemplateError) {
        self.init(parts: try Self.split(commandLine).map(Part.word))
    }

    /// Every placeholder name used.
    public var placeholders: Set<String> {
        var names: Set<String> = []
        for part in parts {
            switch part {
            case .word(let w): names.formUnion(Self.segments(w).compactMap(\.placeholder))
            case .optional(let ws): for w in ws { names.formUnion(Self.segments(w).compactMap(\.placeholder)) }
            }
        }
        return names
    }

    /// The argv for these values. Every placeholder must have a value (an empty list or `[""]` is
    /// an empty value); a word or group holding several list placeholders needs them of equal length.
    ///
    /// A flag followed by a word that is exactly one placeholder (`--val-interval "{eval_every}"`)
    /// is an **implicit optional group**: when that placeholder has no value, both words are left
    /// out, never rendered as an empty argument (which a trainer's argparse refuses for numbers).
    public func render(_ values: [String: [String]]) throws(CommandTemplateError) -> [String] {
        var argv: [String] = []
        var index = 0
        while index < parts.count {
            let part = parts[index]
            switch part {
            case .word(let w):
                if index + 1 < parts.count, Self.isFlag(w), case .word(let next) = parts[index + 1],
                   let name = Self.solePlaceholder(next), let v = values[name], v.isEmpty || v.allSatisfy(\.isEmpty) {
                    index += 2
                    continue
                }
                argv += try renderGroup([w], values, optional: false)
            case .optional(let ws):
                argv += try renderGroup(ws, values, optional: true)
            }
            index += 1
        }
        return argv
    }

    /// A literal word that looks like an option (`--val-interval`, `-n`), with no placeholder.
    static func isFlag(_ word: String) -> Bool {
        word.hasPrefix("-") && word.count > 1 && Self.segments(word).allSatisfy { $0.placeholder == nil }
    }

    /// The placeholder's name when `word` is exactly one placeholder (`{eval_every}`).
    static func solePlaceholder(_ word: String) -> String? {
        let segs = Self.segments(word)
        guard segs.count == 1 else { return nil }
        return segs[0].placeholder
    }

    /// Convenience: every value a single string.
    public func render(_ values: [String: String]) throws(CommandTemplateError) -> [String] {
        try render(values.mapValues { [$0] })
    }

    private func renderGroup(_ words: [String], _ values: [String: [String]], optional: Bool) throws(CommandTemplateError) -> [String] {
        let parsed = words.map(Self.segments)
        var names: [String] = []
        for segs in parsed { for n in segs.compactMap(\.placeholder) where !names.contains(n) { names.append(n) } }
        var repeats = 1
        var listName: String?
        for n in names {
            guard let v = values[n] else {
                throw CommandTemplateError("the command uses {\(n)} but no value was given for it; known: \(values.keys.sorted().joined(separator: ", "))")
            }
            if optional && (v.isEmpty || v.allSatisfy(\.isEmpty)) { return [] }
            if v.count != 1 {
                if let l = listName, values[l]?.count != v.count {
                    throw CommandTemplateError("{\(l)} and {\(n)} are lists of different lengths in the same command word or group")
                }
                listName = n
                repeats = v.count
            }
        }
        var out: [String] = []
        for i in 0..<repeats {
            for segs in parsed {
                var word = ""
                for s in segs {
                    switch s {
                    case .literal(let text): word += text
                    case .placeholder(let n):
                        let v = values[n] ?? []
                        word += v.count == 1 ? v[0] : v[i]
                    }
                }
                out.append(word)
            }
        }
        return out
    }

    /// A piece of a word.
    enum Segment: Equatable {
        case literal(String)
        case placeholder(String)
        var placeholder: String? { if case .placeholder(let n) = self { n } else { nil } }
    }

    /// Splits a word into literal text and `{name}` placeholders.
    static func segments(_ word: String) -> [Segment] {
        var out: [Segment] = []
        var literal = ""
        let chars = Array(word)
        var i = 0
        while i < chars.count {
            let c = chars[i]
            if c == "{", i + 1 < chars.count, chars[i + 1] == "{" {
                literal.append("{"); i += 2; continue
            }
            if c == "}", i + 1 < chars.count, chars[i + 1] == "}" {
                literal.append("}"); i += 2; continue
            }
            if c == "{", let close = chars[(i + 1)...].firstIndex(of: "}") {
                let name = String(chars[(i + 1)..<close])
                if isIdentifier(name) {
                    if !literal.isEmpty { out.append(.literal(literal)); literal = "" }
                    out.append(.placeholder(name))
                    i = close + 1
                    continue
                }
            }
            literal.append(c)
            i += 1
        }
        if !literal.isEmpty || out.isEmpty { out.append(.literal(literal)) }
        return out
    }

    static func isIdentifier(_ s: String) -> Bool {
        func letter(_ u: Unicode.Scalar) -> Bool { ("a"..."z").contains(u) || ("A"..."Z").contains(u) || u == "_" }
        guard let first = s.unicodeScalars.first, letter(first) else { return false }
        return s.unicodeScalars.allSatisfy { letter($0) || ("0"..."9").contains($0) }
    }

    /// Splits a command line into words the way a POSIX shell does, without any expansion.
    public static func split(_ line: String) throws(CommandTemplateError) -> [String] {
        var words: [String] = []
        var current = ""
        var inWord = false
        var quote: Character?
        var chars = line.makeIterator()
        while let c = chars.next() {
            switch quote {
            case "'":
                if c == "'" { quote = nil } else { current.append(c) }
            case "\"":
                if c == "\"" {
                    quote = nil
                } else if c == "\\" {
                    guard let n = chars.next() else { throw CommandTemplateError("the command ends inside a double-quoted string") }
                    if "\"\\$`".contains(n) { current.append(n) } else if n != "\n" { current.append(c); current.append(n) }
                } else {
                    current.append(c)
                }
            default:
                if c == " " || c == "\t" || c == "\n" || c == "\r" {
                    if inWord { words.append(current); current = ""; inWord = false }
                } else if c == "'" || c == "\"" {
                    quote = c
                    inWord = true
                } else if c == "\\" {
                    guard let n = chars.next() else { throw CommandTemplateError("the command ends with a lone backslash") }
                    if n != "\n" { current.append(n) }
                    inWord = true
                } else {
                    current.append(c)
                    inWord = true
                }
            }
        }
        if let q = quote { throw CommandTemplateError("unterminated \(q) quote in the command") }
        if inWord { words.append(current) }
        return words
    }
}

/// A command template that cannot be split or rendered.
public struct CommandTemplateError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
