import ClusterAdmin
import Foundation
import GRDB
import JobSpecs
import Shared

/// What finishing an evaluation produced, for the caller to act on after the commit: the report
/// files to write and the points it stored (so the alert rules see `eval/cer`).
public struct EvalCompletion: Sendable, Equatable {
    public var evalId: Int64
    public var runId: String?
    public var outputDir: String
    public var reportJSON: [UInt8]
    public var reportMarkdown: String
    public var points: [MetricPoint]
    public var summary: EvalSummary
}

extension Store {
    /// Utterances per eval shard at most (more shards than that are made for a large set).
    static let maximumUtterancesPerShard = 500

    /// Creates an evaluation: picks the seeded subset of the test manifests, and splits it into
    /// `eval` shards over the workers. An evaluation of a run's step that already exists is
    /// returned as it is (evaluations are per checkpoint, once).
    public func createEval(_ request: EvalRequest, now: Date = Date()) throws -> EvalSummary {
        try write { db in try createEval(db, request, now: now) }
    }

    func createEval(_ db: Database, _ request: EvalRequest, now: Date) throws -> EvalSummary {
        if let run = request.run, let step = request.step,
           let id = try Int64.fetchOne(db, sql: "SELECT id FROM evals WHERE run_id = ? AND step = ?", arguments: [run, step]) {
            return try evalSummary(db, id: id)!
        }
        guard !request.manifests.isEmpty else { throw ProtocolError(.invalidRequest, "eval needs at least one test manifest (--manifest path.jsonl::ko)") }
        guard SynthesizerSpec.kinds.contains(request.synthesizer.kind) else {
            throw ProtocolError(.invalidRequest, "unknown synthesizer '\(request.synthesizer.kind)': use \(SynthesizerSpec.kinds.joined(separator: ", "))")
        }
        if let n = request.synthesizer.maxCodes, n <= 0 {
            throw ProtocolError(.invalidRequest, "the torch synthesizer's max_codes must be positive, got \(n)")
        }
        if ["command", "persistent"].contains(request.synthesizer.kind), (request.synthesizer.command ?? []).isEmpty {
            throw ProtocolError(.invalidRequest, "the \(request.synthesizer.kind) synthesizer needs a command template")
        }
        let asr = request.asr ?? "vosk"
        guard ["vosk", "command"].contains(asr) else { throw ProtocolError(.invalidRequest, "unknown ASR backend '\(asr)': use vosk or command") }
        if asr == "command", !(request.asrCommand ?? []).contains(where: { $0.contains("{audio}") }) {
            throw ProtocolError(.invalidRequest, "the command ASR backend needs a command with {audio} (it prints the transcript on stdout)")
        }
        let all: [EvalUtterance]
        do { all = try EvalManifest.read(request.manifests.map(ManifestSpec.init(parsing:))) } catch {
            throw ProtocolError(.invalidRequest, "\(error)")
        }
        let picked = EvalManifest.subset(all, count: request.numSamples ?? all.count, seed: request.seed ?? request.run ?? "eval")
        let name = request.step.map { "eval-step\($0)" } ?? "eval-\(Int(now.timeIntervalSince1970))"
        let outputDir = request.outputDir
            ?? URL(fileURLWithPath: request.checkpoint).deletingLastPathComponent().appendingPathComponent(name).path
        try db.execute(sql: "INSERT INTO jobs (name, kind, spec, state, created_at) VALUES (?, 'eval', ?, 'active', ?)",
                       arguments: [name, jsonString(request) ?? "{}", now.unixSeconds])
        let jobId = db.lastInsertedRowID
        try db.execute(sql: """
            INSERT INTO evals (job_id, run_id, step, checkpoint, output_dir, utterances, state, created_at)
            VALUES (?, ?, ?, ?, ?, ?, 'running', ?)
            """, arguments: [jobId, request.run, request.step, request.checkpoint, outputDir, picked.count, now.unixSeconds])
        let evalId = db.lastInsertedRowID
        let shardCount = max(1, min(picked.count, max(request.shards ?? 2, (picked.count + Self.maximumUtterancesPerShard - 1) / Self.maximumUtterancesPerShard)))
        for i in 0..<shardCount {
            let chunk = stride(from: i, to: picked.count, by: shardCount).map { picked[$0] }
            let payload = EvalPayload(evalId: evalId, checkpoint: request.checkpoint, utterances: chunk, synthesizer: request.synthesizer,
                                      asr: asr, asrCommand: request.asrCommand, asrTimeoutSeconds: request.synthesizer.timeoutSeconds,
                                      outputDir: outputDir)
            try db.execute(sql: """
                INSERT INTO shards (job_id, run_id, kind, payload, state, max_retries, created_at, updated_at)
                VALUES (?, ?, ?, ?, 'queued', 3, ?, ?)
                """, arguments: [jobId, request.run, EvalPayload.shardKind(asr: asr), jsonString(payload) ?? "{}", now.unixSeconds, now.unixSeconds])
        }
        return try evalSummary(db, id: evalId)!
    }

