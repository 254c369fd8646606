import ClusterAdmin
import Foundation
import GRDB
import Shared

/// Records a completed evaluation, inside the store's transaction that accepted its last shard:
/// scores the whole set (``EvalAggregator``), stores the summary and, for a run's checkpoint,
/// `eval/asr_floor_cer` and `eval/asr_unreadable` (1 when the floor shows the ASR cannot read the
/// set), then `eval/cer`, `eval/wer`, `eval/cer_utt_mean` at the checkpoint's step (none when no
/// utterance was scored: the evaluation then fails)
/// with the per-utterance W&B table and the first audio samples as media events; then applies the
/// run's retention (the scores may change which pins are the best) and appends the `eval_done`
/// log entry that ``EvalReportWriter`` writes the reports from.
enum EvalCompletionRecorder {
    /// Audio samples logged to W&B per evaluation.
    static let audioSamples = 3

    static func record(_ db: Database, store: Store, eval: EvalRecord, shardId: Int64, now: Date) throws -> EvalCompletion {
        let score = EvalAggregator.score(try Store.utteranceResults(db, jobId: eval.jobId))
        func finite(_ d: Double?) -> Double? { d.flatMap { $0.isFinite ? $0 : nil } }
        let scores = EvalScores(cer: score.cer, wer: score.wer, cerUtteranceMean: score.cerUtteranceMean, floorCer: score.floorCer,
                                failed: score.failed, normalizer: score.normalizer, band: score.band,
                                asrUnreadable: score.asrUnreadable, note: score.note, sim: score.sim, simFloor: score.simFloor, mcd: score.mcd)
        // An evaluation in which nothing could be scored failed: it has no CER (never 0 %).
        let firstReason = score.rows.first(where: \.failed)?.result.error ?? "no transcript"
        let message = score.scored == 0
            ? "no utterance could be scored (\(score.failed) failed; first: \(firstReason.prefix(200)))"
            : "\(score.scored) scored, \(score.failed) failed; CER \(finite(score.cer).map { String(format: "%.4f", $0) } ?? "n/a")"
            + (score.asrUnreadable ? "; \(EvalAggregator.unreadableNote)" : "")
        try store.finishEval(db, eval: eval, scores: scores, state: score.scored == 0 ? .failed : .succeeded, message: message, now: now)
        var points: [MetricPoint] = []
        if let runId = eval.runId, let step = eval.step {
            let t = now.unixSeconds
            // The floor first: the rules read it before the CER of the same step (an unreadable
            // set's CER is ignored by `eval_regression`).
            let unreadable: Double = score.floorCer == nil ? .nan : (score.asrUnreadable ? 1 : 0)
            for (key, value) in [("eval/asr_floor_cer", score.floorCer ?? .nan), ("eval/asr_unreadable", unreadable),
                                 ("eval/cer", score.cer), ("eval/wer", score.wer), ("eval/cer_utt_mean", score.cerUtteranceMean),
                                 ("eval/sim", score.sim ?? .nan), ("eval/sim_floor", score.simFloor ?? .nan), ("eval/mcd", score.mcd ?? .nan),
                                 ("eval/mcd_codec_floor", score.mcdCodecFloor ?? .nan), ("eval/sim_codec_floor", score.simCodecFloor ?? .nan)] where value.isFinite {
                points.append(MetricPoint(runId: runId, step: step, key: key, value: value, wallTime: t))
            }
            // Through the same de-duplication and log as a worker's points (a second evaluation of
            // the same step keeps the first scores, as a re-sent step keeps its first value).
            points = try store.storeCoordinatorPoints(db, run: runId, points, now: t)
            // The per-utterance table, then the first samples as W&B audio, at the checkpoint's step.
            let table = EvalAggregator.wandbTable(score)
            let tableData: [String: JSONValue] = [
                "key": .string("eval/table"), "step": .number(Double(step)), "type": .string("table"),
                "columns": .array(table.columns.map(JSONValue.string)), "rows": .array(table.rows.map(JSONValue.array)),
            ]
            try Store.insertEvent(db, kind: "media", message: "eval table (\(table.rows.count) utterances) at step \(step)", data: jsonString(tableData) ?? "{}",
                                  shardId: shardId, runId: runId, wallTime: t, receivedAt: t)
            for (i, r) in score.rows.filter({ $0.result.audioPath != nil && $0.result.error == nil }).prefix(audioSamples).enumerated() {
                let data: [String: JSONValue] = [
                    "key": .string("eval/sample_\(i)"), "step": .number(Double(step)), "path": .string(r.result.audioPath ?? ""),
                    "type": .string("audio"), "caption": .string("\(r.result.id): \(r.result.hypothesis ?? "")"),
                ]
                try Store.insertEvent(db, kind: "media", message: "eval sample \(r.result.id) at step \(step)", data: jsonString(data) ?? "{}",
                                      shardId: shardId, runId: runId, wallTime: t, receivedAt: t)
            }
        }
        // A finished evaluation may change which pins are the best (keep: {best: K, by: eval/cer}).
        if let runId = eval.runId { try CheckpointRetention.apply(db, store: store, runId: runId, now: now) }
        // Its reports are written by the report writer, from the log (a crash before the files
        // are written loses nothing: the writer continues from its cursor).
        try Store.appendLog(db, .evalDone, runId: eval.runId, workerId: nil, ref: eval.id, at: now.unixSeconds)
        let summary = try store.evalSummary(db, id: eval.id)!
        return EvalCompletion(evalId: eval.id, runId: eval.runId, outputDir: eval.outputDir, points: points, summary: summary)
    }
}
