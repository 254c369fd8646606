import Shared
import Synchronization

/// Something the coordinator just stored, as seen by the components that react to new data
/// (the W&B outbox wakes up, the alert rules evaluate).
public enum IngestActivity: Sendable {
    /// Spool entries stored for the first time (duplicates are never reported).
    case metrics(workerId: String, entries: [SpoolEntry])
    /// A shard result that was applied.
    case result(workerId: String, ResultRequest, ResultDisposition)
}

/// The observers of ingest. They run on the request's task after the transaction committed and
/// before the reply, so each must be quick and must not block (hand work to a task or an actor).
public final class IngestObservers: Sendable {
    private let observers = Mutex<[@Sendable (IngestActivity) -> Void]>([])

    public init() {}

    /// Adds an observer for the rest of the coordinator's life.
    public func add(_ observer: @escaping @Sendable (IngestActivity) -> Void) {
        observers.withLock { $0.append(observer) }
    }

    func notify(_ activity: IngestActivity) {
        for o in observers.withLock({ $0 }) { o(activity) }
    }
}
