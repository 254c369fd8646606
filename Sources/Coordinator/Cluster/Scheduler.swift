import Foundation
import Logging
import Shared

/// Leases shards to polling workers. Polls with no work are held (long-poll) until a shard
/// becomes available for that worker or the poll's wait runs out.
public actor Scheduler {
    /// Its store reads and writes block (SQLite with fsync): they run on a thread of its own,
    /// never on a thread of the cooperative pool.
    private let executor = DedicatedThreadExecutor(name: "scheduler")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    private struct Waiter {
        var id: UInt64
        var workerId: String
        var name: String
        var session: UInt64
        var kinds: [String]
        var rendezvous: RendezvousEndpoint?
        var reply: @Sendable (ShardAssignment?) -> Void
    }

    private let store: Store
    private let registry: WorkerRegistry
    private let logger: Logger
    private var waiters: [Waiter] = []
    private var nextWaiter: UInt64 = 0
    /// False once the coordinator shuts down: polls get no work.
    private var leasing = true
    /// Idle workers the oldest waiting gang holds back (see ``Store/leaseGangs(idle:reserveAfter:now:)``).
    private var reserved: Set<String> = []
    /// How long a data-parallel gang waits, with later work using the idle workers, before it
    /// reserves the idle workers that fit it (seconds).
    private let gangReserveAfter: Double

    public init(store: Store, registry: WorkerRegistry, logger: Logger, gangReserveAfter: Double = 600) {
        self.store = store
        self.registry = registry
        self.logger = logger
        self.gangReserveAfter = gangReserveAfter
    }

    /// Answers a poll now when a shard can be leased, else holds it for up to `waitMs`.
    ///
    /// The order of a lease: waiting data-parallel gangs first, over every held poll at once
    /// (all ranks or none); then the oldest queued single shard this worker can run, unless the
    /// oldest waiting gang reserves it.
    public func poll(workerId: String, name: String, session: UInt64, kinds: [String], waitMs: Int, rendezvous: RendezvousEndpoint? = nil,
                     reply: @escaping @Sendable (ShardAssignment?) -> Void) {
        // A newer poll from the same worker supersedes an older one (the worker gave up on it).
        for w in waiters where w.workerId == workerId { w.reply(nil) }
        waiters.removeAll { $0.workerId == workerId }
        guard leasing else {
            reply(nil)
            return
        }
        nextWaiter += 1
        let id = nextWaiter
        // Held first, so that a gang sees this worker idle with the others.
        waiters.append(Waiter(id: id, workerId: workerId, name: name, session: session, kinds: kinds, rendezvous: rendezvous, reply: reply))
        dispatchGangs()
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { return } // it got a rank of a gang
        if !reserved.contains(workerId) {
            do {
                if let a = try leaseFor(workerId: workerId, name: name, session: session, kinds: kinds) {
                    waiters.remove(at: i)
                    reply(a)
                    return
                }
            } catch {
                logger.error("lease failed: \(error)")
                waiters.remove(at: i)
                reply(nil)
                return
            }
        }
        guard waitMs > 0 else {
            waiters.remove(at: i)
            reply(nil)
            return
        }
        Task {
            try? await Task.sleep(for: .milliseconds(waitMs))
            self.expireWaiter(id)
        }
    }

    /// Starts every waiting gang the held polls can hold now (one transaction per call).
    private func dispatchGangs() {
        let idle = waiters.filter { registry.validate(workerId: $0.workerId, session: $0.session)?.liveness == .live }
            .map { IdleWorker(workerId: $0.workerId, name: $0.name, session: $0.session, kinds: $0.kinds, rendezvous: $0.rendezvous) }
        guard !idle.isEmpty else { return }
        let leases: GangLeases
        do { leases = try store.leaseGangs(idle: idle, reserveAfter: gangReserveAfter) } catch {
            logger.error("gang lease failed: \(error)")
            return
        }
        if leases.reserved != reserved, !leases.reserved.isEmpty {
            logger.info("a data-parallel gang has waited \(Int(gangReserveAfter)) s: \(leases.reserved.count) idle worker(s) are reserved for it")
        }
        reserved = leases.reserved
        for (workerId, a) in leases.assignments {
            guard let i = waiters.firstIndex(where: { $0.workerId == workerId }) else { continue }
            let w = waiters.remove(at: i)
            registry.leaseGranted(workerId: workerId, a.shard)
            logger.info("shard \(a.shard.shardId) (gang of run \(a.runId ?? "?")) leased to \(w.name), attempt \(a.attempt)")
            w.reply(a)
        }
    }

    private func expireWaiter(_ id: UInt64) {
        guard let i = waiters.firstIndex(where: { $0.id == id }) else { return }
        let w = waiters.remove(at: i)
        w.reply(nil)
    }

    /// Stops leasing (the coordinator is shutting down): every held poll is answered "no work",
    /// and so is every later one.
    public func stopLeasing() {
        leasing = false
        for w in waiters { w.reply(nil) }
        waiters.removeAll()
    }

    /// Offers queued work to held polls, oldest poll first.
    public func workAvailable() {
        guard leasing else { return }
        dispatchGangs()
        var i = 0
        while i < waiters.count {
            let w = waiters[i]
            guard registry.validate(workerId: w.workerId, session: w.session)?.liveness == .live else {
                waiters.remove(at: i)
                w.reply(nil)
                continue
            }
            if reserved.contains(w.workerId) {
                i += 1
                continue
            }
            do {
                if let a = try leaseFor(workerId: w.workerId, name: w.name, session: w.session, kinds: w.kinds) {
                    waiters.remove(at: i)
                    w.reply(a)
                    continue
                }
            } catch {
                logger.error("lease failed: \(error)")
            }
            i += 1
        }
    }

    /// Releases every poll held for `workerId` (lost or gone).
    public func dropWaiters(workerId: String) {
        for w in waiters where w.workerId == workerId { w.reply(nil) }
        waiters.removeAll { $0.workerId == workerId }
    }

    private func leaseFor(workerId: String, name: String, session: UInt64, kinds: [String]) throws -> ShardAssignment? {
        guard let a = try store.lease(workerId: workerId, workerName: name, session: session, kinds: kinds) else { return nil }
        registry.leaseGranted(workerId: workerId, a.shard)
        if a.attempt > 1 {
            logger.info("shard \(a.shard.shardId) (\(a.kind)) leased to \(name), attempt \(a.attempt), epoch \(a.shard.leaseEpoch)")
        } else {
            logger.debug("shard \(a.shard.shardId) (\(a.kind)) leased to \(name)")
        }
        return a
    }

    public var heldPolls: Int { waiters.count }
}
