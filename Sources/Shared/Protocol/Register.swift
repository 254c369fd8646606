/// `register`: a worker announces itself (host, device, capabilities, version) with a proof
/// that it holds the cluster token. The envelope's `workerId` is the worker's durable identity,
/// kept in its state directory, so a restarted worker re-registers into the same identity.
public struct RegisterRequest: Sendable, Equatable, WireCodable {
    public var name: String
    public var host: String
    public var device: DeviceInfo
    /// Runners and evaluation backends this worker has, e.g. `shard:sleep`, `runner:command`.
    public var capabilities: [String]
    public var version: String
    public var pid: Int
    public var proof: TokenProof
    /// A shard this worker is still executing from a previous session (re-attach after the
    /// coordinator forgot the session), as `(shardId, leaseEpoch)`.
    public var activeShard: ShardRef?

    public init(
        name: String, host: String, device: DeviceInfo, capabilities: [String], version: String, pid: Int,
        proof: TokenProof, activeShard: ShardRef? = nil
    ) {
        self.name = name
        self.host = host
        self.device = device
        self.capabilities = capabilities
        self.version = version
        self.pid = pid
        self.proof = proof
        self.activeShard = activeShard
    }

    public init(from r: inout WireReader) throws(WireError) {
        name = try r.readString("register.name")
        host = try r.readString("register.host")
        device = try DeviceInfo(from: &r)
        capabilities = try r.readArray("register.capabilities") { (r) throws(WireError) in try r.readString("register.capability") }
        version = try r.readString("register.version")
        pid = try r.readInt("register.pid")
        proof = try TokenProof(from: &r)
        activeShard = try r.readOptional("register.activeShard") { (r) throws(WireError) in try ShardRef(from: &r) }
    }

    public func encode(to w: inout WireWriter) {
        w.write(name)
        w.write(host)
        device.encode(to: &w)
        w.writeArray(capabilities) { $0.write($1) }
        w.write(version)
        w.writeVarint(pid)
        proof.encode(to: &w)
        w.writeOptional(activeShard) { $1.encode(to: &$0) }
    }
}

/// The answer to `register`: the session to put in every later envelope, and the liveness
/// settings the worker should follow.
public struct RegisterReply: Sendable, Equatable, WireCodable {
    public var session: UInt64
    public var heartbeatIntervalMs: UInt32
    public var lostAfterMs: UInt32
    public var coordinatorVersion: String
    /// Whether the re-attach of `activeShard` was accepted (false: abandon it, it was requeued).
    public var activeShardKept: Bool
    /// The highest spool sequence the coordinator stored for this worker identity: a spool that
    /// starts afresh (its directory was lost) numbers its entries after it, or they would be
    /// taken for duplicates.
    public var spoolHighWater: UInt64

    public init(session: UInt64, heartbeatIntervalMs: UInt32, lostAfterMs: UInt32, coordinatorVersion: String, activeShardKept: Bool,
                spoolHighWater: UInt64 = 0) {
        self.session = session
        self.heartbeatIntervalMs = heartbeatIntervalMs
        self.lostAfterMs = lostAfterMs
        self.coordinatorVersion = coordinatorVersion
        self.activeShardKept = activeShardKept
        self.spoolHighWater = spoolHighWater
    }

    public init(from r: inout WireReader) throws(WireError) {
        session = try r.readVarint("registered.session")
        heartbeatIntervalMs = UInt32(truncatingIfNeeded: try r.readVarint("registered.heartbeatInterval"))
        lostAfterMs = UInt32(truncatingIfNeeded: try r.readVarint("registered.lostAfter"))
        coordinatorVersion = try r.readString("registered.version")
        activeShardKept = try r.readBool("registered.activeShardKept")
        spoolHighWater = try r.readVarint("registered.spoolHighWater")
    }

    public func encode(to w: inout WireWriter) {
        w.writeVarint(session)
        w.writeVarint(UInt64(heartbeatIntervalMs))
        w.writeVarint(UInt64(lostAfterMs))
        w.write(coordinatorVersion)
        w.write(activeShardKept)
        w.writeVarint(spoolHighWater)
    }
}

/// A shard and the lease epoch under which it is held.
public struct ShardRef: Sendable, Equatable, Hashable, Codable, WireCodable {
    public var shardId: Int64
    public var leaseEpoch: Int64

    public init(shardId: Int64, leaseEpoch: Int64) {
        self.shardId = shardId
        self.leaseEpoch = leaseEpoch
    }

    public init(from r: inout WireReader) throws(WireError) {
        shardId = try r.readSigned("shard.id")
        leaseEpoch = try r.readSigned("shard.leaseEpoch")
    }

    public func encode(to w: inout WireWriter) {
        w.writeSigned(shardId)
        w.writeSigned(leaseEpoch)
    }
}
