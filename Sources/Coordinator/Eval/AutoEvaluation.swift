import ClusterAdmin
import Foundation
import GRDB
import JobSpecs

/// Starts the evaluation a training run's spec asks for at a checkpoint (`eval_every` and an
/// `eval:` section), once per (run, step), inside the store's transaction that recorded the
/// checkpoint.
enum AutoEvaluation {
    static func checkpointSaved(_ db: Database, store: Store, shardId: Int64, checkpoint: String, step: Int64, now: Date) throws {
        guard let context = try store.trainingShardContext(db, shardId: shardId),
              let request = request(context, checkpoint: checkpoint, step: step) else { return }
        _ = try EvalCreation.create(db, store: store, request, now: now)
    }

    /// The evaluation the spec asks for at `step`, or nil (no `eval:` section, not an
    /// `eval_every` step, or a spec that no longer parses).
    static func request(_ context: TrainingShardContext, checkpoint: String, step: Int64) -> EvalRequest? {
        guard let spec = try? JobSpecParser.parse(yaml: context.specText),
              let every = spec.evalEvery, every > 0, step > 0, step % Int64(every) == 0, let plan = spec.evaluation else { return nil }
        var synthesizer = plan.synthesizer
        // The torch synthesizer of a torch run: the run's own module holds the checkpoint's layout.
        if synthesizer.kind == "torch", synthesizer.module == nil { synthesizer.module = spec.model }
        // Reports beside the run's checkpoints (`<output_dir>/eval-step<N>`), not inside the pin directory.
        return EvalRequest(checkpoint: checkpoint, manifests: plan.manifests.map(\.description), numSamples: plan.numSamples,
                           synthesizer: synthesizer, run: context.runId, step: step,
                           outputDir: context.runOutputDir.map { "\($0)/eval-step\(step)" }, shards: plan.shards,
                           asr: plan.asr, asrCommand: plan.asrCommand, asrTimeoutSeconds: plan.asrTimeoutSeconds,
                           asrStartupTimeoutSeconds: plan.asrStartupTimeoutSeconds, asrMaxRestarts: plan.asrMaxRestarts)
    }
}
