import ClusterAdmin
import Foundation
import GRDB
import JobSpecs
import Shared

/// Creates an evaluation from a request: validates it, picks the seeded subset of the test
/// manifests, and splits it into `eval` shards over the workers (the store writes the rows). An
/// evaluation of a run's step that already exists is returned as it is (evaluations are per
/// checkpoint, once).
enum EvalCreation {
    /// Utterances per eval shard at most (more shards than that are made for a large set).
    static let maximumUtterancesPerShard = 500

    /// Creates the evaluation in the caller's transaction.
    /// - Throws: ``ProtocolError`` `invalidRequest` for a request that cannot run.
    static func create(_ db: Database, store: Store, _ request: EvalRequest, now: Date) throws -> EvalSummary {
        if let run = request.run, let step = request.step, let id = try store.evalId(db, runId: run, step: step) {
            return try store.evalSummary(db, id: id)!
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
        if let problem = EvalPayload.asrProblem(kind: asr, command: request.asrCommand) { throw ProtocolError(.invalidRequest, problem) }
        let all: [EvalUtterance]
        do { all = try EvalManifest.read(request.manifests.map(ManifestSpec.init(parsing:))) } catch {
            throw ProtocolError(.invalidRequest, "\(error)")
        }
        let picked = EvalManifest.subset(all, count: request.numSamples ?? all.count, seed: request.seed ?? request.run ?? "eval")
        let name = request.step.map { "eval-step\($0)" } ?? "eval-\(Int(now.timeIntervalSince1970))"
        let outputDir = request.outputDir
            ?? URL(fileURLWithPath: request.checkpoint).deletingLastPathComponent().appendingPathComponent(name).path
        let (jobId, evalId) = try store.insertEval(db, NewEvalRecord(name: name, specJSON: jsonString(request) ?? "{}", runId: request.run, step: request.step,
                                                                     checkpoint: request.checkpoint, outputDir: outputDir, utterances: picked.count), now: now)
        let shardCount = max(1, min(picked.count, max(request.shards ?? 2, (picked.count + maximumUtterancesPerShard - 1) / maximumUtterancesPerShard)))
        for i in 0..<shardCount {
            let chunk = stride(from: i, to: picked.count, by: shardCount).map { picked[$0] }
            let payload = EvalPayload(evalId: evalId, checkpoint: request.checkpoint, utterances: chunk, synthesizer: request.synthesizer,
                                      asr: asr, asrCommand: request.asrCommand, asrTimeoutSeconds: request.asrTimeoutSeconds ?? request.synthesizer.timeoutSeconds,
                                      asrStartupTimeoutSeconds: request.asrStartupTimeoutSeconds, asrMaxRestarts: request.asrMaxRestarts,
                                      outputDir: outputDir)
            try store.insertEvalShard(db, jobId: jobId, runId: request.run, kind: EvalPayload.shardKind(asr: asr), payload: jsonString(payload) ?? "{}", now: now)
        }
        return try store.evalSummary(db, id: evalId)!
    }
}

extension Store {
    /// Creates an evaluation (``EvalCreation``): picks the seeded subset of the test manifests,
    /// and splits it into `eval` shards over the workers. An evaluation of a run's step that
    /// already exists is returned as it is (evaluations are per checkpoint, once).
    public func createEval(_ request: EvalRequest, now: Date = Date()) throws -> EvalSummary {
        try write { db in try EvalCreation.create(db, store: self, request, now: now) }
    }
}
