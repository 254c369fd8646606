import Foundation
import Shared
import Synchronization

/// Runs one kind of shard. Runners (command, torch, evaluation) plug in here.
///
/// `run` is cancelled (Swift task cancellation) when the coordinator cancels the shard, its
/// lease moves elsewhere, or the worker drains; an executor then stops promptly (a training
/// runner checkpoints first) and throws `CancellationError`.
public protocol ShardExecutor: Sendable {
    /// The shard kind it runs, e.g. `sleep`; advertised as the capability `shard:KIND`.
    var kind: String { get }
    /// True when a drain stops the shard (SIGTERM to a trainer) instead of waiting for it: a
    /// training shard may run for days and resumes from its last checkpoint on another worker.
    var stopsOnDrain: Bool { get }
    /// True when a planned stop (drain, worker shutdown) is handled by the executor itself
    /// through ``ShardContext/plannedStopReason`` — a trainer is stopped after its next
    /// full-state checkpoint — instead of cancelling the task at once.
    var stopsAtCheckpoint: Bool { get }
    func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport
}

extension ShardExecutor {
    public var stopsOnDrain: Bool { false }
    public var stopsAtCheckpoint: Bool { false }
}

/// What an executor returns when it finishes (successfully or not).
public struct ShardReport: Sendable {
    public var outcome: ShardOutcome
    public var message: String
    /// A JSON object.
    public var output: [UInt8]
    public var logTail: [String]

    public init(outcome: ShardOutcome, message: String = "", output: [UInt8] = [], logTail: [String] = []) {
        self.outcome = outcome
        self.message = message
        self.output = output
        self.logTail = logTail
    }
}

/// What an executor can tell the worker while it runs.
public final class ShardContext: Sendable {
    public let assignment: ShardAssignment
    private let progressSink: @Sendable (Int64, Int64) -> Void
    private let plannedStop = Mutex<String?>(nil)

    /// Asks the executor to stop at its next safe point (``ShardExecutor/stopsAtCheckpoint``).
    /// Only the first reason is kept.
    public func requestPlannedStop(reason: String) {
        plannedStop.withLock { if $0 == nil { $0 = reason } }
    }

    /// Why a planned stop was asked for, or nil.
    public var plannedStopReason: String? { plannedStop.withLock { $0 } }

    public init(assignment: ShardAssignment, progress: @escaping @Sendable (Int64, Int64) -> Void) {
        self.assignment = assignment
        progressSink = progress
    }

    /// Reports the step reached (for heartbeats and the `stalled` rule).
    public func progress(step: Int64, of total: Int64) { progressSink(step, total) }

    /// The payload decoded as a JSON object (empty when it is not one).
    public var parameters: [String: JSONValue] {
        (try? JSONCoding.decode([String: JSONValue].self, from: assignment.payload)) ?? [:]
    }
}

/// A shard that failed with a message for the user.
public struct ShardFailure: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
