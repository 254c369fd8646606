import Foundation
import Logging
import Shared
import Synchronization

/// Decodes, authenticates and dispatches every request the coordinator receives.
///
/// Heartbeats are answered on the spot from memory (the hot path); requests that touch the
/// database are handed to tasks and answered when their transaction has committed. Anything
/// malformed gets a typed error reply and a (rate-limited) log line; it never stops the server.
public final class RequestRouter: Sendable {
    let store: Store
    let registry: WorkerRegistry
    let scheduler: Scheduler
    let admin: AdminService
    let configuration: CoordinatorConfiguration
    let logger: Logger
    /// Told about everything stored for the first time.
    public let observers = IngestObservers()
    private let replayGuard: ReplayGuard
    private let complaints = RateLimitedLog(limit: 20, perSeconds: 10)
    /// Failed writes (a full database volume fails every request until space returns).
    private let storeFailures = RateLimitedLog(limit: 5, perSeconds: 30, level: .error)

    public init(store: Store, registry: WorkerRegistry, scheduler: Scheduler, configuration: CoordinatorConfiguration, logger: Logger) {
        self.store = store
        self.registry = registry
        self.scheduler = scheduler
        self.configuration = configuration
        self.logger = logger
        replayGuard = ReplayGuard(windowSeconds: configuration.proofWindowSeconds)
        admin = AdminService(store: store, registry: registry, scheduler: scheduler, configuration: configuration, startedAt: Date())
    }

    /// Entry point from the REP context pool (runs on an nng thread: must not block).
    public func handle(_ request: NNGIncomingRequest) {
        let env: Envelope
        do {
            env = try Envelope.decode(request.bytes)
        } catch {
            let code: ProtocolError.Code
            switch error {
            case .unsupportedVersion: code = .unsupportedVersion
            case .unknownType: code = .unknownType
            case .notAnEnvelope, .malformed: code = .malformed
            }
            complain("refused a \(request.bytes.count)-byte message on connection \(request.pipeID): \(error)")
            request.reply(Envelope(.error, ProtocolError(code, error.description)).encoded())
            return
        }
        switch env.type {
        case .heartbeat: handleHeartbeat(env, request)
        case .register: Task { await self.handleRegister(env, request) }
        case .poll: handlePoll(env, request)
        case .metrics, .event, .result: Task { await self.handleDurable(env, request) }
        case .admin: Task { await self.handleAdmin(env, request) }
        default:
            complain("refused a \(env.type) message from \(env.workerId.isEmpty ? "a client" : env.workerId): it is a reply type, not a request")
            reply(request, to: env, error: ProtocolError(.unknownType, "\(env.type) is not a request"))
        }
    }

    private func reply<M: WireCodable>(_ request: NNGIncomingRequest, to env: Envelope, _ type: MessageType, _ body: M) {
        request.reply(Envelope(type, body, workerId: env.workerId, session: env.session, sequence: env.sequence).encoded())
    }

    private func reply(_ request: NNGIncomingRequest, to env: Envelope, error: ProtocolError) {
        reply(request, to: env, .error, error)
    }

    private func complain(_ message: String) {
        complaints.log(logger, message)
    }

    private func decode<M: WireCodable>(_: M.Type, _ env: Envelope, _ request: NNGIncomingRequest) -> M? {
        do {
            return try env.decodeBody(M.self)
        } catch {
            complain("refused a malformed \(env.type) from \(env.workerId): \(error)")
            reply(request, to: env, error: ProtocolError(.malformed, "\(env.type): \(error)"))
            return nil
        }
    }

    // MARK: heartbeat (hot path: memory only)

