import ClusterAdmin
import Foundation
import GRDB
import Shared
import WandB

/// What happened to a reported result.
public struct ResultDisposition: Sendable, Equatable {
    public var accepted: Bool
    public var note: String
    /// The shard went back to the queue (a failure within the retry budget, or a drain).
    public var requeued: Bool
    /// The run this result finished (its last open shard settled), if any.
    public var finishedRun: String? = nil
    /// The evaluation this (eval) result completed, if any.
    public var evalCompletion: EvalCompletion? = nil
}

extension Store {
    /// Creates a job of `count` shards of a built-in kind. A `synthetic` job is one run (its
    /// W&B run): shard i logs steps `[i·steps, (i+1)·steps)` of it.
    public func enqueue(_ request: EnqueueRequest, defaultMaxRetries: Int, defaultProject: String = "tts-cluster", now: Date = Date()) throws -> EnqueueReply {
        try write { db in
            try db.execute(sql: "INSERT INTO jobs (name, kind, spec, state, created_at) VALUES (?, ?, ?, 'active', ?)",
                           arguments: [request.name ?? "\(request.kind) x\(request.count)", request.kind, jsonString(request) ?? "{}", now.unixSeconds])
            let jobId = db.lastInsertedRowID
            var runId: String?
            if request.kind == "synthetic" {
                let id = request.payload["run"]?.stringValue ?? WandbRunInfo.newRunId()
                runId = id
                var config = request.payload
                config["run"] = nil
                try db.execute(sql: """
                    INSERT INTO runs (id, job_id, name, state, created_at, project, group_name, job_type, config)
                    VALUES (?, ?, ?, 'running', ?, ?, ?, 'train', ?)
                    """, arguments: [id, jobId, request.name ?? "synthetic-\(id)", now.unixSeconds,
                                     request.payload["project"]?.stringValue ?? defaultProject, request.payload["group"]?.stringValue,
                                     jsonString(config) ?? "{}"])
            }
            var ids: [Int64] = []
            let steps = Int64(request.payload["steps"]?.doubleValue ?? 100)
            for i in 0..<request.count {
                var payload = request.payload
                if let runId {
                    payload["run"] = .string(runId)
                    payload["first_step"] = .number(Double(Int64(i) * steps))
                }
                try db.execute(sql: """
                    INSERT INTO shards (job_id, run_id, kind, payload, state, max_retries, created_at, updated_at)
                    VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)
                    """, arguments: [jobId, runId, request.kind, jsonString(payload) ?? "{}", request.maxRetries ?? defaultMaxRetries, now.unixSeconds, now.unixSeconds])
                ids.append(db.lastInsertedRowID)
            }
            return EnqueueReply(jobId: jobId, shardIds: ids, runId: runId)
        }
    }

    /// Marks a run finished once none of its shards can run again; returns whether it did.
    func settleRun(_ db: Database, shardId: Int64, now: Date) throws -> Bool {
        guard let runId = try String.fetchOne(db, sql: "SELECT run_id FROM shards WHERE id = ?", arguments: [shardId]) else { return false }
        let open = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM shards WHERE run_id = ? AND state IN ('queued', 'leased', 'running')", arguments: [runId]) ?? 0
        guard open == 0 else { return false }
        // A run waits for its evaluations (their results land at their steps before it closes),
        // but a failed evaluation does not fail the run.
        let failed = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM shards WHERE run_id = ? AND state = 'failed' AND kind NOT IN ('eval', 'eval-command')", arguments: [runId]) ?? 0
        let cancelled = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM shards WHERE run_id = ? AND state = 'cancelled' AND kind NOT IN ('eval', 'eval-command')", arguments: [runId]) ?? 0
        let state: RunState = failed > 0 ? .failed : cancelled > 0 ? .cancelled : .succeeded
        try db.execute(sql: "UPDATE runs SET state = ?, finished_at = ?, exit_code = ? WHERE id = ? AND finished_at IS NULL",
                       arguments: [state, now.unixSeconds, state == .succeeded ? 0 : 1, runId])
        return db.changesCount > 0
    }

