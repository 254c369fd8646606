@testable import Shared
import TestSupport

/// One random protocol message, encoded, with its decoder: ``reencode`` decodes bytes as the same
/// type (the whole buffer, as the coordinator does) and encodes the result again.
struct WireSample {
    let type: String
    let bytes: [UInt8]
    /// False for types that keep only the low bits of a wider varint (`PollRequest.waitMs`,
    /// `RegisterReply`'s intervals, `ProtocolError.code`), where two encodings decode alike.
    let injective: Bool
    let reencode: ([UInt8]) throws(WireError) -> [UInt8]
    /// The length of the prefix that is the same message without its optional trailing fields
    /// (an older sender's form, which must still decode), if it has any.
    let olderFormLength: Int?

    init<M: WireCodable>(_ message: M, injective: Bool = true, olderForm: M? = nil) {
        type = "\(M.self)"
        bytes = message.wireBytes()
        self.injective = injective
        reencode = { b throws(WireError) in try M.decode(b).wireBytes() }
        olderFormLength = olderForm?.wireBytes().count
    }

    /// A random message of every type the protocol has.
    static func all(_ g: inout PropertyRandom) -> [WireSample] {
        [
            WireSample(register(&g)),
            WireSample(heartbeat(&g)),
            WireSample(PollRequest(waitMs: UInt32(truncatingIfNeeded: g.uint64())), injective: false),
            { (g: inout PropertyRandom) -> WireSample in
                let wait = UInt32(truncatingIfNeeded: g.uint64())
                return WireSample(PollRequest(waitMs: wait, rendezvous: RendezvousEndpoint(address: g.string(), port: g.int(65_536))),
                                  injective: false, olderForm: PollRequest(waitMs: wait))
            }(&g),
            WireSample(MetricsRequest(entries: (0..<Int.random(in: 0...3, using: &g)).map { _ in spoolEntry(&g) })),
            WireSample(event(&g)),
            WireSample(ResultRequest(shard: shard(&g), outcome: ShardOutcome.allCases.randomElement(using: &g)!, message: g.string(),
                                     output: g.bytes(), logTail: (0..<Int.random(in: 0...4, using: &g)).map { _ in g.string() })),
            WireSample(AdminRequest(command: g.string(), arguments: g.bytes(), proof: proof(&g))),
            WireSample(RegisterReply(session: g.uint64(), heartbeatIntervalMs: UInt32(truncatingIfNeeded: g.uint64()),
                                     lostAfterMs: UInt32(truncatingIfNeeded: g.uint64()), coordinatorVersion: g.string(),
                                     activeShardKept: g.chance(0.5), spoolHighWater: g.uint64()), injective: false),
            WireSample(HeartbeatReply(commands: (0..<Int.random(in: 0...3, using: &g)).map { _ in
                g.chance(0.5) ? .drain : .cancelShard(shard(&g), reason: g.string())
            })),
            WireSample(PollReply(assignment: g.chance(0.2) ? nil : ShardAssignment(
                shard: shard(&g), jobId: g.int64(), kind: g.string(), attempt: Int(g.int64()), payload: g.bytes(),
                runId: g.chance(0.5) ? g.string() : nil))),
            WireSample(Ack(highestSequence: g.uint64(), accepted: g.chance(0.5), note: g.string())),
            WireSample(AdminReply(json: g.bytes(maxLength: 64))),
            WireSample(ProtocolError(.init(rawValue: UInt16.random(in: 0...UInt16.max, using: &g)), g.string(), retryable: g.chance(0.5)),
                       injective: false),
        ]
    }

    static func shard(_ g: inout PropertyRandom) -> ShardRef { ShardRef(shardId: g.int64(), leaseEpoch: g.int64()) }

    static func proof(_ g: inout PropertyRandom) -> TokenProof {
        TokenProof(timestampMs: g.int64(), nonce: g.bytes(maxLength: 64), mac: g.bytes(maxLength: 64))
    }

    static func register(_ g: inout PropertyRandom) -> RegisterRequest {
        RegisterRequest(
            name: g.string(), host: g.string(),
            device: DeviceInfo(kind: g.chance(0.5) ? .cpu : .cuda, index: Int(g.int64()), name: g.string(), memoryBytes: g.uint64(),
                               driverVersion: g.string(), cudaVersion: g.string(), uuid: g.string()),
            capabilities: (0..<Int.random(in: 0...4, using: &g)).map { _ in g.string() }, version: g.string(), pid: Int(g.int64()),
            proof: proof(&g), activeShard: g.chance(0.5) ? shard(&g) : nil)
    }

    static func heartbeat(_ g: inout PropertyRandom) -> HeartbeatRequest {
        HeartbeatRequest(
            status: WorkerStatus.allCases.randomElement(using: &g)!,
            progress: g.chance(0.5) ? ShardProgress(shard: shard(&g), step: g.int64(), totalSteps: g.int64(), stepsPerSecond: g.double()) : nil,
            telemetry: g.chance(0.5) ? DeviceTelemetry(utilization: g.double(), memoryUsedBytes: g.uint64(), memoryTotalBytes: g.uint64(),
                                                       temperatureC: g.double(), powerWatts: g.double()) : nil)
    }

    static func event(_ g: inout PropertyRandom) -> EventRequest {
        EventRequest(kind: .init(rawValue: g.string()), shard: g.chance(0.5) ? shard(&g) : nil, message: g.string(),
                     data: g.bytes(), wallTime: g.double())
    }

    static func spoolEntry(_ g: inout PropertyRandom) -> SpoolEntry {
        SpoolEntry(
            sequence: g.uint64(),
            points: (0..<Int.random(in: 0...4, using: &g)).map { _ in
                MetricPoint(runId: g.string(), step: g.int64(), key: g.string(), value: g.double(), wallTime: g.double())
            },
            events: (0..<Int.random(in: 0...2, using: &g)).map { _ in event(&g) })
    }
}
