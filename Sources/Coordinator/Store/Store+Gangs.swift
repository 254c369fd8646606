import Foundation
import GRDB
import Shared

/// An idle worker (a held poll) the scheduler offers to waiting gangs.
public struct IdleWorker: Sendable, Equatable {
    public var workerId: String
    public var name: String
    public var session: UInt64
    public var kinds: [String]
    /// Where it would host the gang's rendezvous as rank 0 (from its poll).
    public var rendezvous: RendezvousEndpoint?

    public init(workerId: String, name: String, session: UInt64, kinds: [String], rendezvous: RendezvousEndpoint?) {
        self.workerId = workerId
        self.name = name
        self.session = session
        self.kinds = kinds
        self.rendezvous = rendezvous
    }
}

/// What ``Store/leaseGangs(idle:reserveAfter:now:)`` did.
public struct GangLeases: Sendable, Equatable {
    /// The shards leased, by worker: every rank of each gang that started.
    public var assignments: [String: ShardAssignment] = [:]
    /// Idle workers the oldest waiting gang holds back from other work (it has waited longer
    /// than the reservation delay): they take nothing else until it starts.
    public var reserved: Set<String> = []
}

/// Data-parallel gangs: a run with `world: {gpus: N}` has N shards (`shards.rank` 0 … N−1)
/// that are leased together, in one transaction, or not at all; when one rank's attempt ends
/// without success, the others are stopped (``gangStops()``) and the gang goes back to the
/// queue as a whole, its retry budget counted once per restart.
extension Store {
    /// Leases every rank of the oldest waiting gangs that the idle workers can hold now (the
    /// coordinator's ``StoreDecisions/gangDispatch(_:candidates:)`` decides placement), records
    /// why the others wait, and says which idle workers the oldest waiting gang reserves once it
    /// has waited `reserveAfter` seconds (so later single-GPU work cannot starve it).
    public func leaseGangs(idle: [IdleWorker], reserveAfter: Double, now: Date = Date()) throws -> GangLeases {
        // Most polls find no gang waiting: answer those from a read, without a write transaction.
        let waiting = try read { db in
            try Bool.fetchOne(db, sql: "SELECT 1 FROM shards WHERE rank IS NOT NULL AND state = 'queued' LIMIT 1") ?? false
        }
        guard waiting else { return GangLeases() }
        return try write { db in
            var out = GangLeases()
            var free = idle.filter { $0.kinds.contains("train") }
            let gangs = try Row.fetchAll(db, sql: """
                SELECT s.run_id, r.world_size, r.job_id, COUNT(*) AS queued, MIN(s.id) AS first, MAX(s.updated_at) AS since
                FROM shards s JOIN runs r ON r.id = s.run_id
                WHERE s.rank IS NOT NULL AND s.state = 'queued'
                GROUP BY s.run_id HAVING COUNT(*) = r.world_size ORDER BY first
                """)
            var oldestWaiting = true
            for gang in gangs where !free.isEmpty {
                let runId: String = gang["run_id"]
                guard let run = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [runId]),
                      let text = try String.fetchOne(db, sql: "SELECT spec FROM jobs WHERE id = ?", arguments: [gang["job_id"] as Int64]) else { continue }
                let snapshot = try dispatchSnapshot(db, run: run, specText: text, device: nil)
                let failedBefore = try Dictionary(uniqueKeysWithValues: Row.fetchAll(db, sql: """
                    SELECT a.worker_id, COUNT(*) FROM shard_attempts a JOIN shards s ON s.id = a.shard_id
                    WHERE s.run_id = ? AND s.rank IS NOT NULL AND a.state IN ('failed', 'lost', 'oom') GROUP BY a.worker_id
                    """, arguments: [runId]).map { ($0[0] as String, $0[1] as Int) })
                var candidates: [GangCandidateRecord] = []
                for w in free {
                    guard let row = try Row.fetchOne(db, sql: "SELECT host, device FROM workers WHERE id = ?", arguments: [w.workerId]),
                          let device = jsonDecode(DeviceInfo.self, row["device"]) else { continue }
                    candidates.append(GangCandidateRecord(workerId: w.workerId, name: w.name, host: row["host"], device: device,
                                                          rendezvous: w.rendezvous, excluded: (failedBefore[w.workerId] ?? 0) >= 2))
                }
                let shards = try Row.fetchAll(db, sql: "SELECT * FROM shards WHERE run_id = ? AND rank IS NOT NULL ORDER BY rank", arguments: [runId])
                switch decisions.gangDispatch(snapshot, candidates: candidates) {
                case .start(let members, let preset, let batchSize, let gradAccum, let resumeMessage):
                    guard members.count == shards.count else { continue }
                    for (shard, member) in zip(shards, members) {
                        guard let w = free.first(where: { $0.workerId == member.workerId }) else { continue }
                        try db.execute(sql: "UPDATE shards SET payload = ?, gang_stop = 0 WHERE id = ?", arguments: [jsonString(member.payload) ?? "{}", shard["id"] as Int64])
                        guard let a = try leaseQueued(db, shardId: shard["id"], workerId: w.workerId, workerName: w.name, session: w.session, now: now) else {
                            throw StoreError(.failed, "rank \(shard["rank"] as Int) of gang \(runId) could not be leased with the others; no rank was leased")
                        }
                        out.assignments[w.workerId] = a
                    }
                    try db.execute(sql: """
                        UPDATE runs SET preset = ?, batch_size = ?, grad_accum = ?, wait_reason = NULL,
                            state = CASE WHEN state = 'queued' THEN 'running' ELSE state END
                        WHERE id = ?
                        """, arguments: [preset, batchSize, gradAccum, runId])
                    if let message = resumeMessage {
                        try Self.insertEvent(db, kind: "resume", message: message, workerId: members[0].workerId, shardId: shards[0]["id"],
                                             runId: runId, wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
                    }
                    let taken = Set(members.map(\.workerId))
                    free.removeAll { taken.contains($0.workerId) }
                case .wait(let reason, let fitting):
                    try db.execute(sql: "UPDATE runs SET wait_reason = ? WHERE id = ? AND (wait_reason IS NULL OR wait_reason != ?)",
                                   arguments: [reason, runId, reason])
                    if oldestWaiting, now.unixSeconds - (gang["since"] as Double) >= reserveAfter {
                        // The oldest waiting gang keeps the idle workers that fit it; younger
                        // gangs and single-GPU work do not get them.
                        out.reserved.formUnion(fitting)
                        free.removeAll { fitting.contains($0.workerId) }
                    }
                    oldestWaiting = false
                case .fail(let reason):
                    for shard in shards { try failUnstartable(db, shardId: shard["id"], reason: reason, now: now) }
                }
            }
            return out
        }
    }

