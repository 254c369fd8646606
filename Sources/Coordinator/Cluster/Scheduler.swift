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
        var reply: @Sendable (ShardAssignment?) -> Void
    }

    private let store: Store
    private let registry: WorkerRegistry
    private let logger: Logger
    private var waiters: [Waiter] = []
    private var nextWaiter: UInt64 = 0
    /// False once the coordinator shuts down: polls get no work.
    private var leasing = true

    public init(store: Store, registry: WorkerRegistry, logger: Logger) {
        self.store = store
        self.registry = registry
        self.logger = logger
    }

    /// Answers a poll now when a shard can be leased, else holds it for up to `waitMs`.
    public func poll(workerId: String, name: String, session: UInt64, kinds: [String], waitMs: Int, reply: @escaping @Sendable (ShardAssignment?) -> Void) {
        // A newer poll from the same worker supersedes an older one (the worker gave up on it).
        for w in waiters where w.workerId == workerId { w.reply(nil) }
        waiters.removeAll { $0.workerId == workerId }
        guard leasing else {
            reply(nil)
            return
        }
        do {
            if let a = try leaseFor(workerId: workerId, name: name, session: session, kinds: kinds) {
                reply(a)
                return
            }
        } catch {
            logger.error("lease failed: \(error)")
            reply(nil)
            return
        }
        guard waitMs > 0 else {
            reply(nil)
            return
        }
        nextWaiter += 1
        let id = nextWaiter
        waiters.append(Waiter(id: id, workerId: workerId, name: name, session: session, kinds: kinds, reply: reply))
        Task {
            try? await Task.sleep(for: .milliseconds(waitMs))
            self.expireWaiter(id)
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
        var i = 0
        while i < waiters.count {
            let w = waiters[i]
            guard registry.validate(workerId: w.workerId, session: w.session)?.liveness == .live else {
                waiters.remove(at: i)
                w.reply(nil)
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
