import Foundation
import Logging
import Shared
import Synchronization

/// A worker's life: register, heartbeat, poll for shards, run them, report results; reconnect
/// forever when the coordinator is away; drain on SIGTERM or on the coordinator's command.
public final class WorkerAgent: Sendable {
    public let configuration: WorkerConfiguration
    public let workerId: String
    let logger: Logger
    let probe: any DeviceProbe
    let executors: [String: any ShardExecutor]
    let connection: CoordinatorConnection
    private let state = LockedBox(State())

    struct State {
        var current: ShardAssignment?
        /// The current shard's rank in a data-parallel gang (nil: none): its GPU's system
        /// metrics are the run's `gpu.<rank>.*`, so every GPU of the gang has its own.
        var currentRank: Int?
        var currentTask: Task<ShardReport, any Error>?
        var currentContext: ShardContext?
        var step: Int64 = 0
        var totalSteps: Int64 = 0
        var stepStarted = ContinuousClock.now
        var stepsPerSecond = 0.0
        var draining = false
        var cancelReason: String?
        var heartbeatIntervalMs = 2_000
        /// The coordinator's loss timeout (from the registration reply).
        var lostAfterMs = 10_000
        var lastSystemSample = ContinuousClock.now - .seconds(3600)
        /// Registration in progress at start; a drain before it succeeds stops the worker.
        var startup: Task<RegisterReply, any Error>?
    }

    /// The durable spool of metrics and events (in the state directory).
    public let spool: MetricSpool

    public init(configuration: WorkerConfiguration, probe: any DeviceProbe, spool: MetricSpool, executors: [any ShardExecutor], logger: Logger) throws {
        self.spool = spool
        self.configuration = configuration
        self.logger = logger
        self.probe = probe
        self.executors = Dictionary(executors.map { ($0.kind, $0) }, uniquingKeysWith: { a, _ in a })
        workerId = try WorkerIdentity.load(directory: configuration.resolvedStateDirectory)
        let device = probe.describe()
        let caps = executors.map { "shard:\($0.kind)" }.sorted()
        let name = configuration.displayName
        let host = configuration.hostName
        let stateRef = state
        connection = try CoordinatorConnection(configuration: configuration, workerId: workerId, logger: logger) {
            let active = stateRef.withLock { $0.current?.shard }
            return RegisterRequest(name: name, host: host, device: device, capabilities: caps, version: TTSCluster.version,
                                   pid: Int(getpid()), proof: .none, activeShard: active)
        }
    }

    /// Asks the worker to finish (or checkpoint) its shard, take no more work, and exit.
    public func drain(reason: String) {
        let executors = self.executors
        let (first, stopped) = state.withLock { s -> (Bool, ShardRef?) in
            defer { s.draining = true }
            s.startup?.cancel()
            // A training shard is stopped rather than waited for (it may run for days): the
            // coordinator requeues it and it resumes from its last checkpoint elsewhere.
            var stopped: ShardRef?
            if !s.draining, let current = s.current, let executor = executors[current.kind], executor.stopsOnDrain, s.cancelReason == nil {
                let why = "worker draining (\(reason)): stopped; the run resumes from its last checkpoint on another worker"
                if executor.stopsAtCheckpoint, let context = s.currentContext {
                    // Stopped after the trainer's next full-state checkpoint (bounded by the
                    // job's stop_grace), so the resume elsewhere loses no optimizer state.
                    context.requestPlannedStop(reason: why)
                } else {
                    s.cancelReason = why
                    s.currentTask?.cancel()
                }
                stopped = current.shard
            }
            return (!s.draining, stopped)
        }
        guard first else { return }
        if let stopped {
            logger.notice("draining (\(reason)): stopping shard \(stopped.shardId) at its next full checkpoint (it resumes from there elsewhere), taking no new work")
        } else {
            logger.notice("draining (\(reason)): finishing the current shard, taking no new work")
        }
    }

    var isDraining: Bool { state.withLock { $0.draining } }

