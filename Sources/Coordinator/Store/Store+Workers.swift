import Foundation
import GRDB
import Shared

/// What the store decided when a worker registered.
public struct RegistrationOutcome: Sendable, Equatable {
    public var session: UInt64
    /// The worker's `activeShard` is still its lease: keep running it.
    public var activeShardKept: Bool
    /// Shards that were leased to the worker's previous process and were requeued.
    public var requeued: [Int64]
    /// The worker's spool high-water mark (see ``RegisterReply/spoolHighWater``).
    public var spoolHighWater: UInt64 = 0
}

/// A worker's durable row, as loaded at coordinator start.
public struct StoredWorker: Sendable, Equatable {
    public var id: String
    public var name: String
    public var session: UInt64
    public var state: WorkerState
    public var capabilities: [String]
    public var status: WorkerStatus
}

/// In-memory heartbeat state to persist in a batch.
public struct HeartbeatSnapshot: Sendable {
    public var workerId: String
    public var lastSeen: Date
    public var status: WorkerStatus
    public var progress: ShardProgress?
    public var telemetry: DeviceTelemetry?
    public var state: String
}

extension Store {
    /// Records a registration: upserts the worker, opens a new session, and settles the shards
    /// its previous process held (kept when it re-attaches with the same lease, else requeued).
    public func register(workerId: String, request: RegisterRequest, now: Date = Date()) throws -> RegistrationOutcome {
        try write { db in
            var session: UInt64 = 0
            while true {
                session = SecureRandom.uint64() & 0x7FFF_FFFF_FFFF_FFFF
                let taken = try Int.fetchOne(db, sql: "SELECT 1 FROM sessions WHERE session = ?", arguments: [Int64(session)]) != nil
                if session != 0 && !taken { break }
            }
            try db.execute(sql: """
                INSERT INTO workers (id, name, host, device, capabilities, version, pid, session, state, status, registered_at, last_seen)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'live', 'idle', ?, ?)
                ON CONFLICT(id) DO UPDATE SET name = excluded.name, host = excluded.host, device = excluded.device,
                    capabilities = excluded.capabilities, version = excluded.version, pid = excluded.pid,
                    session = excluded.session, state = 'live', status = 'idle',
                    registered_at = excluded.registered_at, last_seen = excluded.last_seen, progress = NULL
                """, arguments: [workerId, request.name, request.host, jsonString(request.device) ?? "{}",
                                 jsonString(request.capabilities) ?? "[]", request.version, request.pid, Int64(session),
                                 now.unixSeconds, now.unixSeconds])
            try db.execute(sql: "INSERT INTO sessions (session, worker_id, created_at) VALUES (?, ?, ?)",
                           arguments: [Int64(session), workerId, now.unixSeconds])
            var kept = false
            var requeued: [Int64] = []
            let held = try Row.fetchAll(db, sql: "SELECT id, lease_epoch FROM shards WHERE worker_id = ? AND state IN ('leased', 'running')", arguments: [workerId])
            for row in held {
                let id: Int64 = row["id"]
                let epoch: Int64 = row["lease_epoch"]
                if let active = request.activeShard, active.shardId == id, active.leaseEpoch == epoch {
                    try db.execute(sql: "UPDATE shards SET session = ?, updated_at = ? WHERE id = ?", arguments: [Int64(session), now.unixSeconds, id])
                    kept = true
                } else {
                    if try endAttempt(db, shardId: id, attemptState: .lost, message: "worker \(request.name) restarted without this shard", countsAsFailure: true, now: now) {
                        requeued.append(id)
                    }
                }
            }
            let mark = try Int64.fetchOne(db, sql: "SELECT high_water FROM spool_marks WHERE worker_id = ?", arguments: [workerId]) ?? 0
            return RegistrationOutcome(session: session, activeShardKept: kept, requeued: requeued, spoolHighWater: UInt64(bitPattern: mark))
        }
    }

