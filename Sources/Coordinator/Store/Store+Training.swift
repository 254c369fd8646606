import ClusterAdmin
import Foundation
import GRDB
import JobSpecs
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

    /// Creates a training job from a validated spec: one run per sweep combination (one without a
    /// sweep), each with one `train` shard that trains it to `max_steps`. The spec's text is kept
    /// with the job; every dispatch renders the command from it for the worker's card.
    public func submit(_ spec: JobSpec, text: String, checkpointRoot: String, now: Date = Date()) throws -> SubmitReply {
        let runs = spec.runs()
        let manifestHashes = Self.manifestHashes(spec.trainManifests + spec.valManifests)
        return try write { db in
            try db.execute(sql: "INSERT INTO jobs (name, kind, spec, state, created_at) VALUES (?, ?, ?, 'active', ?)",
                           arguments: [spec.name, spec.kind.rawValue, text, now.unixSeconds])
            let jobId = db.lastInsertedRowID
            var out: [SubmitReply.Run] = []
            for (index, run) in runs.enumerated() {
                var id = WandbRunInfo.newRunId()
                while try Bool.fetchOne(db, sql: "SELECT 1 FROM runs WHERE id = ?", arguments: [id]) == true { id = WandbRunInfo.newRunId() }
                let outputDir = TrainingDispatch.outputDirectory(spec: spec, run: run, runId: id, root: checkpointRoot)
                let config = Self.wandbConfig(spec: spec, run: run, manifestHashes: manifestHashes)
                let tags = run.sweepValues.map { "\($0.name)=\($0.value.text)" }
                try db.execute(sql: """
                    INSERT INTO runs (id, job_id, name, state, created_at, project, group_name, job_type, tags, config,
                                      run_index, output_dir, max_steps)
                    VALUES (?, ?, ?, 'queued', ?, ?, ?, 'train', ?, ?, ?, ?, ?)
                    """, arguments: [id, jobId, run.name, now.unixSeconds, spec.project, run.group, jsonString(tags) ?? "[]",
                                     jsonString(config) ?? "{}", index, outputDir, spec.maxSteps])
                try db.execute(sql: """
                    INSERT INTO shards (job_id, run_id, kind, payload, state, max_retries, created_at, updated_at)
                    VALUES (?, ?, ?, ?, 'queued', ?, ?, ?)
                    """, arguments: [jobId, id, spec.shardKind, jsonString(["run": id]) ?? "{}", spec.maxRetries, now.unixSeconds, now.unixSeconds])
                out.append(SubmitReply.Run(id: id, name: run.name, group: run.group, sweepValues: tags, shardId: db.lastInsertedRowID))
            }
            return SubmitReply(jobId: jobId, runs: out)
        }
    }

    /// The run's W&B config: every hyperparameter (numbers as numbers), the batch plan and
    /// presets, manifests with their SHA-256 (when the coordinator can read them), cadences.
    static func wandbConfig(spec: JobSpec, run: RunSpec, manifestHashes: [String: String]) -> [String: JSONValue] {
        var c: [String: JSONValue] = [:]
        for h in run.hyperparameters { c[h.name] = h.value.number.map(JSONValue.number) ?? .string(h.value.text) }
        c["job"] = .string(spec.name)
        c["runner"] = .string(spec.runner.rawValue)
        c["effective_batch"] = .number(Double(spec.effectiveBatch))
        c["presets"] = .object(Dictionary(uniqueKeysWithValues: spec.presets.map { p in
            (p.name, JSONValue.object([
                "match": .string(p.match.requirement), "batch_size": .number(Double(p.batch.batchSize)),
                "grad_accum": .number(Double(p.batch.gradAccum)),
            ]))
        }))
        c["checkpoint_every"] = .number(Double(spec.checkpointEvery))
        if let e = spec.evalEvery { c["eval_every"] = .number(Double(e)) }
        if let m = spec.maxSteps { c["max_steps"] = .number(Double(m)) }
        c["train_manifests"] = .array(spec.trainManifests.map { .string($0.description) })
        c["val_manifests"] = .array(spec.valManifests.map { .string($0.description) })
        if !manifestHashes.isEmpty { c["manifest_sha256"] = .object(manifestHashes.mapValues(JSONValue.string)) }
        if !run.sweepValues.isEmpty {
            c["sweep"] = .object(Dictionary(uniqueKeysWithValues: run.sweepValues.map { ($0.name, JSONValue.string($0.value.text)) }))
        }
        return c
    }

    /// SHA-256 of each manifest file the coordinator can read (up to 1 GiB each).
    static func manifestHashes(_ manifests: [ManifestSpec]) -> [String: String] {
        var out: [String: String] = [:]
        for m in manifests where out[m.path] == nil {
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: m.path),
                  let size = attrs[.size] as? Int, size <= 1 << 30,
                  let data = FileManager.default.contents(atPath: m.path) else { continue }
            out[m.path] = SHA256.hash(Array(data)).hexString
        }
        return out
    }

    // MARK: dispatch

    /// Renders a queued `train` shard for the polling worker (inside the lease transaction):
    /// resolves the preset for its card, applies OOM downshifts, picks the resume checkpoint, and
    /// writes the payload. A card that fits no preset leaves the shard queued with the reason on
    /// the run; a spec that cannot render fails the shard.
    func prepareTraining(_ db: Database, shard: Row, workerId: String, now: Date) throws -> TrainingPreparation {
        let shardId: Int64 = shard["id"]
        guard let runId: String = shard["run_id"],
              let run = try Row.fetchOne(db, sql: "SELECT * FROM runs WHERE id = ?", arguments: [runId]),
              let text = try String.fetchOne(db, sql: "SELECT spec FROM jobs WHERE id = ?", arguments: [shard["job_id"] as Int64]) else {
            try failUnstartable(db, shardId: shardId, reason: "train shard \(shardId) has no run or job", now: now)
            return .skip
        }
        let spec: JobSpec
        do { spec = try JobSpecParser.parse(yaml: text) } catch {
            try failUnstartable(db, shardId: shardId, reason: "the stored job spec no longer parses: \(error)", now: now)
            return .skip
        }
        guard let deviceText = try String.fetchOne(db, sql: "SELECT device FROM workers WHERE id = ?", arguments: [workerId]),
              let device = jsonDecode(DeviceInfo.self, deviceText) else { return .skip }
        var stored: [String: Int64] = [:]
        for r in try Row.fetchAll(db, sql: """
            SELECT s.key, MAX(sb.max_step) FROM series s JOIN series_batches sb ON sb.series_id = s.id
            WHERE s.run_id = ? AND s.key NOT LIKE 'system/%' GROUP BY s.key
            """, arguments: [runId]) { stored[r[0]] = r[1] }
        let state = TrainingDispatch.RunState(
            runId: runId, runIndex: run["run_index"] ?? 0,
            outputDir: run["output_dir"] ?? TrainingDispatch.outputDirectory(spec: spec, run: spec.runs()[0], runId: runId, root: "./tts-runs"),
            batchCap: run["batch_cap"], checkpointPath: run["checkpoint_path"], checkpointStep: run["checkpoint_step"],
            checkpointFull: (run["checkpoint_full"] as Int64?).map { $0 != 0 },
            lightCheckpointPath: run["light_checkpoint_path"], lightCheckpointStep: run["light_checkpoint_step"],
            storedThrough: stored)
        switch TrainingDispatch.decide(spec: spec, run: state, device: device) {
        case .dispatch(let d):
            let (preset, batch) = (d.preset, d.batch)
            try db.execute(sql: "UPDATE shards SET payload = ? WHERE id = ?", arguments: [jsonString(d.payload) ?? "{}", shardId])
            try db.execute(sql: """
                UPDATE runs SET preset = ?, batch_size = ?, grad_accum = ?, wait_reason = NULL,
                    state = CASE WHEN state = 'queued' THEN 'running' ELSE state END
                WHERE id = ?
                """, arguments: [preset, batch.batchSize, batch.gradAccum, runId])
            if let checkpoint = d.resumeCheckpoint {
                try Self.insertEvent(db, kind: "resume",
                                     message: "\(d.resumeNote ?? "resuming from \(checkpoint) (step \(d.resumeStep.map(String.init) ?? "?"))") on \(device.name) with \(preset): \(batch)",
                                     workerId: workerId, shardId: shardId, runId: runId, wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
            }
            return .ready
        case .wait(let reason):
            try db.execute(sql: "UPDATE runs SET wait_reason = ? WHERE id = ? AND (wait_reason IS NULL OR wait_reason != ?)",
                           arguments: [reason, runId, reason])
            return .skip
        case .invalid(let reason):
            try failUnstartable(db, shardId: shardId, reason: reason, now: now)
            return .skip
        }
    }

    /// Fails a queued shard that can never start, and settles its run.
    private func failUnstartable(_ db: Database, shardId: Int64, reason: String, now: Date) throws {
        try db.execute(sql: "UPDATE shards SET state = 'failed', message = ?, updated_at = ?, finished_at = ? WHERE id = ? AND state = 'queued'",
                       arguments: [reason, now.unixSeconds, now.unixSeconds, shardId])
        _ = try settleRun(db, shardId: shardId, now: now)
    }

    // MARK: checkpoints, OOM

    /// After CUDA ran out of memory in a training shard: caps the run's micro-batch at half the
    /// one that failed (accumulation doubles at the next dispatch, the effective batch stays) and
    /// records a note. Nil when the spec's floor does not allow it (the OOM then counts as a failure).
    func downshiftAfterOutOfMemory(_ db: Database, shardId: Int64, workerId: String, now: Date) throws -> String? {
        guard let row = try Row.fetchOne(db, sql: "SELECT s.kind, s.payload, s.run_id, j.spec FROM shards s JOIN jobs j ON j.id = s.job_id WHERE s.id = ?",
                                         arguments: [shardId]),
              ["train", "torch"].contains(row["kind"] as String), let runId: String = row["run_id"],
              let payload = jsonDecode([String: JSONValue].self, row["payload"]),
              let size = payload["batch_size"]?.doubleValue.map({ Int($0) }),
              let spec = try? JobSpecParser.parse(yaml: row["spec"]) else { return nil }
        let current = BatchSettings(batchSize: size, gradAccum: payload["grad_accum"]?.doubleValue.map { Int($0) } ?? 1)
        guard let next = spec.downshift(current) else { return nil }
        try db.execute(sql: "UPDATE runs SET downshifts = downshifts + 1, batch_cap = ? WHERE id = ?", arguments: [next.batchSize, runId])
        let note = "OOM downshift: CUDA ran out of memory at \(current); retrying from the last checkpoint at \(next)"
        let data: [String: JSONValue] = [
            "from_batch_size": .number(Double(current.batchSize)), "from_grad_accum": .number(Double(current.gradAccum)),
            "batch_size": .number(Double(next.batchSize)), "grad_accum": .number(Double(next.gradAccum)),
        ]
        try Self.insertEvent(db, kind: "downshift", message: note, data: jsonString(data) ?? "", workerId: workerId, shardId: shardId, runId: runId,
                             wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
        return note
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

    /// Losses shown by `runs`, when logged.
    static let summaryLosses = ["train/text_loss", "train/mel_loss", "train/mel_top1", "val/text_loss", "val/mel_loss", "eval/cer"]

    /// Every run, newest first, with its progress, latest losses, speed and ETA.
    public func runs(limit: Int = 200) throws -> [RunSummary] {
        let rows: [Row] = try read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.*, (SELECT w.name FROM shards s JOIN workers w ON w.id = s.worker_id
                             WHERE s.run_id = r.id AND s.state IN ('leased', 'running') LIMIT 1) AS worker_name
                FROM runs r ORDER BY r.created_at DESC, r.rowid DESC LIMIT ?
                """, arguments: [limit])
        }
        return try rows.map { row in
            let id: String = row["id"]
            var losses: [String: Double] = [:]
            var step: Int64?
            var rate: Double?
            for key in Self.summaryLosses {
                guard let last = try latestPoint(runId: id, key: key) else { continue }
                losses[key] = last.value
                if key.hasPrefix("train/") {
                    step = max(step ?? last.step, last.step)
                    if rate == nil {
                        let recent = try metricSeries(runId: id, key: key, fromStep: max(0, last.step - 200), toStep: last.step)
                        if let first = recent.first, last.step > first.step, last.wallTime > first.wallTime {
                            rate = Double(last.step - first.step) / (last.wallTime - first.wallTime)
                        }
                    }
                }
            }
            let maxSteps: Int64? = row["max_steps"]
            let state: String = row["state"]
            let eta: Double? = state == RunState.running.rawValue ? zip(rate, maxSteps).flatMap { r, m in r > 0 ? Double(max(0, m - (step ?? 0))) / r : nil } : nil
            return RunSummary(
                id: id, name: row["name"], jobId: row["job_id"], project: row["project"], group: row["group_name"], state: state,
                worker: row["worker_name"], preset: row["preset"], batchSize: row["batch_size"], gradAccum: row["grad_accum"],
                downshifts: row["downshifts"] ?? 0, step: step, maxSteps: maxSteps, losses: losses, stepsPerSecond: rate,
                etaSeconds: eta, checkpoint: row["checkpoint_path"], checkpointStep: row["checkpoint_step"],
                waitReason: RunState(rawValue: state).map { !$0.isFinished } == true ? row["wait_reason"] : nil,
                createdAt: dateFrom(row["created_at"]), finishedAt: dateFrom(row["finished_at"]))
        }
    }

    /// Event kinds shown by `logs` besides the trainer's own lines.
    static let clusterNoteKinds = ["downshift", "resume", "cancel", "oom", "warning", "retention", "resume_mismatch", "disk_low", "trainer_resumed", "lost"]

    /// A run's output lines and the cluster's notes about it, after event id `after`.
    public func runLogs(_ request: LogsRequest) throws -> RunLogs {
        try read { db in
            guard let state = try String.fetchOne(db, sql: "SELECT state FROM runs WHERE id = ?", arguments: [request.run]) else {
                throw ProtocolError(.notFound, "no run \(request.run); see `tts-coordinator runs`")
            }
            let kinds = ["log"] + Self.clusterNoteKinds
            let marks = kinds.map { _ in "?" }.joined(separator: ",")
            var args: [any DatabaseValueConvertible] = [request.run, request.after]
            args += kinds
            let limit = max(1, min(request.limit, 10_000))
            let rows: [Row]
            if let tail = request.tail, request.after == 0 {
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
            let lines = rows.map { r -> RunLogs.Line in
                let kind: String = r["kind"]
                var stream = "cluster"
                var text: String = r["message"]
                if kind == "log" {
                    let data: String = r["data"]
                    stream = jsonDecode([String: JSONValue].self, data)?["stream"]?.stringValue ?? "stdout"
                } else {
                    text = "[\(kind)] \(text)"
                }
                return RunLogs.Line(id: r["id"], wallTime: r["wall_time"], stream: stream, text: text)
            }
            return RunLogs(lines: lines, runState: state)
        }
    }
}

private func zip<A, B>(_ a: A?, _ b: B?) -> (A, B)? {
    guard let a, let b else { return nil }
    return (a, b)
}
