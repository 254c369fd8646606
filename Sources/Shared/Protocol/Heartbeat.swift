/// What a worker is doing, as seen in its heartbeats.
public enum WorkerStatus: UInt8, Sendable, Codable, CaseIterable {
    case idle = 0
    case busy = 1
    case draining = 2
    case stopping = 3

    public var name: String {
        switch self {
        case .idle: return "idle"
        case .busy: return "busy"
        case .draining: return "draining"
        case .stopping: return "stopping"
        }
    }
}

/// Progress of the shard a worker is running.
public struct ShardProgress: Sendable, Equatable, Codable, WireCodable {
    public var shard: ShardRef
    public var step: Int64
    public var totalSteps: Int64
    public var stepsPerSecond: Double

    public init(shard: ShardRef, step: Int64, totalSteps: Int64, stepsPerSecond: Double) {
        self.shard = shard
        self.step = step
        self.totalSteps = totalSteps
        self.stepsPerSecond = stepsPerSecond
    }

    public init(from r: inout WireReader) throws(WireError) {
        shard = try ShardRef(from: &r)
        step = try r.readSigned("progress.step")
        totalSteps = try r.readSigned("progress.totalSteps")
        stepsPerSecond = try r.readDouble("progress.stepsPerSecond")
    }

    public func encode(to w: inout WireWriter) {
        shard.encode(to: &w)
        w.writeSigned(step)
        w.writeSigned(totalSteps)
        w.write(stepsPerSecond)
    }
}

/// `heartbeat`: status, progress and telemetry, every `heartbeatIntervalMs` (default 2 s).
public struct HeartbeatRequest: Sendable, Equatable, WireCodable {
    public var status: WorkerStatus
    public var progress: ShardProgress?
    public var telemetry: DeviceTelemetry?

    public init(status: WorkerStatus, progress: ShardProgress? = nil, telemetry: DeviceTelemetry? = nil) {
        self.status = status
        self.progress = progress
        self.telemetry = telemetry
    }

    public init(from r: inout WireReader) throws(WireError) {
        guard let s = WorkerStatus(rawValue: try r.readByte("heartbeat.status")) else {
            throw WireError(field: "heartbeat.status", reason: .invalid("unknown status"))
        }
        status = s
        progress = try r.readOptional("heartbeat.progress") { (r) throws(WireError) in try ShardProgress(from: &r) }
        telemetry = try r.readOptional("heartbeat.telemetry") { (r) throws(WireError) in try DeviceTelemetry(from: &r) }
    }

    public func encode(to w: inout WireWriter) {
        w.write(status.rawValue)
        w.writeOptional(progress) { $1.encode(to: &$0) }
        w.writeOptional(telemetry) { $1.encode(to: &$0) }
    }
}

/// An instruction riding on a heartbeat reply. Commands are re-asserted on every heartbeat
/// until the condition clears, so they are idempotent.
public enum WorkerCommand: Sendable, Equatable, WireCodable {
    /// Stop running this shard (cancelled by a user, or its lease moved elsewhere).
    case cancelShard(ShardRef, reason: String)
    /// Finish or checkpoint the current shard, take no new work, then exit.
    case drain

    public init(from r: inout WireReader) throws(WireError) {
        switch try r.readByte("command.tag") {
        case 1: self = .cancelShard(try ShardRef(from: &r), reason: try r.readString("command.reason"))
        case 2: self = .drain
        case let t: throw WireError(field: "command.tag", reason: .invalid("unknown command \(t)"))
        }
    }

    public func encode(to w: inout WireWriter) {
        switch self {
        case .cancelShard(let ref, let reason):
            w.write(UInt8(1))
            ref.encode(to: &w)
            w.write(reason)
        case .drain:
            w.write(UInt8(2))
        }
    }
}

public struct HeartbeatReply: Sendable, Equatable, WireCodable {
    public var commands: [WorkerCommand]

    public init(commands: [WorkerCommand] = []) { self.commands = commands }

    public init(from r: inout WireReader) throws(WireError) {
        commands = try r.readArray("heartbeatReply.commands") { (r) throws(WireError) in try WorkerCommand(from: &r) }
    }

    public func encode(to w: inout WireWriter) { w.writeArray(commands) { $1.encode(to: &$0) } }
}
