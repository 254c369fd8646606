// The states the admin answers carry (workers, shards and their attempts, runs, jobs,
// evaluations, alerts), as types rather than strings. Each is an open set of names: the known
// ones are static constants to compare with, and a name this build does not know (from a newer
// coordinator) decodes and prints as it came. On the wire each is its name, a JSON string, exactly
// as before; `description` is the name too, so interpolations print what they printed.

/// A state name in an admin answer: a known constant or an unknown name kept as it came.
public protocol AdminStateName: RawRepresentable, Codable, Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral
where RawValue == String, StringLiteralType == String {
    init(rawValue: String)
}

extension AdminStateName {
    public init(stringLiteral value: String) { self.init(rawValue: value) }
    public var description: String { rawValue }
}

extension WorkerSummary {
    /// A worker's liveness as the coordinator knows it.
    public struct State: AdminStateName {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        /// Heartbeating.
        public static let live: State = "live"
        /// Silent past the loss timeout (it may come back).
        public static let lost: State = "lost"
        /// Left the cluster (drained and exited, or replaced by a restart of the same identity).
        public static let gone: State = "gone"
        /// Every state this build knows, in the order the metrics list them.
        public static let known: [State] = [.live, .lost, .gone]
    }

    /// What the worker last said it is doing.
    public struct Status: AdminStateName {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let idle: Status = "idle"
        public static let busy: Status = "busy"
        public static let draining: Status = "draining"
        public static let stopping: Status = "stopping"
    }
}

extension ShardSummary {
    /// A shard: queued → leased → running → succeeded | failed | cancelled (or back to queued).
    public struct State: AdminStateName {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let queued: State = "queued"
        public static let leased: State = "leased"
        public static let running: State = "running"
        public static let succeeded: State = "succeeded"
        public static let failed: State = "failed"
        public static let cancelled: State = "cancelled"
        /// Every state this build knows, in lifecycle order.
        public static let known: [State] = [.queued, .leased, .running, .succeeded, .failed, .cancelled]
    }
}

extension ShardAttemptSummary {
    /// One attempt of a shard.
    public struct State: AdminStateName {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let leased: State = "leased"
        public static let running: State = "running"
        public static let succeeded: State = "succeeded"
        public static let failed: State = "failed"
        public static let cancelled: State = "cancelled"
        public static let requeued: State = "requeued"
        public static let lost: State = "lost"
        /// A training attempt that ran out of CUDA memory.
        public static let outOfMemory: State = "oom"
    }
}

extension RunSummary {
    /// A run: queued until a shard starts, then running, then finished one way.
    public struct State: AdminStateName {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let queued: State = "queued"
        public static let running: State = "running"
        public static let succeeded: State = "succeeded"
        public static let failed: State = "failed"
        public static let cancelled: State = "cancelled"

        /// Neither queued nor running (an unknown state counts as finished: it is not one this
        /// build would wait for).
        public var isFinished: Bool { self != .queued && self != .running }
    }
}

extension JobSummary {
    /// A job: active while it has work, done when an evaluation job completed.
    public struct State: AdminStateName {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let active: State = "active"
        public static let done: State = "done"
    }
}

extension EvalSummary {
    /// An evaluation.
    public struct State: AdminStateName {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let running: State = "running"
        public static let succeeded: State = "succeeded"
        public static let failed: State = "failed"
    }
}

extension AlertSummary {
    /// An alert.
    public struct State: AdminStateName {
        public var rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let firing: State = "firing"
        public static let resolved: State = "resolved"
        /// A one-shot message (such as `run_completed`).
        public static let notice: State = "notice"
        /// Every state this build knows, in the order the metrics list them.
        public static let known: [State] = [.firing, .resolved, .notice]
    }
}
