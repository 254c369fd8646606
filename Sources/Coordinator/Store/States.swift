import GRDB

// The states the store keeps, as enums: Swift code compares and writes these, never spelled-out
// strings. Their raw values are what the database and the admin answers hold.

/// A shard: queued → leased → running → succeeded | failed | cancelled (or back to queued).
public enum ShardState: String, Sendable, CaseIterable, DatabaseValueConvertible {
    case queued, leased, running, succeeded, failed, cancelled

    /// Held by a worker.
    public var isActive: Bool { self == .leased || self == .running }
    /// Will not run again.
    public var isTerminal: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// One attempt of a shard.
public enum AttemptState: String, Sendable, CaseIterable, DatabaseValueConvertible {
    case leased, running, succeeded, failed, cancelled, requeued, lost
    /// A training attempt that ran out of CUDA memory.
    case outOfMemory = "oom"
}

/// A run (a training run or a synthetic one): queued until a shard starts, then running, then
/// finished one way.
public enum RunState: String, Sendable, CaseIterable, DatabaseValueConvertible {
    case queued, running, succeeded, failed, cancelled

    public var isFinished: Bool { self == .succeeded || self == .failed || self == .cancelled }
}

/// A worker as the coordinator last knew it.
public enum WorkerState: String, Sendable, CaseIterable, DatabaseValueConvertible {
    /// Heartbeating.
    case live
    /// Silent past the loss timeout (it may come back).
    case lost
    /// Left the cluster (drained, or replaced by a restart of the same identity).
    case gone
}

/// An evaluation.
public enum EvalState: String, Sendable, CaseIterable, DatabaseValueConvertible {
    case running, succeeded, failed
}
