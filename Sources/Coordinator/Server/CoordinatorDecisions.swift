import Foundation
import GRDB

/// The coordinator's answers to the store's in-transaction questions (``StoreDecisions``), each
/// made by the component that owns it: evaluation scoring and its W&B payloads
/// (``EvalCompletionRecorder``), evaluations a spec asks for (``AutoEvaluation``), checkpoint
/// retention (``CheckpointRetention``), and training dispatch and OOM downshifts
/// (``TrainingDispatch``).
struct CoordinatorDecisions: StoreDecisions {
    func evaluationFinished(_ db: Database, store: Store, eval: EvalRecord, shardId: Int64, now: Date) throws -> EvalCompletion {
        try EvalCompletionRecorder.record(db, store: store, eval: eval, shardId: shardId, now: now)
    }

    func checkpointSaved(_ db: Database, store: Store, shardId: Int64, checkpoint: String, step: Int64, now: Date) throws {
        try AutoEvaluation.checkpointSaved(db, store: store, shardId: shardId, checkpoint: checkpoint, step: step, now: now)
    }

    func pinsChanged(_ db: Database, store: Store, runId: String, now: Date) throws {
        try CheckpointRetention.apply(db, store: store, runId: runId, now: now)
    }

    func trainingDispatch(_ snapshot: TrainingDispatchSnapshot) -> TrainingDispatchPlan {
        TrainingDispatch.plan(snapshot)
    }

    func gangDispatch(_ snapshot: TrainingDispatchSnapshot, candidates: [GangCandidateRecord]) -> GangDispatchPlan {
        GangDispatch.plan(snapshot, candidates: candidates)
    }

    func outOfMemoryDownshift(specText: String, payload: String) -> TrainingDownshift? {
        TrainingDispatch.downshift(specText: specText, payload: payload)
    }
}