    /// Workers and their sessions, to rebuild the in-memory registry at start.
    public func loadWorkers() throws -> [StoredWorker] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, name, session, state, capabilities, status FROM workers").map { row in
                StoredWorker(
                    id: row["id"], name: row["name"], session: UInt64(bitPattern: row["session"] as Int64),
                    state: row["state"], capabilities: jsonDecode([String].self, row["capabilities"]) ?? [],
                    status: WorkerStatus.allCases.first { $0.name == (row["status"] as String) } ?? .idle)
            }
        }
    }

    /// Persists a batch of heartbeat state in one transaction.
    public func flushHeartbeats(_ snapshots: [HeartbeatSnapshot]) throws {
        guard !snapshots.isEmpty else { return }
        try write { db in
            let stmt = try db.cachedStatement(sql: """
                UPDATE workers SET last_seen = ?, status = ?, progress = ?, telemetry = ?, state = CASE WHEN state = 'gone' THEN state ELSE ? END
                WHERE id = ?
                """)
            for s in snapshots {
                try stmt.execute(arguments: [s.lastSeen.unixSeconds, s.status.name, jsonString(s.progress), jsonString(s.telemetry), s.state, s.workerId])
            }
        }
    }

    /// Marks a worker lost and requeues (or fails, past the retry budget) what it held.
    /// - Returns: the shards put back in the queue.
    public func markWorkerLost(workerId: String, silentFor: Double, now: Date = Date()) throws -> [Int64] {
        try write { db in
            try db.execute(sql: "UPDATE workers SET state = 'lost' WHERE id = ? AND state = 'live'", arguments: [workerId])
            var requeued: [Int64] = []
            var runs: [String] = []
            let held = try Int64.fetchAll(db, sql: "SELECT id FROM shards WHERE worker_id = ? AND state IN ('leased', 'running')", arguments: [workerId])
            let name = try String.fetchOne(db, sql: "SELECT name FROM workers WHERE id = ?", arguments: [workerId]) ?? workerId
            for id in held {
                let msg = String(format: "worker lost (silent for %.1f s)", silentFor)
                if try endAttempt(db, shardId: id, attemptState: .lost, message: msg, countsAsFailure: true, now: now) {
                    requeued.append(id)
                }
                // The run's own log says why its trainer stopped.
                if let runId = try String.fetchOne(db, sql: "SELECT run_id FROM shards WHERE id = ?", arguments: [id]) {
                    if !runs.contains(runId) { runs.append(runId) }
                    try Self.insertEvent(db, kind: "lost",
                                         message: "worker \(name) lost (silent for \(String(format: "%.1f", silentFor)) s): the run resumes from its last checkpoint on another worker",
                                         workerId: workerId, shardId: id, runId: runId, wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
                }
            }
            try Self.appendLog(db, .workerLost, runId: nil, workerId: workerId,
                               detail: jsonString(WorkerLostDetail(name: name, requeued: requeued, runs: runs)), at: now.unixSeconds)
            return requeued
        }
    }

    /// Marks a worker live again (it heartbeated after being declared lost).
    public func markWorkerLive(workerId: String) throws {
        try write { db in
            try db.execute(sql: "UPDATE workers SET state = 'live' WHERE id = ? AND state = 'lost'", arguments: [workerId])
        }
    }

    /// Marks a worker that drained and exited as gone; requeues anything it still held.
    public func markWorkerGone(workerId: String, now: Date = Date()) throws -> [Int64] {
        try write { db in
            try db.execute(sql: "UPDATE workers SET state = 'gone', status = 'stopping', progress = NULL WHERE id = ?", arguments: [workerId])
            var requeued: [Int64] = []
            for id in try Int64.fetchAll(db, sql: "SELECT id FROM shards WHERE worker_id = ? AND state IN ('leased', 'running')", arguments: [workerId]) {
                if try endAttempt(db, shardId: id, attemptState: .requeued, message: "worker left the cluster", countsAsFailure: false, now: now) {
                    requeued.append(id)
                }
            }
            return requeued
        }
    }
}
