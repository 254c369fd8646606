import ClusterAdmin
import Foundation
import GRDB
import Shared

/// What finishing an evaluation produced, for the caller to act on after the commit: the points
/// it stored (so the alert rules see `eval/cer`) and its summary. (Its reports are written by
/// ``EvalReportWriter`` from the ingest log.)
public struct EvalCompletion: Sendable, Equatable {
    public var evalId: Int64
    public var runId: String?
    public var outputDir: String
    public var points: [MetricPoint]
    public var summary: EvalSummary
}

/// A new evaluation to store.
struct NewEvalRecord: Sendable, Equatable {
    /// The job's name (`eval-step<N>`, …).
    var name: String
    /// The request, as JSON (kept as the job's spec).
    var specJSON: String
    var runId: String?
    var step: Int64?
    var checkpoint: String
    var outputDir: String
    /// How many utterances it scores.
    var utterances: Int
}

/// An evaluation as the store keeps it.
struct EvalRecord: Sendable, Equatable {
    var id: Int64
    var jobId: Int64
    /// The training run whose metrics get the results, if any.
    var runId: String?
    /// The checkpoint's step, if known.
    var step: Int64?
    var checkpoint: String
    var outputDir: String
    var state: EvalState

    init(row: Row) {
        id = row["id"]
        jobId = row["job_id"]
        runId = row["run_id"]
        step = row["step"]
        checkpoint = row["checkpoint"]
        outputDir = row["output_dir"]
        state = row["state"]
    }
}

/// The scores of a finished evaluation, as its stored summary holds them (non-finite scores are
/// stored as null).
struct EvalScores: Sendable, Equatable {
    var cer: Double?
    var wer: Double?
    var cerUtteranceMean: Double?
    var floorCer: Double?
    var failed: Int
    var normalizer: String
    var band: String
    var asrUnreadable = false
    var note: String?
    var sim: Double?
    var simFloor: Double?
    var mcd: Double?
}

/// A training shard's run and the spec of its job (for the decisions that read the spec).
struct TrainingShardContext: Sendable, Equatable {
    var runId: String
    /// The job spec as submitted (YAML).
    var specText: String
    /// The run's output directory, if recorded.
    var runOutputDir: String?
}

extension Store {
    /// The evaluation of a run's step, if one exists (evaluations are per checkpoint, once).
    func evalId(_ db: Database, runId: String, step: Int64) throws -> Int64? {
        try Int64.fetchOne(db, sql: "SELECT id FROM evals WHERE run_id = ? AND step = ?", arguments: [runId, step])
    }

    /// Inserts an evaluation and its job (kind `eval`, active; the request kept as the job's
    /// spec); returns both ids. Its shards follow with ``insertEvalShard(_:jobId:runId:kind:payload:now:)``.
    func insertEval(_ db: Database, _ eval: NewEvalRecord, now: Date) throws -> (jobId: Int64, evalId: Int64) {
        try db.execute(sql: "INSERT INTO jobs (name, kind, spec, state, created_at) VALUES (?, 'eval', ?, 'active', ?)",
                       arguments: [eval.name, eval.specJSON, now.unixSeconds])
        let jobId = db.lastInsertedRowID
        try db.execute(sql: """
            INSERT INTO evals (job_id, run_id, step, checkpoint, output_dir, utterances, state, created_at)
            VALUES (?, ?, ?, ?, ?, ?, 'running', ?)
            """, arguments: [jobId, eval.runId, eval.step, eval.checkpoint, eval.outputDir, eval.utterances, now.unixSeconds])
        return (jobId, db.lastInsertedRowID)
    }

    /// Inserts a queued shard of an evaluation job (3 retries).
    func insertEvalShard(_ db: Database, jobId: Int64, runId: String?, kind: String, payload: String, now: Date) throws {
        try db.execute(sql: """
            INSERT INTO shards (job_id, run_id, kind, payload, state, max_retries, created_at, updated_at)
            VALUES (?, ?, ?, ?, 'queued', 3, ?, ?)
            """, arguments: [jobId, runId, kind, payload, now.unixSeconds, now.unixSeconds])
    }

    /// Called when an `eval` shard succeeded: once every shard of its evaluation has, the
    /// coordinator's decisions score it and record the outcome, in the caller's transaction.
    func completeEvalIfDone(_ db: Database, shardId: Int64, now: Date) throws -> EvalCompletion? {
        guard let jobId = try Int64.fetchOne(db, sql: "SELECT job_id FROM shards WHERE id = ? AND kind IN ('eval', 'eval-command')", arguments: [shardId]),
              let row = try Row.fetchOne(db, sql: "SELECT * FROM evals WHERE job_id = ?", arguments: [jobId]),
              (row["state"] as EvalState) == .running else { return nil }
        let open = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM shards WHERE job_id = ? AND state != 'succeeded'", arguments: [jobId]) ?? 0
        guard open == 0 else { return nil }
        return try decisions.evaluationFinished(db, store: self, eval: EvalRecord(row: row), shardId: shardId, now: now)
    }

