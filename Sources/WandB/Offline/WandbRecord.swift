import Foundation
import Shared

/// One entry of a `FilesRecord`: a run file (under the run's `files/`) that `wandb sync` uploads.
public struct WandbFilesItem: Sendable, Equatable {
    /// `FilesItem.PolicyType`.
    public enum Policy: Int32, Sendable { case now = 0, end = 1, live = 2 }
    /// `FilesItem.FileType`.
    public enum FileType: Int32, Sendable { case other = 0, wandb = 1, media = 2, artifact = 3 }

    /// Run-relative path, e.g. `media/audio/sample_500_4f43bc5e58a50d1cf1e7.wav`.
    public var path: String
    public var policy: Policy
    public var type: FileType

    /// Defaults as the 0.31 SDK writes them for media: policy NOW, type OTHER.
    public init(path: String, policy: Policy = .now, type: FileType = .other) {
        self.path = path
        self.policy = policy
        self.type = type
    }
}

/// The content of an offline `ArtifactRecord` (written only in offline mode; `wandb sync` replays
/// it through `CreateArtifact` … `CommitArtifact`).
public struct WandbArtifactRecord: Sendable, Equatable {
    /// One file of the artifact.
    public struct Entry: Sendable, Equatable {
        /// Name inside the artifact, e.g. `gpt.pth`.
        public var path: String
        /// `base64(md5(bytes))`.
        public var digest: String
        public var size: Int64
        /// Where the bytes are at sync time (must still exist then).
        public var localPath: String

        public init(path: String, digest: String, size: Int64, localPath: String) {
            self.path = path
            self.digest = digest
            self.size = size
            self.localPath = localPath
        }
    }

    public var runId: String
    public var project: String
    public var entity: String?
    /// `model` for checkpoints.
    public var type: String
    public var name: String
    public var description: String?
    /// A JSON object as text.
    public var metadataJSON: String
    public var aliases: [String]
    public var entries: [Entry]
    /// 128 characters from `[a-z0-9]`.
    public var clientId: String
    /// 128 characters from `[a-z0-9]`.
    public var sequenceClientId: String

    public init(runId: String, project: String, entity: String?, type: String, name: String, description: String? = nil,
                metadataJSON: String, aliases: [String], entries: [Entry],
                clientId: String = WandbArtifactRecord.newClientId(),
                sequenceClientId: String = WandbArtifactRecord.newClientId()) {
        self.runId = runId
        self.project = project
        self.entity = entity
        self.type = type
        self.name = name
        self.description = description
        self.metadataJSON = metadataJSON
        self.aliases = aliases
        self.entries = entries
        self.clientId = clientId
        self.sequenceClientId = sequenceClientId
    }

    /// The artifact digest (`digest_algorithm` MANIFEST_MD5): hex MD5 of
    /// `"wandb-artifact-manifest-v1\n"` followed by `"<path>:<b64 digest>\n"` per entry, sorted by path
    /// (`artifact_manifest_v1.py` `digest()`).
    public var digest: String {
        var text = "wandb-artifact-manifest-v1\n"
        for e in entries.sorted(by: { Array($0.path.utf8).lexicographicallyPrecedes(Array($1.path.utf8)) }) {
            text += "\(e.path):\(e.digest)\n"
        }
        return MD5.hash(Array(text.utf8)).hexString
    }

    /// A fresh 128-character `[a-z0-9]` id, as the SDK's `runid.generate_id(128)`.
    public static func newClientId() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        var out = ""
        out.reserveCapacity(128)
        // Rejection sampling keeps the distribution uniform over 36 symbols.
        while out.count < 128 {
            for b in SecureRandom.bytes(160) where b < 252 && out.count < 128 {
                out.append(alphabet[Int(b) % 36])
            }
        }
        return out
    }
}

/// The `wandb_internal.Record` kinds this package writes to a `.wandb` file, and their protobuf
/// encoding (`wandb/proto/wandb_internal.proto`; field numbers checked against the 0.29.0 and
/// 0.31.0 descriptors). Values travel as `value_json`: the raw JSON text of the value, with
/// NaN/±Infinity unquoted as wandb-core writes them.
public enum WandbRecord: Sendable {
    /// `HeaderRecord{version_info{producer, min_consumer}}` (optional; written first).
    case header(producer: String, minConsumer: String)
    /// `RunRecord`: run id, entity, project, config, group, job type, display name, notes, tags,
    /// host, start time. Must precede every other record but the header.
    case run(WandbRunInfo)
    /// `HistoryRecord`: the row's values plus `_timestamp`, `_runtime`, `_step` items, and `step{num}`.
    case history(WandbHistoryRow)
    /// `SummaryRecord{update[...]}` with `(key, value_json)` items.
    case summary([(key: String, valueJSON: String)])
    /// `StatsRecord{stats_type SYSTEM, timestamp, item[...]}`; keys without `system.`.
    case stats(WandbStatsSample)
    /// `FilesRecord`.
    case files([WandbFilesItem])
    /// `ArtifactRecord` with its manifest.
    case artifact(WandbArtifactRecord)
    /// `OutputRawRecord` (console output; `line` should end with a newline).
    case outputRaw(line: String, stderr: Bool, timestamp: Date)
    /// `RunExitRecord`; must be the last record.
    case exit(code: Int32, runtimeSeconds: Int32)

