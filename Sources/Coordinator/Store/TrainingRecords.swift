import ClusterAdmin
import Shared

// The plain records the store exchanges with the coordinator's training decisions: what it
// stores for a new job and its runs, what it knows about a run at dispatch, and the writes a
// dispatch or an OOM downshift asks for. No job-spec logic here: the coordinator parses the spec
// text and decides (see `Jobs/TrainingDispatch.swift`, `Jobs/TrainingSubmission.swift`).

/// A training job to create.
struct TrainingJobRecord: Sendable, Equatable {
    var name: String
    /// The job's kind (`train`).
    var kind: String
    /// The spec as submitted (YAML).
    var specText: String
    /// The kind of each run's shard (`train` or `torch`).
    var shardKind: String
    var maxRetries: Int
    /// The W&B project of its runs.
    var project: String
    var maxSteps: Int?
    /// Ranks per run (`world: {gpus: N}`): N > 1 makes each run a gang of N shards.
    var worldSize: Int = 1
}

/// A run of a new training job.
struct TrainingRunRecord: Sendable, Equatable {
    var name: String
    var group: String?
    /// The sweep values, as `name=value`.
    var tags: [String]
    /// The run's W&B config.
    var config: [String: JSONValue]
}

/// What the store knows about a training run when its queued shard is offered to a worker.
struct TrainingDispatchSnapshot: Sendable, Equatable {
    var runId: String
    /// The job spec as submitted (YAML).
    var specText: String
    /// Index of the run in the spec's runs (its sweep combination).
    var runIndex: Int
    /// The run's output directory (nil: none recorded).
    var outputDir: String?
    /// The largest micro-batch the run may use (half of one that ran out of memory), if any.
    var batchCap: Int?
    /// The newest checkpoint with optimizer state (or, from older events, of unknown state).
    var checkpointPath: String?
    var checkpointStep: Int64?
    /// False when ``checkpointPath`` is known to hold no optimizer state (nil: unknown).
    var checkpointFull: Bool?
    /// The newest checkpoint without optimizer state.
    var lightCheckpointPath: String?
    var lightCheckpointStep: Int64?
    /// Per key (not `system/…`), the highest step stored for the run.
    var storedThrough: [String: Int64]
    /// The polling worker's device (nil: unknown to the store).
    var device: DeviceInfo?
}

/// What the store writes for a training shard offered to a worker.
enum TrainingDispatchPlan: Sendable, Equatable {
    /// Lease it with this payload; the run records the preset and batch.
    case dispatch(TrainingDispatchWrite)
    /// This worker cannot take it; the run records why (it waits for another worker).
    case wait(reason: String)
    /// This worker cannot take it; nothing is recorded.
    case skip
    /// It can never start: the shard fails with this reason.
    case fail(reason: String)
}

/// The writes of a dispatch.
struct TrainingDispatchWrite: Sendable, Equatable {
    /// The shard payload the worker gets.
    var payload: [String: JSONValue]
    var preset: String
    var batchSize: Int
    var gradAccum: Int
    /// The message of the run's `resume` event (nil: a first start, no event).
    var resumeMessage: String?
}

/// The writes of an OOM downshift.
struct TrainingDownshift: Sendable, Equatable {
    /// The run's new micro-batch cap.
    var batchCap: Int
    /// The `downshift` event's message (also prepended to the attempt's message).
    var note: String
    /// The `downshift` event's data.
    var data: [String: JSONValue]
}

/// An idle worker offered to a waiting gang (what the store knows of it).
struct GangCandidateRecord: Sendable, Equatable {
    var workerId: String
    var name: String
    var host: String
    var device: DeviceInfo
    var rendezvous: RendezvousEndpoint?
    /// It failed this run's gang twice (failed, lost or out of memory while it held a rank).
    var excluded: Bool
}

/// What the store writes for a gang offered the idle workers.
enum GangDispatchPlan: Sendable, Equatable {
    /// Lease rank r's shard to `members[r].workerId` with its payload, all in this transaction.
    case start(members: [(workerId: String, payload: [String: JSONValue])], preset: String, batchSize: Int, gradAccum: Int, resumeMessage: String?)
    /// Not now; `fitting` are the idle workers that fit it (reserved when it has waited long).
    case wait(reason: String, fitting: [String])
    /// It can never start: its shards fail with this reason.
    case fail(reason: String)

    static func == (a: GangDispatchPlan, b: GangDispatchPlan) -> Bool {
        switch (a, b) {
        case let (.start(m1, p1, b1, g1, r1), .start(m2, p2, b2, g2, r2)):
            return m1.map(\.workerId) == m2.map(\.workerId) && m1.map(\.payload) == m2.map(\.payload) && p1 == p2 && b1 == b2 && g1 == g2 && r1 == r2
        case let (.wait(r1, f1), .wait(r2, f2)): return r1 == r2 && f1 == f2
        case let (.fail(r1), .fail(r2)): return r1 == r2
        default: return false
        }
    }
}
