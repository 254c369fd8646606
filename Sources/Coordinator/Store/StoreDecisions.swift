import Foundation
import GRDB

/// The decisions the store asks the coordinator for inside its own write transactions.
///
/// The store keeps data: it notices a fact while it writes (an evaluation's last shard
/// succeeded, a checkpoint was pinned, a training shard is offered to a worker, a trainer ran out
/// of memory) and asks these decisions what follows, in the same transaction, so the fact and
/// what it implies commit together or not at all. What the decisions write, they write through
/// the store's typed primitives. The coordinator's components implement them
/// (``CoordinatorDecisions``); the store never scores, parses job specs or renders payloads.
protocol StoreDecisions: Sendable {
    /// Every shard of a running evaluation has succeeded: score it and record the outcome
    /// (``Store/finishEval(_:eval:scores:message:now:)``, points, media events, the `eval_done`
    /// log entry).
    func evaluationFinished(_ db: Database, store: Store, eval: EvalRecord, shardId: Int64, now: Date) throws -> EvalCompletion

    /// A training shard saved a checkpoint at `step`: start the evaluation the run's spec asks
    /// for there, if any.
    func checkpointSaved(_ db: Database, store: Store, shardId: Int64, checkpoint: String, step: Int64, now: Date) throws

    /// The run's pins or their scores changed: apply its retention policy.
    func pinsChanged(_ db: Database, store: Store, runId: String, now: Date) throws

    /// What a queued training shard becomes on the polling worker.
    func trainingDispatch(_ snapshot: TrainingDispatchSnapshot) -> TrainingDispatchPlan

    /// Whether a data-parallel run can start now on these idle workers, and how.
    func gangDispatch(_ snapshot: TrainingDispatchSnapshot, candidates: [GangCandidateRecord]) -> GangDispatchPlan

    /// A training shard ran out of CUDA memory at the batch of `payload`: the smaller batch to
    /// retry with, or nil when the spec's floor does not allow one.
    func outOfMemoryDownshift(specText: String, payload: String) -> TrainingDownshift?
}
