import Foundation
import Shared
import Synchronization

/// The live picture of the workers, kept in memory so that a heartbeat costs a dictionary
/// update and no I/O. Changes are persisted in batches by the coordinator's flusher.
public final class WorkerRegistry: Sendable {
    public enum Liveness: String, Sendable { case live, lost, gone }

    struct Entry {
        var name: String
        var session: UInt64
        var kinds: [String]
        var lastSeen: ContinuousClock.Instant
        var lastSeenWall: Date
        var status: WorkerStatus
        var progress: ShardProgress?
        var telemetry: DeviceTelemetry?
        var liveness: Liveness
        var dirty: Bool
        var leases: Set<ShardRef>
        var drainRequested: Bool
    }

    /// What a heartbeat did.
    public struct HeartbeatEffect: Sendable {
        public var reply: HeartbeatReply
        /// The worker had been declared lost and is back.
        public var revived: Bool
        /// The worker said it is stopping (drained).
        public var stopping: Bool
    }

    private let entries = Mutex<[String: Entry]>([:])
    /// Leases to stop (a user's cancel, a gang's stop), with the reason, until their holder
    /// reports them ended. Keyed by lease (shard and epoch): a request that arrives after its
    /// lease ended can never stop the shard's next lease.
    private let cancels = Mutex<[ShardRef: String]>([:])

    public init() {}

    /// Adds or replaces a worker after `register` (or at coordinator start from the database).
    public func upsert(workerId: String, name: String, session: UInt64, capabilities: [String], liveness: Liveness = .live, status: WorkerStatus = .idle) {
        let kinds = capabilities.compactMap { $0.hasPrefix("shard:") ? String($0.dropFirst(6)) : nil }
        entries.withLock { e in
            let leases = e[workerId]?.leases ?? []
            e[workerId] = Entry(
                name: name, session: session, kinds: kinds, lastSeen: .now, lastSeenWall: Date(), status: status,
                progress: nil, telemetry: nil, liveness: liveness, dirty: false, leases: leases, drainRequested: false)
        }
    }

    /// The worker's name and shard kinds if `session` is its current session.
    public func validate(workerId: String, session: UInt64) -> (name: String, kinds: [String], liveness: Liveness)? {
        entries.withLock { e in
            guard let w = e[workerId], w.session == session else { return nil }
            return (w.name, w.kinds, w.liveness)
        }
    }

    /// Applies a heartbeat: updates memory and computes the commands for the reply.
    public func heartbeat(workerId: String, session: UInt64, _ hb: HeartbeatRequest) -> Result<HeartbeatEffect, ProtocolError> {
        entries.withLock { e in
            guard var w = e[workerId], w.session == session else {
                return .failure(ProtocolError(.unknownSession, "unknown session for worker \(workerId); register again"))
            }
            let revived = w.liveness == .lost
            w.lastSeen = .now
            w.lastSeenWall = Date()
            w.status = hb.status
            w.progress = hb.progress
            w.telemetry = hb.telemetry
            if w.liveness != .gone || hb.status != .stopping { w.liveness = hb.status == .stopping ? .gone : .live }
            w.dirty = true
            var commands: [WorkerCommand] = []
            if let running = hb.progress?.shard, !w.leases.contains(running) {
                commands.append(.cancelShard(running, reason: "this worker no longer holds the lease of shard \(running.shardId) (it was requeued)"))
            }
            if let running = hb.progress?.shard, let reason = cancels.withLock({ $0[running] }) {
                commands.append(.cancelShard(running, reason: reason))
            }
            if w.drainRequested { commands.append(.drain) }
            e[workerId] = w
            return .success(HeartbeatEffect(reply: HeartbeatReply(commands: commands), revived: revived, stopping: hb.status == .stopping))
        }
    }

    public func leaseGranted(workerId: String, _ ref: ShardRef) {
        entries.withLock { e in
            guard var w = e[workerId] else { return }
            w.leases = w.leases.filter { $0.shardId != ref.shardId }
            w.leases.insert(ref)
            e[workerId] = w
        }
    }

    /// Asks the holder of `shardId` to stop it (in its next heartbeat reply).
    public func requestCancel(_ lease: ShardRef, reason: String) {
        cancels.withLock { $0[lease] = reason }
    }

    public func leaseEnded(shardId: Int64) {
        cancels.withLock { c in c = c.filter { $0.key.shardId != shardId } }
        entries.withLock { e in
            for (key, w) in e where w.leases.contains(where: { $0.shardId == shardId }) {
                e[key]?.leases = w.leases.filter { $0.shardId != shardId }
            }
        }
    }

    public func requestDrain(workerId: String) -> Bool {
        entries.withLock { e in
            guard e[workerId] != nil else { return false }
            e[workerId]?.drainRequested = true
            e[workerId]?.dirty = true
            return true
        }
    }

    /// Live workers silent for longer than `lostAfter` are marked lost and returned with how
    /// long they had been silent.
    public func expire(lostAfter: Duration, now: ContinuousClock.Instant = .now) -> [(workerId: String, name: String, silentFor: Duration)] {
        entries.withLock { e in
            var out: [(String, String, Duration)] = []
            for (id, w) in e where w.liveness == .live && now - w.lastSeen > lostAfter {
                e[id]?.liveness = .lost
                e[id]?.dirty = true
                e[id]?.leases = []
                out.append((id, w.name, now - w.lastSeen))
            }
            return out
        }
    }

    /// Heartbeat state changed since the last call, for one batched transaction.
    public func takeDirty() -> [HeartbeatSnapshot] {
        entries.withLock { e in
            var out: [HeartbeatSnapshot] = []
            for (id, w) in e where w.dirty {
                // A requested drain is the worker's status from the request on, before its
                // heartbeats say so (a gang's failure is judged by it: Store.plannedStopPeer).
                let status: WorkerStatus = w.drainRequested && w.status != .stopping ? .draining : w.status
                out.append(HeartbeatSnapshot(workerId: id, lastSeen: w.lastSeenWall, status: status, progress: w.progress, telemetry: w.telemetry, state: w.liveness.rawValue))
                e[id]?.dirty = false
            }
            return out
        }
    }

    public func markGone(workerId: String) {
        entries.withLock { e in
            e[workerId]?.liveness = .gone
            e[workerId]?.leases = []
        }
    }

    public var count: Int { entries.withLock { $0.count } }

    /// Live workers with the progress of the shard they run (for the `stalled` rule and digests).
    public func liveProgress() -> [(workerId: String, name: String, progress: ShardProgress, telemetry: DeviceTelemetry?)] {
        entries.withLock { e in
            e.compactMap { id, w in
                guard w.liveness == .live, let p = w.progress, w.leases.contains(p.shard) else { return nil }
                return (id, w.name, p, w.telemetry)
            }
        }
    }

    /// The worker's display name (its id when unknown), for log lines.
    public func name(of workerId: String) -> String { entries.withLock { $0[workerId]?.name } ?? workerId }
}