    /// Marks an evaluation succeeded with its scores and message, and its job done.
    func finishEval(_ db: Database, eval: EvalRecord, scores: EvalScores, state: EvalState, message: String, now: Date) throws {
        func number(_ d: Double?) -> JSONValue { d.flatMap { $0.isFinite ? JSONValue.number($0) : nil } ?? .null }
        let summary: [String: JSONValue] = [
            "cer": number(scores.cer), "wer": number(scores.wer), "cer_utterance_mean": number(scores.cerUtteranceMean),
            "asr_floor_cer": number(scores.floorCer), "failed": .number(Double(scores.failed)),
            "normalizer": .string(scores.normalizer), "band": .string(scores.band),
            "asr_unreadable": .bool(scores.asrUnreadable), "note": scores.note.map(JSONValue.string) ?? .null,
            "sim": number(scores.sim), "sim_floor": number(scores.simFloor), "mcd": number(scores.mcd),
        ]
        try db.execute(sql: "UPDATE evals SET state = ?, summary = ?, finished_at = ?, message = ? WHERE id = ?",
                       arguments: [state.rawValue, jsonString(summary), now.unixSeconds, message, eval.id])
        try db.execute(sql: "UPDATE jobs SET state = 'done' WHERE id = ?", arguments: [eval.jobId])
    }

    /// Every utterance result of an evaluation job's shards, in shard order.
    static func utteranceResults(_ db: Database, jobId: Int64) throws -> [EvalUtteranceResult] {
        var results: [EvalUtteranceResult] = []
        for output in try String.fetchAll(db, sql: "SELECT output FROM shards WHERE job_id = ? ORDER BY id", arguments: [jobId]) {
            struct Output: Decodable { var utterances: [EvalUtteranceResult] }
            if let o = jsonDecode(Output.self, output) { results += o.utterances }
        }
        return results
    }

    /// The shards' `notes` (``EvalShardOutput/notes``: what a worker could not measure and why),
    /// each once, in shard order.
    static func shardNotes(_ db: Database, jobId: Int64) throws -> [String] {
        var notes: [String] = []
        for output in try String.fetchAll(db, sql: "SELECT output FROM shards WHERE job_id = ? ORDER BY id", arguments: [jobId]) {
            struct Output: Decodable { var notes: [String]? }
            for n in jsonDecode(Output.self, output)?.notes ?? [] where !notes.contains(n) { notes.append(n) }
        }
        return notes
    }

    /// A completed evaluation with its stored utterance results (what its reports are made
    /// from): scored, whether it succeeded or failed because no utterance could be scored; nil
    /// if it is running or failed before it was scored (a shard failed for good).
    func completedEval(evalId: Int64) throws -> (eval: EvalRecord, results: [EvalUtteranceResult], summary: EvalSummary, notes: [String])? {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM evals WHERE id = ?", arguments: [evalId]),
                  (row["state"] as EvalState) != .running, (row["summary"] as String?) != nil,
                  let summary = try evalSummary(db, id: evalId) else { return nil }
            let eval = EvalRecord(row: row)
            return (eval, try Self.utteranceResults(db, jobId: eval.jobId), summary, try Self.shardNotes(db, jobId: eval.jobId))
        }
    }

    /// Marks the evaluation of a shard that failed for good as failed.
    func failEval(_ db: Database, shardId: Int64, message: String, now: Date) throws {
        try db.execute(sql: """
            UPDATE evals SET state = 'failed', finished_at = ?, message = ?
            WHERE job_id = (SELECT job_id FROM shards WHERE id = ? AND kind IN ('eval', 'eval-command')) AND state = 'running'
            """, arguments: [now.unixSeconds, "shard \(shardId) failed: \(message)", shardId])
    }

    /// The run and job spec of a training (`train`, `torch`) shard; nil for other shards.
    func trainingShardContext(_ db: Database, shardId: Int64) throws -> TrainingShardContext? {
        guard let row = try Row.fetchOne(db, sql: """
            SELECT s.run_id, j.spec, r.output_dir FROM shards s JOIN jobs j ON j.id = s.job_id LEFT JOIN runs r ON r.id = s.run_id
            WHERE s.id = ? AND s.kind IN ('train', 'torch')
            """, arguments: [shardId]),
              let runId: String = row["run_id"] else { return nil }
        return TrainingShardContext(runId: runId, specText: row["spec"], runOutputDir: row["output_dir"])
    }

    public func evals(limit: Int = 200) throws -> [EvalSummary] {
        try read { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM evals ORDER BY id DESC LIMIT ?", arguments: [limit]).compactMap { try evalSummary(db, id: $0) }
        }
    }

    func evalSummary(_ db: Database, id: Int64) throws -> EvalSummary? {
        guard let r = try Row.fetchOne(db, sql: "SELECT * FROM evals WHERE id = ?", arguments: [id]) else { return nil }
        let s = jsonDecode([String: JSONValue].self, r["summary"]) ?? [:]
        return EvalSummary(id: id, jobId: r["job_id"], runId: r["run_id"], step: r["step"], checkpoint: r["checkpoint"], state: EvalSummary.State(rawValue: r["state"]),
                           utterances: r["utterances"], outputDir: r["output_dir"], cer: s["cer"]?.doubleValue, wer: s["wer"]?.doubleValue,
                           cerUtteranceMean: s["cer_utterance_mean"]?.doubleValue, floorCer: s["asr_floor_cer"]?.doubleValue,
                           failedUtterances: s["failed"]?.doubleValue.map { Int($0) }, normalizer: s["normalizer"]?.stringValue,
                           message: r["message"], createdAt: dateFrom(r["created_at"]), finishedAt: dateFrom(r["finished_at"]),
                           note: s["note"]?.stringValue, asrUnreadable: s["asr_unreadable"].flatMap { if case .bool(let b) = $0 { b } else { nil } },
                           sim: s["sim"]?.doubleValue, simFloor: s["sim_floor"]?.doubleValue, mcd: s["mcd"]?.doubleValue)
    }
}