    private func handleHeartbeat(_ env: Envelope, _ request: NNGIncomingRequest) {
        guard let hb = decode(HeartbeatRequest.self, env, request) else { return }
        switch registry.heartbeat(workerId: env.workerId, session: env.session, hb) {
        case .failure(let e):
            reply(request, to: env, error: e)
        case .success(let effect):
            reply(request, to: env, .heartbeatReply, effect.reply)
            if effect.revived || effect.stopping {
                let id = env.workerId
                Task {
                    do {
                        if effect.stopping {
                            let requeued = try self.store.markWorkerGone(workerId: id)
                            self.logger.info("worker \(self.registry.name(of: id)) drained and left the cluster")
                            for s in requeued { self.registry.leaseEnded(shardId: s) }
                            GangStops.propagate(store: self.store, registry: self.registry, logger: self.logger)
                            await self.scheduler.dropWaiters(workerId: id)
                            if !requeued.isEmpty { await self.scheduler.workAvailable() }
                        } else {
                            try self.store.markWorkerLive(workerId: id)
                            self.logger.notice("worker \(self.registry.name(of: id)) is back after being declared lost")
                        }
                    } catch {
                        self.logger.error("could not record worker state change for \(id): \(error)")
                    }
                }
            }
        }
    }

    // MARK: register

    private func handleRegister(_ env: Envelope, _ request: NNGIncomingRequest) async {
        guard let reg = decode(RegisterRequest.self, env, request) else { return }
        guard !env.workerId.isEmpty else {
            reply(request, to: env, error: ProtocolError(.invalidRequest, "register needs a worker id in the envelope"))
            return
        }
        if let token = configuration.token {
            guard token.verify(reg.proof, purpose: "register|\(env.workerId)|\(reg.host)") else {
                logger.warning("refused worker \(reg.name) from \(reg.host): wrong cluster token")
                reply(request, to: env, error: ProtocolError(.unauthorized, "the cluster token does not match: give the worker the coordinator's token with --token-file"))
                return
            }
            if let why = replayGuard.admit(reg.proof) {
                logger.warning("refused worker \(reg.name) from \(reg.host): \(why)")
                reply(request, to: env, error: ProtocolError(.unauthorized, why))
                return
            }
        }
        do {
            let outcome = try store.register(workerId: env.workerId, request: reg)
            registry.upsert(workerId: env.workerId, name: reg.name, session: outcome.session, capabilities: reg.capabilities)
            if outcome.activeShardKept, let ref = reg.activeShard { registry.leaseGranted(workerId: env.workerId, ref) }
            for s in outcome.requeued { registry.leaseEnded(shardId: s) }
            if !outcome.requeued.isEmpty { GangStops.propagate(store: store, registry: registry, logger: logger) }
            logger.info("worker \(reg.name) registered from \(reg.host): \(reg.device.name), \(reg.device.memoryBytes >> 20) MiB, capabilities \(reg.capabilities.joined(separator: ","))")
            if !outcome.requeued.isEmpty {
                logger.warning("worker \(reg.name) restarted: requeued shards \(outcome.requeued) it held before")
                await scheduler.workAvailable()
            }
            reply(request, to: env, .registered, RegisterReply(
                session: outcome.session, heartbeatIntervalMs: UInt32(configuration.heartbeatIntervalMs),
                lostAfterMs: UInt32(configuration.lostAfterMs), coordinatorVersion: TTSCluster.version,
                activeShardKept: outcome.activeShardKept, spoolHighWater: outcome.spoolHighWater))
        } catch {
            let why = error
            storeFailures.log(logger, "register of \(reg.name) failed: \(why)")
            reply(request, to: env, error: ProtocolError(.unavailable, "the coordinator could not store the registration (\(why)); retry", retryable: true))
        }
    }

    // MARK: poll

    private func handlePoll(_ env: Envelope, _ request: NNGIncomingRequest) {
        guard let poll = decode(PollRequest.self, env, request) else { return }
        guard let w = registry.validate(workerId: env.workerId, session: env.session) else {
            reply(request, to: env, error: ProtocolError(.unknownSession, "unknown session; register again"))
            return
        }
        guard w.liveness == .live else {
            reply(request, to: env, .pollReply, PollReply(assignment: nil))
            return
        }
        let wait = min(Int(poll.waitMs), configuration.maxPollWaitMs)
        Task {
            await scheduler.poll(workerId: env.workerId, name: w.name, session: env.session, kinds: w.kinds, waitMs: wait, rendezvous: poll.rendezvous) { a in
                self.reply(request, to: env, .pollReply, PollReply(assignment: a))
            }
        }
    }

    // MARK: metrics, events, results (durable, deduplicated)

