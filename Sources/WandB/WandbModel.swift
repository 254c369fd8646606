import Foundation
import Shared

/// The facts about a run that W&B keeps: one tts-cluster run is one W&B run, with the same
/// 8-character id for its whole life (across restarts and moves between workers).
public struct WandbRunInfo: Sendable, Equatable, Codable {
    /// 8 characters from `[a-z0-9]`.
    public var runId: String
    public var project: String
    /// nil: the API key's default entity.
    public var entity: String?
    public var displayName: String
    public var group: String?
    public var jobType: String?
    public var tags: [String]
    public var notes: String?
    public var host: String
    /// Every hyperparameter and fact worth filtering on (GPU class, preset, manifest hashes, git commit).
    public var config: [String: JSONValue]
    public var startTime: Date

    public init(runId: String, project: String, entity: String? = nil, displayName: String, group: String? = nil,
                jobType: String? = nil, tags: [String] = [], notes: String? = nil, host: String,
                config: [String: JSONValue] = [:], startTime: Date) {
        self.runId = runId
        self.project = project
        self.entity = entity
        self.displayName = displayName
        self.group = group
        self.jobType = jobType
        self.tags = tags
        self.notes = notes
        self.host = host
        self.config = config
        self.startTime = startTime
    }

    /// A fresh run id: 8 characters from `[a-z0-9]`, like the SDK's.
    public static func newRunId() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String(SecureRandom.bytes(8).map { alphabet[Int($0) % alphabet.count] })
    }
}

/// A value logged to W&B history or summary.
public enum WandbValue: Sendable, Equatable {
    case number(Double)
    case integer(Int64)
    case bool(Bool)
    case text(String)
    /// Raw JSON (an object such as `{"_type":"audio-file",…}` or a table).
    case json(String)

    /// The value as W&B writes it in JSON: NaN and ±Inf unquoted as `NaN`, `Infinity`,
    /// `-Infinity` (what wandb-core emits); integers without a fraction.
    public var jsonText: String {
        switch self {
        case .number(let d):
            if d.isNaN { return "NaN" }
            if d == .infinity { return "Infinity" }
            if d == -.infinity { return "-Infinity" }
            if d == d.rounded(), abs(d) < 1e15 { return String(Int64(d)) }
            return "\(d)"
        case .integer(let i): return String(i)
        case .bool(let b): return b ? "true" : "false"
        case .text(let s): return WandbValue.quote(s)
        case .json(let raw): return raw
        }
    }

    /// A JSON string literal.
    public static func quote(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }
}

/// One history row: everything logged at one step.
public struct WandbHistoryRow: Sendable, Equatable {
    public var step: Int64
    /// Unix seconds.
    public var timestamp: Double
    /// Seconds since the run started.
    public var runtime: Double
    /// Keys in a stable order.
    public var values: [(key: String, value: WandbValue)]

    public init(step: Int64, timestamp: Double, runtime: Double, values: [(key: String, value: WandbValue)]) {
        self.step = step
        self.timestamp = timestamp
        self.runtime = runtime
        self.values = values
    }

    public static func == (a: WandbHistoryRow, b: WandbHistoryRow) -> Bool {
        a.step == b.step && a.timestamp == b.timestamp && a.runtime == b.runtime
            && a.values.map(\.key) == b.values.map(\.key) && a.values.map(\.value) == b.values.map(\.value)
    }

    /// The `wandb-history.jsonl` line: `{"_step":…, keys…, "_timestamp":…, "_runtime":…}`.
    public var jsonLine: String {
        var parts = ["\"_step\":\(step)"]
        for (k, v) in values { parts.append("\(WandbValue.quote(k)):\(v.jsonText)") }
        parts.append("\"_timestamp\":\(timestamp)")
        parts.append("\"_runtime\":\(runtime)")
        return "{" + parts.joined(separator: ",") + "}"
    }
}

/// One system-metrics sample. Keys carry no `system.` prefix (e.g. `gpu.0.gpu`); the file_stream
/// events line adds it.
public struct WandbStatsSample: Sendable, Equatable {
    public var timestamp: Double
    public var runtime: Double
    public var values: [(key: String, value: Double)]

    public init(timestamp: Double, runtime: Double, values: [(key: String, value: Double)]) {
        self.timestamp = timestamp
        self.runtime = runtime
        self.values = values
    }

    public static func == (a: WandbStatsSample, b: WandbStatsSample) -> Bool {
        a.timestamp == b.timestamp && a.runtime == b.runtime && a.values.map(\.key) == b.values.map(\.key)
            && a.values.map(\.value) == b.values.map(\.value)
    }
}

/// A file of the run (media such as audio samples), by its run-relative path.
public struct WandbRunFile: Sendable, Equatable, Codable {
    /// e.g. `media/audio/sample_5000_4f43bc5e58a50d1cf1e7.wav`
    public var runPath: String
    /// The file to upload; unused when `content` is set.
    public var localPath: String
    /// Generated content (a table's JSON) uploaded as is instead of a local file.
    public var content: [UInt8]?

    public init(runPath: String, localPath: String) {
        self.runPath = runPath
        self.localPath = localPath
        self.content = nil
    }

    /// A run file whose bytes are generated, not read from disk.
    public init(runPath: String, content: [UInt8]) {
        self.runPath = runPath
        self.localPath = ""
        self.content = content
    }
}

/// A checkpoint to log as an artifact.
public struct WandbArtifactUpload: Sendable, Equatable, Codable {
    /// e.g. `model-<runId>`.
    public var name: String
    /// `model` for checkpoints.
    public var type: String
    /// `latest`, and `best` when it is the best checkpoint so far.
    public var aliases: [String]
    /// A JSON object (step, losses, preset …).
    public var metadata: [String: JSONValue]
    /// Entry name in the artifact → local file.
    public var files: [WandbRunFile]
    public var historyStep: Int64
    /// False to log exactly ``aliases`` without adding `latest`: re-logging an older checkpoint
    /// (the same files, so the same version) to move `best` to it must not move `latest` too.
    public var addsLatestAlias: Bool

    public init(name: String, type: String, aliases: [String], metadata: [String: JSONValue], files: [WandbRunFile], historyStep: Int64,
                addsLatestAlias: Bool = true) {
        self.name = name
        self.type = type
        self.aliases = aliases
        self.metadata = metadata
        self.files = files
        self.historyStep = historyStep
        self.addsLatestAlias = addsLatestAlias
    }

    enum CodingKeys: String, CodingKey { case name, type, aliases, metadata, files, historyStep, addsLatestAlias }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        self.init(name: try c.decode(String.self, forKey: .name), type: try c.decode(String.self, forKey: .type),
                  aliases: try c.decode([String].self, forKey: .aliases), metadata: try c.decode([String: JSONValue].self, forKey: .metadata),
                  files: try c.decode([WandbRunFile].self, forKey: .files), historyStep: try c.decode(Int64.self, forKey: .historyStep),
                  addsLatestAlias: try c.decodeIfPresent(Bool.self, forKey: .addsLatestAlias) ?? true)
    }
}
