import Foundation

/// An artifact's manifest (`wandb-storage-policy-v1`, storage layout V2) and its digests
/// (reference §4.2):
///
/// - entry digest: `base64(md5(file bytes))`;
/// - artifact digest (`CreateArtifact.digest`): hex MD5 of `"wandb-artifact-manifest-v1\n"`
///   followed by `"<path>:<entry digest>\n"` per entry, sorted by path;
/// - the manifest file itself: `{"version":1,"storagePolicy":"wandb-storage-policy-v1",
///   "storagePolicyConfig":{"storageLayout":"V2"},"contents":{path:{digest,size,birthArtifactID,…}}}`,
///   uploaded with `CreateArtifactManifest.digest = base64(md5(manifest bytes))`.
public struct WandbArtifactManifest: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        /// Path inside the artifact, e.g. `gpt.pth`.
        public var path: String
        /// `base64(md5(bytes))`.
        public var digest: String
        public var size: Int64
        /// The artifact whose upload first stored these bytes (from `CreateArtifactFiles`).
        public var birthArtifactID: String?

        public init(path: String, digest: String, size: Int64, birthArtifactID: String? = nil) {
            self.path = path
            self.digest = digest
            self.size = size
            self.birthArtifactID = birthArtifactID
        }
    }

    public var entries: [Entry]

    public init(entries: [Entry]) { self.entries = entries.sorted { $0.path < $1.path } }

    /// The `CreateArtifact.digest`: hex MD5 of the manifest-v1 text.
    public var digest: String {
        var text = "wandb-artifact-manifest-v1\n"
        for e in entries { text += "\(e.path):\(e.digest)\n" }
        return Self.hex(MD5.hash(Array(text.utf8)))
    }

    /// The manifest file's bytes (entries sorted by path; `local_path` left out).
    public func jsonBytes() -> [UInt8] {
        var contents: [(String, String)] = []
        for e in entries {
            var members: [(String, String)] = [("digest", WandbValue.quote(e.digest)), ("size", String(e.size))]
            if let birth = e.birthArtifactID { members.append(("birthArtifactID", WandbValue.quote(birth))) }
            members.append(("skip_cache", "false"))
            contents.append((e.path, WandbJSON.orderedObject(members)))
        }
        let text = WandbJSON.orderedObject([
            ("version", "1"),
            ("storagePolicy", "\"wandb-storage-policy-v1\""),
            ("storagePolicyConfig", "{\"storageLayout\":\"V2\"}"),
            ("contents", WandbJSON.orderedObject(contents)),
        ])
        return Array(text.utf8)
    }

    public static func base64(_ bytes: [UInt8]) -> String { Data(bytes).base64EncodedString() }

    public static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        var s = ""
        s.reserveCapacity(bytes.count * 2)
        for b in bytes {
            s.append(digits[Int(b >> 4)])
            s.append(digits[Int(b & 15)])
        }
        return s
    }
}