    /// Stops the current shard at once (a second signal during a drain): no waiting for a checkpoint.
    public func stopNow(reason: String) {
        drain(reason: reason)
        let stopped = state.withLock { s -> ShardRef? in
            guard let current = s.current, s.cancelReason == nil else { return nil }
            s.cancelReason = "worker stopping now (\(reason)): the run resumes from its last checkpoint on another worker"
            s.currentTask?.cancel()
            return current.shard
        }
        if let stopped { logger.warning("stopping shard \(stopped.shardId) now (\(reason))") }
    }

    /// Runs until drained (returns) or refused by the coordinator (throws ``WorkerFatalError``).
    public func run() async throws {
        let device = probe.describe()
        logger.notice("worker \(configuration.displayName) (\(workerId)) joining \(configuration.coordinator) with \(device.name), \(device.memoryBytes >> 20) MiB")
        await connection.setOnRegistered { [logger, state, spool] reply in
            state.withLock {
                $0.heartbeatIntervalMs = Int(reply.heartbeatIntervalMs)
                $0.lostAfterMs = max(1_000, Int(reply.lostAfterMs))
            }
            do {
                if try !spool.fastForward(past: reply.spoolHighWater) {
                    logger.critical("the spool in \(spool.directory) holds entries the coordinator already has under the same numbers (was the state directory restored from a copy?): they cannot be told from duplicates; move the spool directory aside to start it afresh")
                }
            } catch {
                logger.error("\(error)")
            }
            logger.info("registered: session \(String(reply.session, radix: 16)), heartbeat every \(reply.heartbeatIntervalMs) ms")
            if !reply.activeShardKept, let current = state.withLock({ $0.current }) {
                // Our lease did not survive (the coordinator requeued it): stop running it.
                state.withLock { s in
                    s.cancelReason = "lease of shard \(current.shard.shardId) was not kept at re-registration"
                    s.currentTask?.cancel()
                }
            }
        }
        let startup = Task { try await connection.register() }
        if state.withLock({ s -> Bool in s.startup = startup; return s.draining }) { startup.cancel() }
        do {
            _ = try await startup.value
        } catch is CancellationError {
            logger.notice("stopped before registering")
            await connection.close()
            return
        }
        state.withLock { $0.startup = nil }
        let sender = Task { await SpoolSender(spool: spool, connection: connection, logger: logger).run() }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.heartbeatLoop() }
            group.addTask { try await self.workLoop() }
            // The work loop returns when drained; then the heartbeat loop is stopped.
            try await group.next()
            group.cancelAll()
        }
        // Last flush and delivery attempt; whatever is left stays in the spool for next time.
        sender.cancel()
        await sender.value
        if spool.backlog > 0 { logger.notice("\(spool.backlog) spool entries not yet delivered; they are kept on disk and sent at the next start") }
        await sendFinalHeartbeat()
        await connection.close()
        logger.notice("worker \(configuration.displayName) stopped")
    }

    // MARK: heartbeats

    private func heartbeatLoop() async throws {
        var warned = false
        // Since when heartbeats have failed, and when the connection was last dropped for it.
        var failingSince: ContinuousClock.Instant?
        var redialedAt: ContinuousClock.Instant?
        while !Task.isCancelled {
            let (interval, lostAfter) = state.withLock { ($0.heartbeatIntervalMs, $0.lostAfterMs) }
            let hb = currentHeartbeat()
            do {
                let (reply, _): (HeartbeatReply, UInt64) = try await connection.call(.heartbeat, hb, expect: .heartbeatReply, timeoutMs: max(1_000, interval))
                if warned {
                    logger.notice("heartbeats reach the coordinator again")
                    warned = false
                }
                failingSince = nil
                redialedAt = nil
                apply(reply.commands)
            } catch let e as WorkerFatalError {
                throw e
            } catch is CancellationError {
                return
            } catch {
                if !warned {
                    logger.warning("heartbeat failed (\(error)); the current shard keeps running, its metrics stay in the spool, retrying")
                    warned = true
                }
                // Silent for as long as the coordinator waits before declaring a worker lost:
                // the connection may be a dead one (a partition), so dial a fresh one, and
                // again after each further such period.
                let now = ContinuousClock.now
                let since = failingSince ?? now
                failingSince = since
                if now - (redialedAt ?? since) >= .milliseconds(lostAfter) {
                    let closed = await connection.redial()
                    logger.warning("no heartbeat has reached the coordinator for \((now - since).components.seconds) s: dropped \(closed) connection(s) and dialing again")
                    redialedAt = now
                }
            }
            try? await Task.sleep(for: .milliseconds(interval))
        }
    }

    private func currentHeartbeat() -> HeartbeatRequest {
        let telemetry = probe.sample()
        recordSystemMetrics(telemetry)
        return state.withLock { s in
            let progress = s.current.map {
                ShardProgress(shard: $0.shard, step: s.step, totalSteps: s.totalSteps, stepsPerSecond: s.stepsPerSecond)
            }
            let status: WorkerStatus = s.draining ? .draining : (s.current == nil ? .idle : .busy)
            return HeartbeatRequest(status: status, progress: progress, telemetry: telemetry)
        }
    }

    /// Spools a telemetry sample under the current shard's run (at most every 15 s, W&B's
    /// sampling interval), so system metrics reach W&B through the same exactly-once path.
    private func recordSystemMetrics(_ telemetry: DeviceTelemetry?) {
        guard let telemetry else { return }
        let due = state.withLock { s -> (run: String, rank: Int?)? in
            guard let run = s.current?.runId, ContinuousClock.now - s.lastSystemSample >= .seconds(15) else { return nil }
            s.lastSystemSample = .now
            return (run, s.currentRank)
        }
        guard let (run, rank) = due else { return }
        let step = state.withLock { $0.step }
        let now = Date().timeIntervalSince1970
        spool.append(points: telemetry.wandbStats(gpuIndex: rank ?? configuration.gpuIndex).map {
            MetricPoint(runId: run, step: step, key: MetricPoint.systemPrefix + $0.key, value: $0.value, wallTime: now)
        })
    }

    private func apply(_ commands: [WorkerCommand]) {
        for c in commands {
            switch c {
            case .drain:
                drain(reason: "the coordinator asked")
            case .cancelShard(let ref, let reason):
                state.withLock { s in
                    guard s.current?.shard == ref, s.cancelReason == nil else { return }
                    s.cancelReason = reason
                    s.currentTask?.cancel()
                }
                logger.warning("cancelling shard \(ref.shardId): \(reason)")
            }
        }
    }

    private func sendFinalHeartbeat() async {
        let hb = HeartbeatRequest(status: .stopping, progress: nil, telemetry: nil)
        _ = try? await connection.call(.heartbeat, hb, expect: .heartbeatReply, timeoutMs: 2_000) as (HeartbeatReply, UInt64)
    }

    // MARK: work

    private func workLoop() async throws {
        var backoff = Backoff(baseMs: 200, capMs: 5_000)
        let rendezvousAddress = configuration.rendezvousAddress
        while !Task.isCancelled && !isDraining {
            let assignment: ShardAssignment?
            do {
                // A port free now, for a gang's rendezvous should this worker become its rank 0.
                let rendezvous = RendezvousPort.free(on: rendezvousAddress).map { RendezvousEndpoint(address: rendezvousAddress, port: $0) }
                let (reply, _): (PollReply, UInt64) = try await connection.call(
                    .poll, PollRequest(waitMs: UInt32(configuration.pollWaitMs), rendezvous: rendezvous), expect: .pollReply,
                    timeoutMs: configuration.pollWaitMs + configuration.requestTimeoutMs)
                assignment = reply.assignment
                backoff.reset()
            } catch let e as WorkerFatalError {
                throw e
            } catch is CancellationError {
                return
            } catch {
                try? await Task.sleep(for: .milliseconds(backoff.nextDelayMs()))
                continue
            }
            guard let assignment else { continue }
            if isDraining {
                // Leased just as we started draining: hand it back.
                try await report(assignment, ShardReport(outcome: .cancelled, message: "worker draining before start"))
                break
            }
            try await execute(assignment)
        }
    }

    private func execute(_ a: ShardAssignment) async throws {
        guard let executor = executors[a.kind] else {
            try await report(a, ShardReport(outcome: .failed, message: "this worker cannot run \(a.kind) shards"))
            return
        }
        let rank = a.kind == "train" ? (try? TrainPayload.parse(a.payload, runId: a.runId))?.placement?.rank : nil
        state.withLock { s in
            s.current = a
            s.currentRank = rank
            s.step = 0
            s.totalSteps = 0
            s.stepsPerSecond = 0
            s.stepStarted = .now
            s.cancelReason = nil
        }
        defer { state.withLock { $0.current = nil; $0.currentRank = nil; $0.currentTask = nil; $0.currentContext = nil } }
        let started = try await connection.deliver(.event, EventRequest(kind: .shardStarted, shard: a.shard, message: "attempt \(a.attempt) on \(configuration.displayName)", wallTime: Date().timeIntervalSince1970), expect: .eventAck)
        guard started.accepted else {
            logger.warning("shard \(a.shard.shardId) is no longer ours (\(started.note)); skipping it")
            return
        }
        logger.info("running shard \(a.shard.shardId) (\(a.kind), attempt \(a.attempt))")
        let context = ShardContext(assignment: a) { [state] step, total in
            state.withLock { s in
                let elapsed = ContinuousClock.now - s.stepStarted
                let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                if secs > 0 { s.stepsPerSecond = Double(step) / secs }
                s.step = step
                s.totalSteps = total
            }
        }
        let task = Task { try await executor.run(a, context: context) }
        let cancelledEarly = state.withLock { s -> Bool in
            s.currentTask = task
            s.currentContext = context
            if s.draining, s.cancelReason == nil, executor.stopsOnDrain {
                // The drain came while this shard was starting.
                if executor.stopsAtCheckpoint {
                    context.requestPlannedStop(reason: "worker draining: stopped; the run resumes from its last checkpoint on another worker")
                } else {
                    s.cancelReason = "worker draining: stopped; the run resumes from its last checkpoint on another worker"
                }
            }
            return s.cancelReason != nil
        }
        if cancelledEarly { task.cancel() }
        let result: ShardReport
        do {
            result = try await task.value
        } catch is CancellationError {
            let reason = state.withLock { $0.cancelReason } ?? "cancelled"
            result = ShardReport(outcome: .cancelled, message: reason)
        } catch {
            result = ShardReport(outcome: .failed, message: "\(error)")
        }
        // Results follow metrics: everything the shard logged is acknowledged before the result
        // (which may finish the run) is reported.
        let logged = spool.lastAppendedSequence
        while spool.ackedSequence < logged {
            try await Task.sleep(for: .milliseconds(20))
        }
        try await report(a, result)
    }

    private func report(_ a: ShardAssignment, _ r: ShardReport) async throws {
        let ack = try await connection.deliver(.result, ResultRequest(shard: a.shard, outcome: r.outcome, message: r.message, output: r.output, logTail: r.logTail), expect: .resultAck)
        if ack.accepted {
            logger.info("shard \(a.shard.shardId) \(r.outcome.name)\(r.message.isEmpty ? "" : ": \(r.message)")")
        } else {
            logger.warning("the coordinator refused the result of shard \(a.shard.shardId): \(ack.note)")
        }
    }
}

/// A value behind a mutex, in a class so that closures can share it.
final class LockedBox<Value: Sendable>: Sendable {
    private let mutex: Mutex<Value>
    init(_ value: Value) { mutex = Mutex(value) }
    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R { try mutex.withLock { try body(&$0) } }
}
