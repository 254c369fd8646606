import ClusterAdmin
import Foundation
import GRDB
import Shared
import WandB

/// What happened when a queued training shard was offered to a worker.
enum TrainingPreparation {
    /// The shard's payload is rendered for this worker; lease it.
    case ready
    /// This worker cannot take it (the run's wait reason says why); try the next shard.
    case skip
}

extension Store {
    // MARK: submit

    /// Creates a training job: one run per entry of `runs`, each with one shard of `shardKind`
    /// that trains it to the end. The spec's text is kept with the job; every dispatch renders
    /// the command from it for the worker's card.
    /// - Parameter outputDir: a run's output directory from its new id and its index in `runs`.
    func submitTraining(_ job: TrainingJobRecord, runs: [TrainingRunRecord], outputDir: (_ runId: String, _ index: Int) -> String,
                        now: Date) throws -> SubmitReply {
        try write { db in
            try db.execute(sql: "INSERT INTO jobs (name, kind, spec, state, created_at) VALUES (?, ?, ?, 'active', ?)",
                           arguments: [job.name, job.kind, job.specText, now.unixSeconds])
            let jobId = db.lastInsertedRowID
            var out: [SubmitReply.Run] = []
            for (index, run) in runs.enumerated() {
                var id = WandbRunInfo.newRunId()
                while try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [id]) == true { id = WandbRunInfo.newRunId() }
                try db.execute(sql: """
                    INSERT INTO runs (id, job_id, name, state, created_at, project, group_name, job_type, tags, config,
                                      run_index, output_dir, max_steps, world_size)
                    VALUES (?, ?, ?, 'queued', ?, ?, ?, 'train', ?, ?, ?, ?, ?, ?)
                    """, arguments: [id, jobId, run.name, now.unixSeconds, job.project, run.group, jsonString(run.tags) ?? "[]",
                                     jsonString(run.config) ?? "{}", index, outputDir(id, index), job.maxSteps, job.worldSize])
                // One shard per rank of a gang (leased together: Store+Gangs.swift), else one.
                var first: Int64?
                for rank in 0..<max(1, job.worldSize) {
                    try db.execute(sql: """
                        INSERT INTO shards (job_id, run_id, kind, payload, state, max_retries, created_at, updated_at, rank)
                        VALUES (?, ?, ?, ?, 'queued', ?, ?, ?, ?)
                        """, arguments: [jobId, id, job.shardKind, jsonString(["run": id]) ?? "{}", job.maxRetries, now.unixSeconds, now.unixSeconds,
                                         job.worldSize > 1 ? rank : nil])
                    if first == nil { first = db.lastInsertedRowID }
                }
                out.append(SubmitReply.Run(id: id, name: run.name, group: run.group, sweepValues: run.tags, shardId: first!))
            }
            return SubmitReply(jobId: jobId, runs: out)
        }
    }

    // MARK: dispatch

    /// Offers a queued training shard to the polling worker (inside the lease transaction): the
    /// coordinator's decision (``StoreDecisions/trainingDispatch(_:)``) from the run's stored
    /// state is carried out here: the payload and the run's preset and batch written (with a
    /// `resume` event), or the reason the run waits recorded, or the shard failed.
    func prepareTraining(_ db: Database, shard: Row, workerId: String, now: Date) throws -> TrainingPreparation {
        let shardId: Int64 = shard["id"]
        guard let runId: String = shard["run_id"],
              let run = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [runId]),
              let text = try String.fetchOne(db, sql: "SELECT spec FROM jobs WHERE id = ?", arguments: [shard["job_id"] as Int64]) else {
            try failUnstartable(db, shardId: shardId, reason: "train shard \(shardId) has no run or job", now: now)
            return .skip
        }
        let device = try String.fetchOne(db, sql: "SELECT device FROM workers WHERE id = ?", arguments: [workerId]).flatMap { jsonDecode(DeviceInfo.self, $0) }
        let snapshot = try dispatchSnapshot(db, run: run, specText: text, device: device)
        switch decisions.trainingDispatch(snapshot) {
        case .dispatch(let d):
            try db.execute(sql: "UPDATE shards SET payload = ? WHERE id = ?", arguments: [jsonString(d.payload) ?? "{}", shardId])
            try db.execute(sql: """
                UPDATE runs SET preset = ?, batch_size = ?, grad_accum = ?, wait_reason = NULL,
                    state = CASE WHEN state = 'queued' THEN 'running' ELSE state END
                WHERE id = ?
                """, arguments: [d.preset, d.batchSize, d.gradAccum, runId])
            if let message = d.resumeMessage {
                try Self.insertEvent(db, kind: "resume", message: message,
                                     workerId: workerId, shardId: shardId, runId: runId, wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
            }
            return .ready
        case .wait(let reason):
            try db.execute(sql: "UPDATE runs SET wait_reason = ? WHERE id = ? AND (wait_reason IS NULL OR wait_reason != ?)",
                           arguments: [reason, runId, reason])
            return .skip
        case .skip:
            return .skip
        case .fail(let reason):
            try failUnstartable(db, shardId: shardId, reason: reason, now: now)
            return .skip
        }
    }

    /// What the store knows about a run for a dispatch decision.
    func dispatchSnapshot(_ db: Database, run: Row, specText: String, device: DeviceInfo?) throws -> TrainingDispatchSnapshot {
        let runId: String = run["id"]
        var stored: [String: Int64] = [:]
        for r in try Row.fetchAll(db, sql: """
            SELECT s.key, MAX(sb.max_step) FROM series s JOIN series_batches sb ON sb.series_id = s.id
            WHERE s.run_id = ? AND s.key NOT LIKE 'system/%' GROUP BY s.key
            """, arguments: [runId]) { stored[r[0]] = r[1] }
        return TrainingDispatchSnapshot(
            runId: runId, specText: specText, runIndex: run["run_index"] ?? 0, outputDir: run["output_dir"],
            batchCap: run["batch_cap"], checkpointPath: run["checkpoint_path"], checkpointStep: run["checkpoint_step"],
            checkpointFull: (run["checkpoint_full"] as Int64?).map { $0 != 0 },
            lightCheckpointPath: run["light_checkpoint_path"], lightCheckpointStep: run["light_checkpoint_step"],
            storedThrough: stored, device: device)
    }

    /// Fails a queued shard that can never start, and settles its run.
    func failUnstartable(_ db: Database, shardId: Int64, reason: String, now: Date) throws {
        try db.execute(sql: "UPDATE shards SET state = 'failed', message = ?, updated_at = ?, finished_at = ? WHERE id = ? AND state = 'queued'",
                       arguments: [reason, now.unixSeconds, now.unixSeconds, shardId])
        _ = try settleRun(db, shardId: shardId, now: now)
    }

    // MARK: checkpoints, OOM

    /// After CUDA ran out of memory in a training shard: caps the run's micro-batch as the
    /// coordinator's decision says (``StoreDecisions/outOfMemoryDownshift(specText:payload:)``)
    /// and records a `downshift` event. Nil when no smaller batch is allowed (the OOM then counts
    /// as a failure).
    func downshiftAfterOutOfMemory(_ db: Database, shardId: Int64, workerId: String, now: Date) throws -> String? {
        guard let row = try Row.fetchOne(db, sql: "SELECT s.kind, s.payload, s.run_id, j.spec FROM shards s JOIN jobs j ON j.id = s.job_id WHERE s.id = ?",
                                         arguments: [shardId]),
              ["train", "torch"].contains(row["kind"] as String), let runId: String = row["run_id"],
              let plan = decisions.outOfMemoryDownshift(specText: row["spec"], payload: row["payload"]) else { return nil }
        try db.execute(sql: "UPDATE runs SET downshifts = downshifts + 1, batch_cap = ? WHERE id = ?", arguments: [plan.batchCap, runId])
        try Self.insertEvent(db, kind: "downshift", message: plan.note, data: jsonString(plan.data) ?? "", workerId: workerId, shardId: shardId, runId: runId,
                             wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
        return plan.note
    }

    // MARK: cancel

    /// Cancels a run: queued shards at once, leased and running ones by asking their workers to
    /// stop (they report `cancelled`, and the run settles then).
    /// - Returns: the reply and the shards whose workers must be told.
    public func cancelRun(_ runId: String, now: Date = Date()) throws -> (reply: CancelReply, stopping: [(workerId: String, shard: ShardRef)]) {
        try write { db in
            guard try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [runId]) == true else {
                throw ProtocolError(.notFound, "no run \(runId); see `tts-coordinator runs`")
            }
            try db.execute(sql: """
                UPDATE shards SET state = 'cancelled', cancel_requested = 1, message = 'cancelled by the user', updated_at = ?, finished_at = ?
                WHERE run_id = ? AND state = 'queued'
                """, arguments: [now.unixSeconds, now.unixSeconds, runId])
            let queued = db.changesCount
            let active = try Row.fetchAll(db, sql: "SELECT id, lease_epoch, worker_id FROM shards WHERE run_id = ? AND state IN ('leased', 'running')",
                                          arguments: [runId])
            try db.execute(sql: "UPDATE shards SET cancel_requested = 1, updated_at = ? WHERE run_id = ? AND state IN ('leased', 'running')",
                           arguments: [now.unixSeconds, runId])
            if active.isEmpty {
                try db.execute(sql: "UPDATE runs SET state = 'cancelled', finished_at = ?, exit_code = 1 WHERE id = ? AND finished_at IS NULL",
                               arguments: [now.unixSeconds, runId])
            }
            try Self.insertEvent(db, kind: "cancel", message: "cancel requested: \(queued) queued shard(s) cancelled, \(active.count) told to stop", runId: runId,
                                 wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
            return (CancelReply(run: runId, cancelledQueued: queued, stopping: active.count),
                    active.map { (workerId: $0["worker_id"], shard: ShardRef(shardId: $0["id"], leaseEpoch: $0["lease_epoch"])) })
        }
    }

    // MARK: queries

    /// Every run's stored row, newest first, with the worker holding one of its shards.
    public func runRecords(limit: Int = 200) throws -> [StoredRun] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.*, (SELECT w.name FROM shards s JOIN workers w ON w.id = s.worker_id
                             WHERE s.run_id = r.id AND s.state IN ('leased', 'running') LIMIT 1) AS worker_name
                FROM runs r ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?
                """, arguments: [limit]).map { row in
                StoredRun(id: row["id"], name: row["name"], jobId: row["job_id"], project: row["project"], group: row["group_name"],
                          state: RunState(rawValue: row["state"]) ?? .queued, stateName: row["state"], worker: row["worker_name"],
                          preset: row["preset"], batchSize: row["batch_size"], gradAccum: row["grad_accum"], downshifts: row["downshifts"] ?? 0,
                          maxSteps: row["max_steps"], checkpoint: row["checkpoint_path"], checkpointStep: row["checkpoint_step"],
                          waitReason: row["wait_reason"], createdAt: dateFrom(row["created_at"]), finishedAt: dateFrom(row["finished_at"]),
                          worldSize: row["world_size"] ?? 1)
            }
        }
    }

    /// Event kinds of a run's log besides the trainer's own lines.
    static let clusterNoteKinds = ["downshift", "resume", "cancel", "oom", "warning", "retention", "resume_mismatch", "disk_low", "trainer_resumed", "lost"]

    /// A run's output lines (`log` events) and the cluster's notes about it, after event id
    /// `after`: at most `limit`, or the last `tail` when reading from the start.
    /// - Throws: ``ProtocolError`` `notFound` when there is no such run.
    public func runLogEvents(run: String, after: Int64, limit: Int, tail: Int?) throws -> (state: String, events: [StoredLogEvent]) {
        try read { db in
            guard let state = try String.fetchOne(db, sql: "SELECT state FROM runs WHERE id = ?", arguments: [run]) else {
                throw ProtocolError(.notFound, "no run \(run); see `tts-coordinator runs`")
            }
            let kinds = ["log"] + Self.clusterNoteKinds
            let marks = kinds.map { _ in "?" }.joined(separator: ",")
            var args: [any DatabaseValueConvertible] = [run, after]
            args += kinds
            let limit = max(1, min(limit, 10_000))
            let rows: [Row]
            if let tail, after == 0 {
                rows = try Row.fetchAll(db, sql: """
                    SELECT * FROM (SELECT id, kind, message, data, wall_time FROM events
                                   WHERE run_id = ? AND id > ? AND kind IN (\(marks)) ORDER BY id DESC LIMIT ?) ORDER BY id
                    """, arguments: StatementArguments(args + [max(1, min(tail, limit))]))
            } else {
                rows = try Row.fetchAll(db, sql: """
                    SELECT id, kind, message, data, wall_time FROM events
                    WHERE run_id = ? AND id > ? AND kind IN (\(marks)) ORDER BY id LIMIT ?
                    """, arguments: StatementArguments(args + [limit]))
            }
            return (state, rows.map { StoredLogEvent(id: $0["id"], kind: $0["kind"], message: $0["message"], data: $0["data"], wallTime: $0["wall_time"]) })
        }
    }
}

/// A run's stored row (``Store/runRecords(limit:)``).
public struct StoredRun: Sendable, Equatable {
    public var id: String
    public var name: String
    public var jobId: Int64
    public var project: String
    public var group: String?
    public var state: RunState
    /// The state as stored (a newer coordinator's state name is kept as written).
    public var stateName: String
    public var worker: String?
    public var preset: String?
    public var batchSize: Int?
    public var gradAccum: Int?
    public var downshifts: Int
    public var maxSteps: Int64?
    public var checkpoint: String?
    public var checkpointStep: Int64?
    public var waitReason: String?
    public var createdAt: Date?
    public var finishedAt: Date?
    public var worldSize: Int
}

/// One stored event of a run's log (``Store/runLogEvents(run:after:limit:tail:)``).
public struct StoredLogEvent: Sendable, Equatable {
    public var id: Int64
    public var kind: String
    public var message: String
    /// The event's data (JSON text; a `log` line's `{"stream": …, "rank": …}`).
    public var data: String
    public var wallTime: Double
}
