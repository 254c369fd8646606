import Foundation
import Shared

/// One training pair of the trainer's pair manifests (`gpt_pairs_train.jsonl`): the target's
/// text ids and semantic codes (`.npy` int32 files, paths relative to the manifest).
public struct TrainingPair: Sendable, Equatable {
    public var id: String
    public var text: String
    public var textIdsPath: String
    public var codesPath: String
    /// Lengths as the manifest states them (`target_text_len`, `target_code_len`), for bucketing
    /// without opening the files; nil when absent (then the files are read to find out).
    public var textLength: Int?
    public var codeLength: Int?
    /// The manifest's language hint (`::ko`).
    public var language: String?
    /// The voice prompt's conditioning features (`prompt_condition_path`, a float32 `.npy`), if
    /// the record has them: a module whose `forward` takes a fifth `condition` tensor gets them.
    public var conditionPath: String? = nil
}

/// Reads pair manifests given as the trainer takes them (`path.jsonl::ko`, see ``ManifestSpec``).
/// A record needs `target_text_ids_path` and `target_codes_path` (and `id`); `prompt_condition_path`
/// is read when present (``TrainingPair/conditionPath``); anything else the pipeline writes
/// (`target_emo_vec_path`, …) is ignored here.
public enum PairManifest {
    public static func read(_ spec: ManifestSpec) throws(ManifestError) -> [TrainingPair] {
        guard let data = FileManager.default.contents(atPath: spec.path) else {
            throw ManifestError(path: spec.path, line: nil, message: FileManager.default.fileExists(atPath: spec.path) ? "cannot be read" : "does not exist")
        }
        return try parse(Array(data), spec: spec)
    }

    /// Parses the bytes of the manifest `spec` names, as ``read(_:)`` does once it has read the
    /// file: `spec.path` locates relative feature paths and names the file in errors (the file
    /// itself is not opened).
    public static func parse(_ data: [UInt8], spec: ManifestSpec) throws(ManifestError) -> [TrainingPair] {
        let base = URL(fileURLWithPath: spec.path).deletingLastPathComponent().path
        var pairs: [TrainingPair] = []
        var lineNumber = 0
        for line in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false) {
            lineNumber += 1
            if line.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            guard let value = try? JSONCoding.decode(JSONValue.self, from: Array(line)), case .object(let o) = value else {
                throw ManifestError(path: spec.path, line: lineNumber, message: "is not a JSON object")
            }
            func field(_ name: String) throws(ManifestError) -> String {
                guard let s = o[name]?.stringValue, !s.isEmpty else {
                    throw ManifestError(path: spec.path, line: lineNumber, message: "has no \"\(name)\" (pair manifests need target_text_ids_path and target_codes_path)")
                }
                return s
            }
            /// A stated length: nil when absent or not a number; a number must be a whole number
            /// from 0 up (`Int(_:)` of a negative, fractional or huge one would be wrong or trap).
            func length(_ name: String) throws(ManifestError) -> Int? {
                guard let n = o[name]?.doubleValue else { return nil }
                guard n >= 0, n == n.rounded(), n < 0x1p53 else {
                    throw ManifestError(path: spec.path, line: lineNumber, message: "has \"\(name)\": \(n), which is not a whole number of 0 or more")
                }
                return Int(n)
            }
            let textIds = try field("target_text_ids_path")
            let codes = try field("target_codes_path")
            var conditionPath: String?
            if let c = o["prompt_condition_path"]?.stringValue, !c.isEmpty {
                conditionPath = try resolve(c, base: base, manifest: spec.path, line: lineNumber)
            }
            pairs.append(TrainingPair(
                id: o["id"]?.stringValue ?? "\(spec.path):\(lineNumber)", text: o["target_text"]?.stringValue ?? "",
                textIdsPath: try resolve(textIds, base: base, manifest: spec.path, line: lineNumber),
                codesPath: try resolve(codes, base: base, manifest: spec.path, line: lineNumber),
                textLength: try length("target_text_len"), codeLength: try length("target_code_len"), language: spec.language,
                conditionPath: conditionPath))
        }
        guard !pairs.isEmpty else { throw ManifestError(path: spec.path, line: nil, message: "has no records") }
        return pairs
    }

    /// A feature path relative to the manifest's directory. A path that climbs out of it
    /// (`../../etc/passwd`) is refused: a manifest names only files beside or below it.
    static func resolve(_ path: String, base: String, manifest: String, line: Int) throws(ManifestError) -> String {
        if path.hasPrefix("/") {
            return URL(fileURLWithPath: path).standardizedFileURL.path
        }
        let full = URL(fileURLWithPath: base).appendingPathComponent(path).standardizedFileURL.path
        let root = URL(fileURLWithPath: base).standardizedFileURL.path
        guard full == root || full.hasPrefix(root.hasSuffix("/") ? root : root + "/") else {
            throw ManifestError(path: manifest, line: line, message: "names \(path), which is outside the manifest's directory \(root)")
        }
        return full
    }
}

/// A manifest that cannot be used, naming the file (and line) and what is wrong.
public struct ManifestError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let line: Int?
    public let message: String
    public init(path: String, line: Int?, message: String) {
        self.path = path
        self.line = line
        self.message = message
    }
    public var description: String { "manifest \(path)\(line.map { " line \($0)" } ?? "") \(message)" }
}