    /// The `Record` field number of this kind's oneof case.
    public var fieldNumber: Int {
        switch self {
        case .history: return 2
        case .summary: return 3
        case .files: return 6
        case .stats: return 7
        case .artifact: return 8
        case .outputRaw: return 13
        case .run: return 17
        case .exit: return 18
        case .header: return 21
        }
    }

    /// The serialized `Record{num, <kind>}`. `num` is 1-based and increases by one per record.
    public func encoded(num: Int64) -> [UInt8] {
        // History is most of a run's records: encoded in one pass into one buffer.
        if case .history(let row) = self { return WandbRecord.encodeHistory(num: num, row: row) }
        var w = ProtobufWriter()
        w.int64(1, num)
        w.message(fieldNumber) { m in encodeBody(&m) }
        return w.bytes
    }

    private func encodeBody(_ m: inout ProtobufWriter) {
        switch self {
        case .header(let producer, let minConsumer):
            m.message(1) { v in
                v.string(1, producer)
                v.string(2, minConsumer)
            }
        case .run(let run):
            m.string(1, run.runId)
            m.string(2, run.entity)
            m.string(3, run.project)
            m.message(4) { c in
                for key in run.config.keys.sorted() {
                    c.message(1) { item in
                        item.string(1, key)
                        item.lengthDelimited(16, Array(WandbRecord.jsonText(run.config[key]!).utf8))
                    }
                }
            }
            m.string(6, run.group)
            m.string(7, run.jobType)
            m.string(8, run.displayName)
            m.string(9, run.notes)
            m.repeatedString(10, run.tags)
            m.string(13, run.host)
            m.timestamp(17, run.startTime)
        case .history(let row):
            for (key, valueJSON) in WandbRecord.historyItems(row) {
                m.message(1) { item in WandbRecord.keyValue(&item, key, valueJSON) }
            }
            m.message(2) { s in s.int64(1, row.step) }
        case .summary(let items):
            for (key, valueJSON) in items {
                m.message(1) { item in WandbRecord.keyValue(&item, key, valueJSON) }
            }
        case .stats(let sample):
            m.enumValue(1, 0)
            m.timestamp(2, Date(timeIntervalSince1970: sample.timestamp))
            for (key, value) in sample.values {
                m.message(3) { item in WandbRecord.keyValue(&item, key, WandbValue.number(value).jsonText) }
            }
        case .files(let files):
            for f in files {
                m.message(1) { item in
                    item.string(1, f.path)
                    item.enumValue(2, f.policy.rawValue)
                    item.enumValue(3, f.type.rawValue)
                }
            }
        case .artifact(let a):
            m.string(1, a.runId)
            m.string(2, a.project)
            m.string(3, a.entity)
            m.string(4, a.type)
            m.string(5, a.name)
            m.string(6, a.digest)
            m.string(7, a.description)
            m.string(8, a.metadataJSON)
            m.repeatedString(11, a.aliases)
            m.message(12) { man in
                man.int32(1, 1)
                man.string(2, "wandb-storage-policy-v1")
                man.message(3) { cfg in
                    cfg.string(1, "storageLayout")
                    cfg.string(2, "\"V2\"")
                }
                for e in a.entries {
                    man.message(4) { entry in
                        entry.string(1, e.path)
                        entry.string(2, e.digest)
                        entry.int64(4, e.size)
                        entry.string(6, e.localPath)
                    }
                }
            }
            m.bool(14, true)
            m.string(15, a.clientId)
            m.string(16, a.sequenceClientId)
            m.string(20, "MANIFEST_MD5")
        case .outputRaw(let line, let stderr, let timestamp):
            m.enumValue(1, stderr ? 0 : 1)
            m.timestamp(2, timestamp)
            m.string(3, line)
        case .exit(let code, let runtime):
            m.int32(1, code)
            m.int32(2, runtime)
        }
    }

