/// How a shard attempt ended, as the worker saw it.
public enum ShardOutcome: UInt8, Sendable, Codable, CaseIterable {
    case succeeded = 1
    case failed = 2
    /// Stopped on a cancel command or a drain before finishing.
    case cancelled = 3
    /// CUDA (or the stand-in) ran out of memory: the coordinator may retry with a smaller batch.
    case outOfMemory = 4

    public var name: String {
        switch self {
        case .succeeded: return "succeeded"
        case .failed: return "failed"
        case .cancelled: return "cancelled"
        case .outOfMemory: return "oom"
        }
    }
}

/// `result`: a shard attempt's outcome. The coordinator accepts it only from the current lease
/// holder (same worker, same lease epoch): a stale holder's result is refused (fencing).
public struct ResultRequest: Sendable, Equatable, WireCodable {
    public var shard: ShardRef
    public var outcome: ShardOutcome
    public var message: String
    /// The shard's output as a JSON object (may be empty).
    public var output: [UInt8]
    /// The last log lines, for failures.
    public var logTail: [String]

    public init(shard: ShardRef, outcome: ShardOutcome, message: String = "", output: [UInt8] = [], logTail: [String] = []) {
        self.shard = shard
        self.outcome = outcome
        self.message = message
        self.output = output
        self.logTail = logTail
    }

    public init(from r: inout WireReader) throws(WireError) {
        shard = try ShardRef(from: &r)
        guard let o = ShardOutcome(rawValue: try r.readByte("result.outcome")) else {
            throw WireError(field: "result.outcome", reason: .invalid("unknown outcome"))
        }
        outcome = o
        message = try r.readString("result.message")
        output = try r.readBytes("result.output")
        logTail = try r.readArray("result.logTail") { (r) throws(WireError) in try r.readString("result.logLine") }
    }

    public func encode(to w: inout WireWriter) {
        shard.encode(to: &w)
        w.write(outcome.rawValue)
        w.write(message)
        w.writeBytes(output)
        w.writeArray(logTail) { $0.write($1) }
    }
}
