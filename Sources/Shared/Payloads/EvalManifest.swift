import Foundation

/// Reads the utterances of test manifests for an evaluation (the trainer's pair manifests,
/// `path.jsonl::ko`: `id`, `target_text`, `target_audio_path`, `prompt_audio_path`, paths relative
/// to the manifest) and picks a seeded, stable subset of them.
public enum EvalManifest {
    /// Every utterance of the manifests, in file order. A record needs `id` and `target_text`
    /// (the transcript; `text` is the single-utterance manifests' name for it). Audio paths that
    /// climb out of the manifest's directory are refused.
    public static func read(_ specs: [ManifestSpec]) throws(EvalManifestError) -> [EvalUtterance] {
        var out: [EvalUtterance] = []
        var seen: Set<String> = []
        for spec in specs {
            guard let data = FileManager.default.contents(atPath: spec.path) else {
                throw EvalManifestError("test manifest \(spec.path) \(FileManager.default.fileExists(atPath: spec.path) ? "cannot be read" : "does not exist")")
            }
            out += try utterances(in: Array(data), spec: spec, seen: &seen)
        }
        guard !out.isEmpty else { throw EvalManifestError("the test manifests \(specs.map(\.path).joined(separator: ", ")) have no records") }
        return out
    }

    /// Parses the bytes of the one manifest `spec` names, as ``read(_:)`` does once it has read
    /// the file: `spec.path` locates relative audio paths and names the file in errors (the file
    /// itself is not opened). Duplicate ids keep their first record.
    public static func parse(_ data: [UInt8], spec: ManifestSpec) throws(EvalManifestError) -> [EvalUtterance] {
        var seen: Set<String> = []
        let out = try utterances(in: data, spec: spec, seen: &seen)
        guard !out.isEmpty else { throw EvalManifestError("the test manifest \(spec.path) has no records") }
        return out
    }

    /// The records of one manifest whose id is not in `seen` yet (and adds their ids to it).
    private static func utterances(in data: [UInt8], spec: ManifestSpec, seen: inout Set<String>) throws(EvalManifestError) -> [EvalUtterance] {
        var out: [EvalUtterance] = []
        let base = URL(fileURLWithPath: spec.path).deletingLastPathComponent().standardizedFileURL.path
        var line = 0
        for raw in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            line += 1
            if raw.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            guard let value = try? JSONCoding.decode(JSONValue.self, from: Array(raw)), case .object(let o) = value else {
                throw EvalManifestError("test manifest \(spec.path) line \(line) is not a JSON object")
            }
            guard let text = o["target_text"]?.stringValue ?? o["text"]?.stringValue else {
                throw EvalManifestError("test manifest \(spec.path) line \(line) has no \"target_text\"")
            }
            let id = o["id"]?.stringValue ?? "\(spec.path):\(line)"
            guard seen.insert(id).inserted else { continue }
            func path(_ key: String) throws(EvalManifestError) -> String? {
                guard let p = o[key]?.stringValue, !p.isEmpty else { return nil }
                let full = p.hasPrefix("/") ? URL(fileURLWithPath: p).standardizedFileURL.path
                    : URL(fileURLWithPath: base).appendingPathComponent(p).standardizedFileURL.path
                guard p.hasPrefix("/") || full.hasPrefix(base + "/") else {
                    throw EvalManifestError("test manifest \(spec.path) line \(line): \(key) \(p) is outside the manifest's directory \(base)")
                }
                return full
            }
            var reference = try path("target_audio_path")
            if reference == nil { reference = try path("audio_path") }
            out.append(EvalUtterance(id: id, text: text, referenceAudio: reference, promptAudio: try path("prompt_audio_path"),
                                     codecAudio: try path("target_codec_audio_path")))
        }
        return out
    }

    /// `count` utterances picked by seed: ordered by SHA-256 of `seed|id`, so the same seed (a
    /// run's id) picks the same utterances for every checkpoint, whatever the file order, and a
    /// larger count only adds to a smaller one's pick. Returned in that order.
    public static func subset(_ utterances: [EvalUtterance], count: Int, seed: String) -> [EvalUtterance] {
        let keyed = utterances.map { u in (key: SHA256.hash(Array("\(seed)|\(u.id)".utf8)).hexString, u) }
        return keyed.sorted { $0.key < $1.key }.prefix(max(0, count)).map(\.1)
    }
}

public struct EvalManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