    /// Called when an `eval` shard succeeded: once every shard of its evaluation has, scores the
    /// whole set, stores the summary, and (for a run's checkpoint) stores `eval/cer`, `eval/wer`,
    /// `eval/cer_utt_mean` and `eval/asr_floor_cer` at the checkpoint's step, with the first audio
    /// samples as media events, all in the caller's transaction.
    func completeEvalIfDone(_ db: Database, shardId: Int64, now: Date) throws -> EvalCompletion? {
        guard let jobId = try Int64.fetchOne(db, sql: "SELECT job_id FROM shards WHERE id = ? AND kind IN ('eval', 'eval-command')", arguments: [shardId]),
              let row = try Row.fetchOne(db, sql: "SELECT * FROM evals WHERE job_id = ?", arguments: [jobId]),
              (row["state"] as EvalState) == .running else { return nil }
        let open = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM shards WHERE job_id = ? AND state != 'succeeded'", arguments: [jobId]) ?? 0
        guard open == 0 else { return nil }
        let evalId: Int64 = row["id"]
        let score = EvalAggregator.score(try Self.utteranceResults(db, jobId: jobId))
        func finite(_ d: Double?) -> Double? { d.flatMap { $0.isFinite ? $0 : nil } }
        let summaryJSON: [String: JSONValue] = [
            "cer": finite(score.cer).map(JSONValue.number) ?? .null, "wer": finite(score.wer).map(JSONValue.number) ?? .null,
            "cer_utterance_mean": finite(score.cerUtteranceMean).map(JSONValue.number) ?? .null,
            "asr_floor_cer": finite(score.floorCer).map(JSONValue.number) ?? .null,
            "failed": .number(Double(score.failed)), "normalizer": .string(score.normalizer), "band": .string(score.band),
        ]
        try db.execute(sql: "UPDATE evals SET state = 'succeeded', summary = ?, finished_at = ?, message = ? WHERE id = ?",
                       arguments: [jsonString(summaryJSON), now.unixSeconds,
                                   "\(score.scored) scored, \(score.failed) failed; CER \(finite(score.cer).map { String(format: "%.4f", $0) } ?? "n/a")", evalId])
        try db.execute(sql: "UPDATE jobs SET state = 'done' WHERE id = ?", arguments: [jobId])
        var points: [MetricPoint] = []
        let runId: String? = row["run_id"]
        if let runId, let step: Int64 = row["step"] {
            let t = now.unixSeconds
            for (key, value) in [("eval/cer", score.cer), ("eval/wer", score.wer), ("eval/cer_utt_mean", score.cerUtteranceMean),
                                 ("eval/asr_floor_cer", score.floorCer ?? .nan)] where value.isFinite {
                points.append(MetricPoint(runId: runId, step: step, key: key, value: value, wallTime: t))
            }
            // Through the same de-duplication and log as a worker's points (a second evaluation of
            // the same step keeps the first scores, as a re-sent step keeps its first value).
            points = try storeCoordinatorPoints(db, run: runId, points, now: t)
            // The per-utterance table, then the first samples as W&B audio, at the checkpoint's step.
            let table = EvalAggregator.wandbTable(score)
            let tableData: [String: JSONValue] = [
                "key": .string("eval/table"), "step": .number(Double(step)), "type": .string("table"),
                "columns": .array(table.columns.map(JSONValue.string)), "rows": .array(table.rows.map(JSONValue.array)),
            ]
            try Self.insertEvent(db, kind: "media", message: "eval table (\(table.rows.count) utterances) at step \(step)", data: jsonString(tableData) ?? "{}",
                                 shardId: shardId, runId: runId, wallTime: t, receivedAt: t)
            // The first samples as W&B audio at the checkpoint's step.
            for (i, r) in score.rows.filter({ $0.result.audioPath != nil && $0.result.error == nil }).prefix(3).enumerated() {
                let data: [String: JSONValue] = [
                    "key": .string("eval/sample_\(i)"), "step": .number(Double(step)), "path": .string(r.result.audioPath ?? ""),
                    "type": .string("audio"), "caption": .string("\(r.result.id): \(r.result.hypothesis ?? "")"),
                ]
                try Self.insertEvent(db, kind: "media", message: "eval sample \(r.result.id) at step \(step)", data: jsonString(data) ?? "{}",
                                     shardId: shardId, runId: runId, wallTime: t, receivedAt: t)
            }
        }
        // A finished evaluation may change which pins are the best (keep: {best: K, by: eval/cer}).
        if let runId { try applyRetention(db, runId: runId, now: now) }
        // Its reports are written by the report writer, from the log (a crash before the files
        // are written loses nothing: the writer continues from its cursor).
        try Self.appendLog(db, .evalDone, runId: runId, workerId: nil, ref: evalId, at: now.unixSeconds)
        let summary = try evalSummary(db, id: evalId)!
        return EvalCompletion(evalId: evalId, runId: runId, outputDir: row["output_dir"],
                              reportJSON: EvalAggregator.reportJSON(score, eval: summary),
                              reportMarkdown: EvalAggregator.reportMarkdown(score, eval: summary), points: points, summary: summary)
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

    /// The reports of a completed evaluation (`report.json`, `report.md`), made again from its
    /// stored results; nil if it has not completed.
    public func evalReports(evalId: Int64) throws -> (outputDir: String, json: [UInt8], markdown: String, summary: EvalSummary)? {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT job_id, output_dir, state FROM evals WHERE id = ?", arguments: [evalId]),
                  (row["state"] as EvalState) == .succeeded, let summary = try evalSummary(db, id: evalId) else { return nil }
            let score = EvalAggregator.score(try Self.utteranceResults(db, jobId: row["job_id"]))
            return (row["output_dir"], EvalAggregator.reportJSON(score, eval: summary), EvalAggregator.reportMarkdown(score, eval: summary), summary)
        }
    }

