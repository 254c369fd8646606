/// Lines for one file of a file_stream request: `content` is written at line index `offset`
/// (not a byte offset), overwriting whatever the server had at `[offset, offset + n)`.
public struct FileStreamChunk: Sendable, Equatable, Codable {
    public var offset: Int
    public var lines: [String]

    public init(offset: Int, lines: [String]) {
        self.offset = offset
        self.lines = lines
    }
}

/// The body of `POST /files/{entity}/{project}/{run}/file_stream` (wandb-core
/// `FileStreamRequestJSON`):
///
///     {"files":{"<name>":{"offset":N,"content":["<line>",…]},…},
///      "uploaded":["media/…",…], "preempting":true, "complete":true, "exitcode":0}
///
/// `files` and `uploaded` are left out when empty, `preempting` unless true, `complete` and
/// `exitcode` when nil; an empty request encodes as `{}` (the heartbeat). Encoding is
/// deterministic (files sorted by name), so re-sending the same value re-sends the same
/// bytes — the server overwrites by offset, so a replay never duplicates lines.
public struct FileStreamRequest: Sendable, Equatable, Codable {
    public static let historyFile = "wandb-history.jsonl"
    public static let eventsFile = "wandb-events.jsonl"
    public static let summaryFile = "wandb-summary.json"
    public static let outputFile = "output.log"

    /// Maximum body size (`defaultMaxRequestSizeBytes`, 10 MiB).
    public static let maxRequestBytes = 10 << 20
    /// Maximum line size (10 MiB − 100 KiB); wandb-core drops longer lines.
    public static let maxLineBytes = (10 << 20) - (100 << 10)

    public var files: [String: FileStreamChunk]
    public var uploaded: [String]
    public var preempting: Bool
    /// Only on the final request (with ``exitCode``).
    public var complete: Bool?
    public var exitCode: Int32?

    public init(files: [String: FileStreamChunk] = [:], uploaded: [String] = [], preempting: Bool = false,
                complete: Bool? = nil, exitCode: Int32? = nil) {
        self.files = files
        self.uploaded = uploaded
        self.preempting = preempting
        self.complete = complete
        self.exitCode = exitCode
    }

    /// The same, with files given as `(offset, lines)` pairs.
    public init(files: [String: (offset: Int, lines: [String])], uploaded: [String] = [], preempting: Bool = false,
                complete: Bool? = nil, exitCode: Int32? = nil) {
        self.init(files: files.mapValues { FileStreamChunk(offset: $0.offset, lines: $0.lines) }, uploaded: uploaded,
                  preempting: preempting, complete: complete, exitCode: exitCode)
    }

    /// The heartbeat `{}`, sent after 30 s without other requests.
    public static let heartbeat = FileStreamRequest()

    /// The last request of a run: the final summary at offset `summaryOffset` (0 unless
    /// resumed), the files uploaded since the previous request, `complete: true`, the exit code.
    public static func final(summaryLine: String?, summaryOffset: Int = 0, uploaded: [String], exitCode: Int32,
                             otherFiles: [String: FileStreamChunk] = [:]) -> FileStreamRequest {
        var files = otherFiles
        if let summaryLine { files[summaryFile] = FileStreamChunk(offset: summaryOffset, lines: [summaryLine]) }
        return FileStreamRequest(files: files, uploaded: uploaded, complete: true, exitCode: exitCode)
    }

    public var isHeartbeat: Bool { self == .heartbeat }

    /// The JSON body.
    public func encoded() -> [UInt8] { Array(encodedText().utf8) }

    public func encodedText() -> String {
        var members: [(String, String)] = []
        if !files.isEmpty {
            let body = files.keys.sorted().map { name -> (String, String) in
                let chunk = files[name]!
                let content = "[" + chunk.lines.map(WandbValue.quote).joined(separator: ",") + "]"
                return (name, WandbJSON.orderedObject([("offset", String(chunk.offset)), ("content", content)]))
            }
            members.append(("files", WandbJSON.orderedObject(body)))
        }
        if !uploaded.isEmpty {
            members.append(("uploaded", "[" + uploaded.map(WandbValue.quote).joined(separator: ",") + "]"))
        }
        if preempting { members.append(("preempting", "true")) }
        if let complete { members.append(("complete", complete ? "true" : "false")) }
        if let exitCode { members.append(("exitcode", String(exitCode))) }
        return WandbJSON.orderedObject(members)
    }

    /// How many leading `lines` fit in one request body of at most `budget` bytes, counting
    /// each line's quoted form plus a separator; at least 1 when the first line alone fits
    /// under ``maxRequestBytes`` (so progress is always possible).
    public static func linesFitting<C: Collection>(_ lines: C, budget: Int = maxRequestBytes - 64 * 1024) -> Int
        where C.Element == String {
        var used = 0
        var n = 0
        for line in lines {
            let cost = WandbValue.quote(line).utf8.count + 1
            if used + cost > budget { return n == 0 && cost <= maxRequestBytes - 1024 ? 1 : n }
            used += cost
            n += 1
        }
        return n
    }
}

/// What the server said back. wandb-core only reads `stopped` (the run was stopped from the UI).
public struct FileStreamResponse: Sendable, Equatable {
    public var stopped: Bool
    public var exitCode: Int?

    public init(stopped: Bool = false, exitCode: Int? = nil) {
        self.stopped = stopped
        self.exitCode = exitCode
    }
}
