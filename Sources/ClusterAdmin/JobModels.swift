import Foundation

/// `submit` arguments: a job spec as the user wrote it (YAML or JSON, which is YAML too).
public struct SubmitRequest: Codable, Sendable, Equatable {
    /// The spec's text.
    public var spec: String
    /// Where it came from (a file name), for error messages.
    public var source: String?

    public init(spec: String, source: String? = nil) {
        self.spec = spec
        self.source = source
    }
}

/// What `submit` created: one job and its runs (several for a sweep).
public struct SubmitReply: Codable, Sendable, Equatable {
    public struct Run: Codable, Sendable, Equatable {
        /// The 8-character run id (also the W&B run id).
        public var id: String
        public var name: String
        public var group: String?
        /// The swept values of this run, `name=value` (empty without a sweep).
        public var sweepValues: [String]
        public var shardId: Int64

        public init(id: String, name: String, group: String?, sweepValues: [String], shardId: Int64) {
            self.id = id
            self.name = name
            self.group = group
            self.sweepValues = sweepValues
            self.shardId = shardId
        }
    }

    public var jobId: Int64
    public var runs: [Run]

    public init(jobId: Int64, runs: [Run]) {
        self.jobId = jobId
        self.runs = runs
    }
}

/// A run as `tts-coordinator runs` shows it.
public struct RunSummary: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var jobId: Int64
    public var project: String
    public var group: String?
    /// `queued` (no shard started yet), `running`, `succeeded`, `failed`, `cancelled`.
    public var state: State
    /// The worker holding its shard now, if any.
    public var worker: String?
    /// The GPU class (preset) and batch of the last dispatch.
    public var preset: String?
    public var batchSize: Int?
    public var gradAccum: Int?
    /// OOM downshifts so far (each halved the micro-batch and doubled the accumulation).
    public var downshifts: Int
    /// Highest training step stored.
    public var step: Int64?
    public var maxSteps: Int64?
    /// Latest value of the losses that were logged (`train/text_loss`, `train/mel_loss`, `val/text_loss`, …).
    public var losses: [String: Double]
    /// Training speed over the last stored steps, and the time left to `maxSteps` at that speed.
    public var stepsPerSecond: Double?
    public var etaSeconds: Double?
    /// The last resumable checkpoint reported, and its step.
    public var checkpoint: String?
    public var checkpointStep: Int64?
    /// Why it is not running (no free worker fits any preset, …).
    public var waitReason: String?
    public var createdAt: Date?
    public var finishedAt: Date?
    /// GPUs (ranks) that train it together (`world: {gpus: N}`); nil or 1: one.
    public var worldSize: Int?

    public init(id: String, name: String, jobId: Int64, project: String, group: String?, state: State, worker: String?,
                preset: String?, batchSize: Int?, gradAccum: Int?, downshifts: Int, step: Int64?, maxSteps: Int64?,
                losses: [String: Double], stepsPerSecond: Double?, etaSeconds: Double?, checkpoint: String?,
                checkpointStep: Int64?, waitReason: String?, createdAt: Date?, finishedAt: Date?, worldSize: Int? = nil) {
        self.worldSize = worldSize
        self.id = id
        self.name = name
        self.jobId = jobId
        self.project = project
        self.group = group
        self.state = state
        self.worker = worker
        self.preset = preset
        self.batchSize = batchSize
        self.gradAccum = gradAccum
        self.downshifts = downshifts
        self.step = step
        self.maxSteps = maxSteps
        self.losses = losses
        self.stepsPerSecond = stepsPerSecond
        self.etaSeconds = etaSeconds
        self.checkpoint = checkpoint
        self.checkpointStep = checkpointStep
        self.waitReason = waitReason
        self.createdAt = createdAt
        self.finishedAt = finishedAt
    }
}

/// `logs` arguments: the lines of a run after `after` (an event id), at most `limit`.
public struct LogsRequest: Codable, Sendable, Equatable {
    public var run: String
    public var after: Int64
    public var limit: Int
    /// Only the last `tail` lines (when `after` is 0).
    public var tail: Int?

    public init(run: String, after: Int64 = 0, limit: Int = 1_000, tail: Int? = nil) {
        self.run = run
        self.after = after
        self.limit = limit
        self.tail = tail
    }
}

/// A run's output lines (the trainer's stdout and stderr) and the cluster's notes about it
/// (downshifts, resumes), in the order they were stored.
public struct RunLogs: Codable, Sendable, Equatable {
    public struct Line: Codable, Sendable, Equatable {
        public var id: Int64
        public var wallTime: Double
        /// `stdout`, `stderr`, or `cluster` for the coordinator's own notes.
        public var stream: String
        public var text: String

        public init(id: Int64, wallTime: Double, stream: String, text: String) {
            self.id = id
            self.wallTime = wallTime
            self.stream = stream
            self.text = text
        }
    }

    public var lines: [Line]
    /// The run's state when these were read (a follower stops once it is finished and drained).
    public var runState: RunSummary.State

    public init(lines: [Line], runState: RunSummary.State) {
        self.lines = lines
        self.runState = runState
    }
}

/// What `cancel` did.
public struct CancelReply: Codable, Sendable, Equatable {
    public var run: String
    /// Shards that had not started and are cancelled now.
    public var cancelledQueued: Int
    /// Shards running on workers, told to stop (their trainers get SIGTERM, then SIGKILL).
    public var stopping: Int

    public init(run: String, cancelledQueued: Int, stopping: Int) {
        self.run = run
        self.cancelledQueued = cancelledQueued
        self.stopping = stopping
    }
}

/// A job as the API lists it: what was submitted, its state, its runs and its shards by state.
public struct JobSummary: Codable, Sendable, Equatable {
    public var id: Int64
    public var name: String
    /// `train`, `eval`, or a built-in shard kind for enqueued jobs.
    public var kind: String
    public var state: State
    public var createdAt: Date?
    /// The run ids of a training job (one per sweep combination).
    public var runs: [String]
    public var shardsByState: [String: Int]
    /// The submitted spec text (YAML), only in the single-job answer.
    public var spec: String?

    public init(id: Int64, name: String, kind: String, state: State, createdAt: Date?, runs: [String], shardsByState: [String: Int], spec: String? = nil) {
        self.id = id
        self.name = name
        self.kind = kind
        self.state = state
        self.createdAt = createdAt
        self.runs = runs
        self.shardsByState = shardsByState
        self.spec = spec
    }
}