    /// Leases the oldest queued shard this worker can run, or returns the shard already leased
    /// to it and not yet started (so a retried poll never leases a second shard).
    public func lease(workerId: String, workerName: String, session: UInt64, kinds: [String], now: Date = Date()) throws -> ShardAssignment? {
        try write { db in
            if let row = try Row.fetchOne(db, sql: "SELECT * FROM shards WHERE worker_id = ? AND session = ? AND state = 'leased' ORDER BY id LIMIT 1", arguments: [workerId, Int64(session)]) {
                return assignment(row)
            }
            guard !kinds.isEmpty else { return nil }
            let marks = Array(repeating: "?", count: kinds.count).joined(separator: ",")
            // Oldest first; a training shard is rendered for this worker's card, or skipped when the
            // card fits none of the job's presets (it waits for another worker).
            // A gang's ranks are leased together (``leaseGangs(idle:reserveAfter:now:)``), never one by one.
            let candidates = try Row.fetchAll(db, sql: "SELECT * FROM shards WHERE state = 'queued' AND rank IS NULL AND kind IN (\(marks)) ORDER BY id LIMIT 64",
                                              arguments: StatementArguments(kinds))
            for candidate in candidates {
                if ["train", "torch"].contains(candidate["kind"] as String),
                   try prepareTraining(db, shard: candidate, workerId: workerId, now: now) == .skip { continue }
                if let a = try leaseQueued(db, shardId: candidate["id"], workerId: workerId, workerName: workerName, session: session, now: now) {
                    return a
                }
            }
            return nil
        }
    }

    /// Leases one queued shard (a new attempt with the next lease epoch).
    func leaseQueued(_ db: Database, shardId: Int64, workerId: String, workerName: String, session: UInt64, now: Date) throws -> ShardAssignment? {
        guard var row = try Row.fetchOne(db, sql: "SELECT * FROM shards WHERE id = ? AND state = 'queued'", arguments: [shardId]) else { return nil }
        let id: Int64 = row["id"]
        let attempt: Int = (row["attempts"] as Int) + 1
        let epoch: Int64 = (row["lease_epoch"] as Int64) + 1
        try db.execute(sql: """
            UPDATE shards SET state = 'leased', attempts = ?, lease_epoch = ?, worker_id = ?, session = ?, updated_at = ?
            WHERE id = ? AND state = 'queued'
            """, arguments: [attempt, epoch, workerId, Int64(session), now.unixSeconds, id])
        guard db.changesCount == 1 else { return nil }
        try db.execute(sql: """
            INSERT INTO shard_attempts (shard_id, attempt, lease_epoch, worker_id, worker_name, state, leased_at)
            VALUES (?, ?, ?, ?, ?, 'leased', ?)
            """, arguments: [id, attempt, epoch, workerId, workerName, now.unixSeconds])
        row = try Row.fetchOne(db, sql: "SELECT * FROM shards WHERE id = ?", arguments: [id])!
        return assignment(row)
    }

    func assignment(_ row: Row) -> ShardAssignment {
        ShardAssignment(
            shard: ShardRef(shardId: row["id"], leaseEpoch: row["lease_epoch"]), jobId: row["job_id"],
            kind: row["kind"], attempt: row["attempts"], payload: Array((row["payload"] as String).utf8), runId: row["run_id"])
    }