    /// After a rank's attempt ended (inside ``endAttempt``): the gang's retry budget is one
    /// counter for all its ranks; unless this rank was itself stopped with its gang or the run is
    /// cancelled, every other rank still holding a lease is told to stop (``gangStops()``), and a
    /// rank that already succeeded in this gang goes back to the queue with the others.
    static func gangAttemptEnded(_ db: Database, shardId: Int64, runId: String, failures: Int, stoppedWithGang: Bool,
                                 cancelled: Bool, requeued: Bool) throws {
        try db.execute(sql: "UPDATE shards SET failures = MAX(failures, ?) WHERE run_id = ? AND rank IS NOT NULL", arguments: [failures, runId])
        try db.execute(sql: "UPDATE shards SET gang_stop = 0 WHERE id = ?", arguments: [shardId])
        guard !stoppedWithGang, !cancelled else { return }
        try db.execute(sql: """
            UPDATE shards SET gang_stop = 1 WHERE run_id = ? AND rank IS NOT NULL AND id != ? AND state IN ('leased', 'running')
            """, arguments: [runId, shardId])
        if requeued {
            try db.execute(sql: """
                UPDATE shards SET state = 'queued', worker_id = NULL, session = NULL, finished_at = NULL
                WHERE run_id = ? AND rank IS NOT NULL AND state = 'succeeded'
                """, arguments: [runId])
        }
    }

    /// Ranks that must stop because another rank of their gang ended: their holders are told
    /// (a cancel on the next heartbeat); each then reports and the gang is requeued whole.
    public func gangStops() throws -> [(workerId: String, shard: ShardRef)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, lease_epoch, worker_id FROM shards WHERE gang_stop = 1 AND state IN ('leased', 'running')").map {
                (workerId: $0["worker_id"], shard: ShardRef(shardId: $0["id"], leaseEpoch: $0["lease_epoch"]))
            }
        }
    }
}