    private func handleDurable(_ env: Envelope, _ request: NNGIncomingRequest) async {
        let durable: DurableRequest
        switch env.type {
        case .metrics:
            guard let m = decode(MetricsRequest.self, env, request) else { return }
            await handleMetrics(m, env, request)
            return
        case .event:
            guard let e = decode(EventRequest.self, env, request) else { return }
            durable = .event(e)
        default:
            guard let r = decode(ResultRequest.self, env, request) else { return }
            durable = .result(r)
        }
        do {
            let (workerId, session, sequence) = (env.workerId, env.session, env.sequence)
            let outcome = try await store.offloaded { try $0.ingest(workerId: workerId, session: session, sequence: sequence, durable) }
            if case .result(let r) = durable, let d = outcome.disposition, !outcome.duplicate {
                observers.notify(.result(workerId: env.workerId, r, d))
                if d.accepted {
                    registry.leaseEnded(shardId: r.shard.shardId)
                    GangStops.propagate(store: store, registry: registry, logger: logger)
                    logger.info("shard \(r.shard.shardId) \(r.outcome.name) on \(registry.name(of: env.workerId))\(r.message.isEmpty ? "" : ": \(r.message)")\(d.requeued ? " (requeued)" : "")")
                    if d.requeued { await scheduler.workAvailable() }
                } else {
                    logger.warning("refused result of shard \(r.shard.shardId) from \(registry.name(of: env.workerId)): \(d.note)")
                }
            }
            let type: MessageType = env.type == .event ? .eventAck : .resultAck
            reply(request, to: env, type, outcome.ack)
        } catch let e as ProtocolError {
            reply(request, to: env, error: e)
        } catch {
            let why = error
            storeFailures.log(logger, "could not store \(env.type) from \(registry.name(of: env.workerId)): \(why)")
            reply(request, to: env, error: ProtocolError(.unavailable, "the coordinator could not store this \(env.type) (\(why)); it was not acknowledged, retry", retryable: true))
        }
    }

    /// Spool entries: deduplicated by the worker's spool sequence (its identity survives restarts),
    /// acknowledged only after the transaction that stores them has committed.
    private func handleMetrics(_ m: MetricsRequest, _ env: Envelope, _ request: NNGIncomingRequest) async {
        guard registry.validate(workerId: env.workerId, session: env.session) != nil else {
            reply(request, to: env, error: ProtocolError(.unknownSession, "unknown session; register again"))
            return
        }
        do {
            let (workerId, entries) = (env.workerId, m.entries)
            let outcome = try await store.offloaded { try $0.ingestSpool(workerId: workerId, entries: entries) }
            if outcome.storedEntries > 0 {
                observers.notify(.metrics(workerId: env.workerId, entries: outcome.stored))
            }
            if outcome.duplicatePoints > 0 {
                logger.notice("\(registry.name(of: env.workerId)) sent \(outcome.duplicatePoints) point(s) for steps already stored (another attempt of the run logged them first, e.g. after a partition): kept the first, dropped these")
            }
            reply(request, to: env, .metricsAck, Ack(highestSequence: outcome.highWater))
        } catch {
            let why = error
            storeFailures.log(logger, "could not store \(m.pointCount) points from \(registry.name(of: env.workerId)): \(why)")
            reply(request, to: env, error: ProtocolError(.unavailable, "the coordinator could not store these metrics: \(why); they were not acknowledged, the worker keeps them and retries", retryable: true))
        }
    }

    // MARK: admin

    private func handleAdmin(_ env: Envelope, _ request: NNGIncomingRequest) async {
        guard let req = decode(AdminRequest.self, env, request) else { return }
        if let token = configuration.token, !token.verify(req.proof, purpose: "admin|\(req.command)") {
            logger.warning("refused admin command \(req.command): wrong cluster token")
            reply(request, to: env, error: ProtocolError(.unauthorized, "the cluster token does not match: pass the coordinator's token with --token-file"))
            return
        }
        do {
            let json = try await admin.handle(req)
            reply(request, to: env, .adminReply, AdminReply(json: json))
        } catch {
            reply(request, to: env, error: error)
        }
    }
}