    /// Every shard currently leased or running, with its holder (for the in-memory lease map).
    public func activeLeases() throws -> [(workerId: String, shard: ShardRef)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, lease_epoch, worker_id FROM shards WHERE state IN ('leased', 'running')").map {
                (workerId: $0["worker_id"], shard: ShardRef(shardId: $0["id"], leaseEpoch: $0["lease_epoch"]))
            }
        }
    }

    /// The leases of leased or running shards whose cancellation was requested (their holders
    /// must be told).
    public func cancelRequestedShards() throws -> [ShardRef] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, lease_epoch FROM shards WHERE cancel_requested = 1 AND state IN ('leased', 'running')").map {
                ShardRef(shardId: $0["id"], leaseEpoch: $0["lease_epoch"])
            }
        }
    }

    /// Ends the current attempt of a shard and decides where the shard goes next.
    /// - Returns: true when the shard went back to the queue.
    func endAttempt(_ db: Database, shardId: Int64, attemptState: AttemptState, message: String, countsAsFailure: Bool, now: Date) throws -> Bool {
        guard let row = try Row.fetchOne(db, sql: "SELECT attempts, failures, max_retries, cancel_requested, rank, gang_stop, run_id FROM shards WHERE id = ?",
                                         arguments: [shardId]) else { return false }
        let attempts: Int = row["attempts"]
        // A gang's rank stopped because another rank ended: the gang's end was counted there.
        let gang = (row["rank"] as Int?) != nil
        var stoppedWithGang = gang && (row["gang_stop"] as Bool)
        var message = message
        if gang, attemptState == .failed, countsAsFailure, !stoppedWithGang,
           let peer = try Self.plannedStopPeer(db, shardId: shardId, runId: row["run_id"]) {
            // Its trainer ended because a peer rank's trainer was stopped by plan (a drain or a
            // worker shutdown waits for a full checkpoint, then stops it): collective failure
            // follows at once, and may be reported before the planned stop itself.
            stoppedWithGang = true
            message = "a peer rank on \(peer) was stopped for a drain or shutdown; \(message)"
        }
        let failures: Int = (row["failures"] as Int) + (countsAsFailure && !stoppedWithGang ? 1 : 0)
        let maxRetries: Int = row["max_retries"]
        let cancelRequested: Bool = row["cancel_requested"]
        try db.execute(sql: "UPDATE shard_attempts SET state = ?, ended_at = ?, message = ? WHERE shard_id = ? AND attempt = ?",
                       arguments: [stoppedWithGang ? AttemptState.cancelled : attemptState, now.unixSeconds,
                                   stoppedWithGang ? "stopped with its gang (\(message))" : message, shardId, attempts])
        let next: ShardState
        if cancelRequested { next = .cancelled }
        else if failures > maxRetries { next = .failed }
        else { next = .queued }
        let terminal = next.isTerminal
        try db.execute(sql: """
            UPDATE shards SET state = ?, failures = ?, worker_id = CASE WHEN ? THEN worker_id ELSE NULL END, session = NULL,
                updated_at = ?, finished_at = CASE WHEN ? THEN ? ELSE NULL END, message = ?
            WHERE id = ?
            """, arguments: [next, failures, terminal, now.unixSeconds, terminal, now.unixSeconds,
                             next == .failed ? "\(message) (retry budget of \(maxRetries) exhausted)" : message, shardId])
        if gang, let runId: String = row["run_id"] {
            try Self.gangAttemptEnded(db, shardId: shardId, runId: runId, failures: failures, stoppedWithGang: stoppedWithGang,
                                      cancelled: cancelRequested, requeued: next == .queued)
        }
        if terminal { _ = try settleRun(db, shardId: shardId, now: now) }
        return next == .queued
    }

    /// The worker of another rank of the same gang that is still leased and is draining or
    /// shutting down (its planned stop ends the whole gang), if any.
    static func plannedStopPeer(_ db: Database, shardId: Int64, runId: String?) throws -> String? {
        guard let runId else { return nil }
        return try String.fetchOne(db, sql: """
            SELECT w.name FROM shards s JOIN workers w ON w.id = s.worker_id
            WHERE s.run_id = ? AND s.rank IS NOT NULL AND s.id != ? AND s.state IN ('leased', 'running')
              AND w.status IN ('draining', 'stopping')
            ORDER BY s.rank LIMIT 1
            """, arguments: [runId, shardId])
    }

    /// Records that the lease holder started running the shard (leased → running).
    /// Returns false when `ref` is not the worker's current lease.
    func markStarted(_ db: Database, workerId: String, ref: ShardRef, now: Date) throws -> Bool {
        try db.execute(sql: "UPDATE shards SET state = 'running', updated_at = ? WHERE id = ? AND lease_epoch = ? AND worker_id = ? AND state = 'leased'",
                       arguments: [now.unixSeconds, ref.shardId, ref.leaseEpoch, workerId])
        guard db.changesCount == 1 else { return false }
        try db.execute(sql: "UPDATE shard_attempts SET state = 'running', started_at = ? WHERE shard_id = ? AND lease_epoch = ?",
                       arguments: [now.unixSeconds, ref.shardId, ref.leaseEpoch])
        return true
    }

    /// Applies a result from the lease holder; refuses a stale one (fencing by lease epoch).
    func applyResult(_ db: Database, workerId: String, result: ResultRequest, now: Date) throws -> ResultDisposition {
        var d = try applyResultToShard(db, workerId: workerId, result: result, now: now)
        if d.accepted, !d.requeued {
            // settleRun stamps finished_at with this transaction's time when it ends the run.
            d.finishedRun = try String.fetchOne(db, sql: """
                SELECT r.id FROM runs r JOIN shards s ON s.run_id = r.id WHERE s.id = ? AND r.finished_at = ?
                """, arguments: [result.shard.shardId, now.unixSeconds])
        }
        return d
    }

    private func applyResultToShard(_ db: Database, workerId: String, result: ResultRequest, now: Date) throws -> ResultDisposition {
        guard let row = try Row.fetchOne(db, sql: "SELECT state, lease_epoch, worker_id FROM shards WHERE id = ?", arguments: [result.shard.shardId]) else {
            return ResultDisposition(accepted: false, note: "shard \(result.shard.shardId) does not exist", requeued: false)
        }
        let state: ShardState = row["state"]
        let epoch: Int64 = row["lease_epoch"]
        let holder: String? = row["worker_id"]
        guard epoch == result.shard.leaseEpoch, holder == workerId, state.isActive else {
            return ResultDisposition(
                accepted: false,
                note: "stale lease: shard \(result.shard.shardId) epoch \(result.shard.leaseEpoch) is no longer held by this worker (now \(state), epoch \(epoch))",
                requeued: false)
        }
        let output = String(decoding: result.output, as: UTF8.self)
        switch result.outcome {
        case .succeeded:
            try db.execute(sql: "UPDATE shard_attempts SET state = 'succeeded', ended_at = ?, message = ? WHERE shard_id = ? AND lease_epoch = ?",
                           arguments: [now.unixSeconds, result.message, result.shard.shardId, epoch])
            try db.execute(sql: """
                UPDATE shards SET state = 'succeeded', updated_at = ?, finished_at = ?, message = ?, output = ?, session = NULL WHERE id = ?
                """, arguments: [now.unixSeconds, now.unixSeconds, result.message, output, result.shard.shardId])
            let completion = try completeEvalIfDone(db, shardId: result.shard.shardId, now: now)
            _ = try settleRun(db, shardId: result.shard.shardId, now: now)
            return ResultDisposition(accepted: true, note: "", requeued: false, evalCompletion: completion)
        case .failed, .outOfMemory:
            var msg = result.message
            if !result.logTail.isEmpty { msg += "\n" + result.logTail.suffix(20).joined(separator: "\n") }
            // An OOM in training shrinks the micro-batch for the retry (effective batch kept); that
            // retry is planned, not a failure. At the floor, the OOM counts like any failure.
            var countsAsFailure = true
            if result.outcome == .outOfMemory, let note = try downshiftAfterOutOfMemory(db, shardId: result.shard.shardId, workerId: workerId, now: now) {
                countsAsFailure = false
                msg = note + "\n" + msg
            }
            let requeued = try endAttempt(db, shardId: result.shard.shardId, attemptState: result.outcome == .failed ? .failed : .outOfMemory, message: msg, countsAsFailure: countsAsFailure, now: now)
            if !output.isEmpty { try db.execute(sql: "UPDATE shards SET output = ? WHERE id = ?", arguments: [output, result.shard.shardId]) }
            if !requeued { try failEval(db, shardId: result.shard.shardId, message: result.message, now: now) }
            return ResultDisposition(accepted: true, note: "", requeued: requeued)
        case .cancelled:
            let requeued = try endAttempt(db, shardId: result.shard.shardId, attemptState: .cancelled, message: result.message, countsAsFailure: false, now: now)
            return ResultDisposition(accepted: true, note: "", requeued: requeued)
        }
    }
}
