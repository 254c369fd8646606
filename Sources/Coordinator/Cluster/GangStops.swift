import Logging

/// Tells the holders of a gang's other ranks to stop when one rank's attempt ended
/// (``Store/gangStops()``): a cancel rides on each holder's next heartbeat reply, the worker
/// stops the trainer's process tree and reports, and the gang is requeued whole.
enum GangStops {
    static let reason = "another rank of its data-parallel gang ended; the gang restarts together from its last full checkpoint"

    /// Asks for every pending stop (idempotent: a stop already asked for is asked again).
    static func propagate(store: Store, registry: WorkerRegistry, logger: Logger) {
        do {
            for s in try store.gangStops() { registry.requestCancel(s.shard, reason: reason) }
        } catch {
            logger.error("could not read the gang ranks to stop (they stop when their trainers lose their peers): \(error)")
        }
    }
}