    /// `(key, value_json)` items of a history row as written: its values (reserved `_` keys
    /// dropped), then `_timestamp`, `_runtime`, `_step`. The summary written before each history
    /// record carries the same items.
    public static func historyItems(_ row: WandbHistoryRow) -> [(key: String, valueJSON: String)] {
        var out: [(key: String, valueJSON: String)] = []
        for (k, v) in row.values where !reservedKeys.contains(k) { out.append((k, v.jsonText)) }
        out.append(("_timestamp", WandbValue.number(row.timestamp).jsonText))
        out.append(("_runtime", WandbValue.number(row.runtime).jsonText))
        out.append(("_step", String(row.step)))
        return out
    }

    /// `Record{num=1, history=2 {item=1 {key=1, value_json=16}…, step=2 {num=1}}}` written
    /// directly: the same bytes as the general encoder (which nests a buffer per message), with
    /// every length computed up front and one allocation.
    static func encodeHistory(num: Int64, row: WandbHistoryRow) -> [UInt8] {
        var items: [(key: String, value: String)] = []
        items.reserveCapacity(row.values.count + 3)
        for (k, v) in row.values where !reservedKeys.contains(k) { items.append((k, v.jsonText)) }
        items.append(("_timestamp", WandbValue.number(row.timestamp).jsonText))
        items.append(("_runtime", WandbValue.number(row.runtime).jsonText))
        items.append(("_step", String(row.step)))

        func varintSize(_ v: UInt64) -> Int { ProtobufVarint.size(v) }
        func put(_ out: inout [UInt8], _ v: UInt64) { ProtobufVarint.append(v, to: &out) }
        var itemSizes: [Int] = []
        itemSizes.reserveCapacity(items.count)
        var body = 0
        for (k, v) in items {
            let kn = k.utf8.count, vn = v.utf8.count
            // key (skipped when empty, proto3) + value_json (tag 16 takes two bytes)
            let size = (kn > 0 ? 1 + varintSize(UInt64(kn)) + kn : 0) + 2 + varintSize(UInt64(vn)) + vn
            itemSizes.append(size)
            body += 1 + varintSize(UInt64(size)) + size
        }
        let stepInner = row.step != 0 ? 1 + varintSize(UInt64(bitPattern: row.step)) : 0
        body += 1 + varintSize(UInt64(stepInner)) + stepInner
        let numSize = num != 0 ? 1 + varintSize(UInt64(bitPattern: num)) : 0
        var out: [UInt8] = []
        out.reserveCapacity(numSize + 1 + varintSize(UInt64(body)) + body)
        if num != 0 { out.append(0x08); put(&out, UInt64(bitPattern: num)) }
        out.append(0x12) // field 2, length-delimited
        put(&out, UInt64(body))
        for (i, (k, v)) in items.enumerated() {
            out.append(0x0A)
            put(&out, UInt64(itemSizes[i]))
            if !k.isEmpty {
                out.append(0x0A)
                put(&out, UInt64(k.utf8.count))
                out.append(contentsOf: k.utf8)
            }
            out.append(0x82); out.append(0x01) // field 16, length-delimited
            put(&out, UInt64(v.utf8.count))
            out.append(contentsOf: v.utf8)
        }
        out.append(0x12)
        put(&out, UInt64(stepInner))
        if row.step != 0 { out.append(0x08); put(&out, UInt64(bitPattern: row.step)) }
        return out
    }

    /// Keys this package writes itself in every history row.
    public static let reservedKeys: Set<String> = ["_step", "_timestamp", "_runtime"]

    /// A `{key=1, value_json=16}` item (`HistoryItem`, `SummaryItem`, `StatsItem`, `ConfigItem`).
    private static func keyValue(_ item: inout ProtobufWriter, _ key: String, _ valueJSON: String) {
        item.string(1, key)
        item.lengthDelimited(16, Array(valueJSON.utf8))
    }

    /// Compact JSON text of a config value: object keys sorted, numbers as ``WandbValue/jsonText``
    /// writes them (integers without a fraction, NaN/±Infinity unquoted).
    public static func jsonText(_ value: JSONValue) -> String {
        switch value {
        case .null: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .number(let d): return WandbValue.number(d).jsonText
        case .string(let s): return WandbValue.quote(s)
        case .array(let a): return "[" + a.map(jsonText).joined(separator: ",") + "]"
        case .object(let o):
            return "{" + o.keys.sorted().map { "\(WandbValue.quote($0)):\(jsonText(o[$0]!))" }.joined(separator: ",") + "}"
        }
    }
}