    /// Marks the evaluation of a shard that failed for good as failed.
    func failEval(_ db: Database, shardId: Int64, message: String, now: Date) throws {
        try db.execute(sql: """
            UPDATE evals SET state = 'failed', finished_at = ?, message = ?
            WHERE job_id = (SELECT job_id FROM shards WHERE id = ? AND kind IN ('eval', 'eval-command')) AND state = 'running'
            """, arguments: [now.unixSeconds, "shard \(shardId) failed: \(message)", shardId])
    }

    /// Starts the evaluation a training run's spec asks for at this checkpoint (`eval_every` and
    /// an `eval:` section), once per (run, step).
    func autoEval(_ db: Database, shardId: Int64, checkpoint: String, step: Int64, now: Date) throws {
        guard let row = try Row.fetchOne(db, sql: "SELECT s.run_id, j.spec FROM shards s JOIN jobs j ON j.id = s.job_id WHERE s.id = ? AND s.kind IN ('train', 'torch')",
                                         arguments: [shardId]),
              let runId: String = row["run_id"], let spec = try? JobSpecParser.parse(yaml: row["spec"]),
              let every = spec.evalEvery, every > 0, step > 0, step % Int64(every) == 0, let plan = spec.evaluation else { return }
        var synthesizer = plan.synthesizer
        // The torch synthesizer of a torch run: the run's own module holds the checkpoint's layout.
        if synthesizer.kind == "torch", synthesizer.module == nil { synthesizer.module = spec.model }
        // Reports beside the run's checkpoints (`<output_dir>/eval-step<N>`), not inside the pin directory.
        let runDir = try String.fetchOne(db, sql: "SELECT output_dir FROM runs WHERE id = ?", arguments: [runId])
        _ = try createEval(db, EvalRequest(checkpoint: checkpoint, manifests: plan.manifests.map(\.description), numSamples: plan.numSamples,
                                           synthesizer: synthesizer, run: runId, step: step,
                                           outputDir: runDir.map { "\($0)/eval-step\(step)" }, shards: plan.shards,
                                           asr: plan.asrCommand == nil ? "vosk" : "command", asrCommand: plan.asrCommand), now: now)
    }

    public func evals(limit: Int = 200) throws -> [EvalSummary] {
        try read { db in
            try Int64.fetchAll(db, sql: "SELECT id FROM evals ORDER BY id DESC LIMIT ?", arguments: [limit]).compactMap { try evalSummary(db, id: $0) }
        }
    }

    func evalSummary(_ db: Database, id: Int64) throws -> EvalSummary? {
        guard let r = try Row.fetchOne(db, sql: "SELECT * FROM evals WHERE id = ?", arguments: [id]) else { return nil }
        let s = jsonDecode([String: JSONValue].self, r["summary"]) ?? [:]
        return EvalSummary(id: id, jobId: r["job_id"], runId: r["run_id"], step: r["step"], checkpoint: r["checkpoint"], state: r["state"],
                           utterances: r["utterances"], outputDir: r["output_dir"], cer: s["cer"]?.doubleValue, wer: s["wer"]?.doubleValue,
                           cerUtteranceMean: s["cer_utterance_mean"]?.doubleValue, floorCer: s["asr_floor_cer"]?.doubleValue,
                           failedUtterances: s["failed"]?.doubleValue.map { Int($0) }, normalizer: s["normalizer"]?.stringValue,
                           message: r["message"], createdAt: dateFrom(r["created_at"]), finishedAt: dateFrom(r["finished_at"]))
    }
}
