/// `poll`: a long-poll for work. The coordinator answers as soon as a shard is leased to this
/// worker, or with no assignment after `waitMs`.
///
/// Poll is idempotent: when a reply is lost and the worker polls again, a shard already leased to
/// it (and not yet started) is returned again rather than a second one being leased.
public struct PollRequest: Sendable, Equatable, WireCodable {
    public var waitMs: UInt32
    /// Where this worker would host a data-parallel gang's rendezvous if it became rank 0: an
    /// address the other ranks can reach and a port that was free when the poll was sent (the
    /// worker bound it and let it go). Optional on the wire (a trailing field): a worker that
    /// sends none is never rank 0 of a gang.
    public var rendezvous: RendezvousEndpoint?

    public init(waitMs: UInt32, rendezvous: RendezvousEndpoint? = nil) {
        self.waitMs = waitMs
        self.rendezvous = rendezvous
    }

    public init(from r: inout WireReader) throws(WireError) {
        waitMs = UInt32(truncatingIfNeeded: try r.readVarint("poll.waitMs"))
        if !r.isAtEnd {
            rendezvous = try r.readOptional("poll.rendezvous") { (r) throws(WireError) in
                RendezvousEndpoint(address: try r.readString("poll.rendezvous.address"),
                                   port: Int(truncatingIfNeeded: try r.readVarint("poll.rendezvous.port")))
            }
        }
    }

    public func encode(to w: inout WireWriter) {
        w.writeVarint(UInt64(waitMs))
        if let rendezvous {
            w.writeOptional(rendezvous) { w, e in
                w.write(e.address)
                w.writeVarint(UInt64(max(0, e.port)))
            }
        }
    }
}

/// An address and port for torch.distributed's rendezvous (`MASTER_ADDR`, `MASTER_PORT`).
public struct RendezvousEndpoint: Sendable, Equatable, Hashable {
    public var address: String
    public var port: Int

    public init(address: String, port: Int) {
        self.address = address
        self.port = port
    }
}

/// A shard leased to a worker: what to run, under which lease epoch.
public struct ShardAssignment: Sendable, Equatable, Codable, WireCodable {
    public var shard: ShardRef
    public var jobId: Int64
    /// The executor that runs it, e.g. `sleep`, `echo`.
    public var kind: String
    /// 1 for the first attempt, 2 after one requeue, …
    public var attempt: Int
    /// The shard's parameters as a JSON object.
    public var payload: [UInt8]
    /// The run the shard belongs to (its metrics and system metrics are logged under it).
    public var runId: String?

    public init(shard: ShardRef, jobId: Int64, kind: String, attempt: Int, payload: [UInt8], runId: String? = nil) {
        self.shard = shard
        self.jobId = jobId
        self.kind = kind
        self.attempt = attempt
        self.payload = payload
        self.runId = runId
    }

    public init(from r: inout WireReader) throws(WireError) {
        shard = try ShardRef(from: &r)
        jobId = try r.readSigned("assignment.jobId")
        kind = try r.readString("assignment.kind")
        attempt = try r.readInt("assignment.attempt")
        payload = try r.readBytes("assignment.payload")
        runId = try r.readOptional("assignment.runId") { (r) throws(WireError) in try r.readString("assignment.runId") }
    }

    public func encode(to w: inout WireWriter) {
        shard.encode(to: &w)
        w.writeSigned(jobId)
        w.write(kind)
        w.writeVarint(attempt)
        w.writeBytes(payload)
        w.writeOptional(runId) { $0.write($1) }
    }
}

public struct PollReply: Sendable, Equatable, WireCodable {
    public var assignment: ShardAssignment?

    public init(assignment: ShardAssignment?) { self.assignment = assignment }

    public init(from r: inout WireReader) throws(WireError) {
        assignment = try r.readOptional("pollReply.assignment") { (r) throws(WireError) in try ShardAssignment(from: &r) }
    }

    public func encode(to w: inout WireWriter) { w.writeOptional(assignment) { $1.encode(to: &$0) } }
}
