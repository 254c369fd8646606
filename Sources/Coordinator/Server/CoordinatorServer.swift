import CurlHTTP
import Foundation
import Logging
import ServiceLifecycle
import Shared
import Slack
import Synchronization
import WandB

/// A running coordinator: the NNG listener with its REP context pool, the liveness monitor and
/// the heartbeat flusher, all over one ``Store``.
public final class CoordinatorServer: Sendable {
    public let configuration: CoordinatorConfiguration
    public let store: Store
    public let registry: WorkerRegistry
    public let scheduler: Scheduler
    public let wandb: WandbOutbox
    public let alerts: AlertCenter
    /// Folds stored points into the per-series summaries that curves are cut from.
    public let summaries: SeriesSummaryConsumer
    /// Writes completed evaluations' reports.
    public let evalReports: EvalReportWriter
    let notifier: AlertNotifier?
    let router: RequestRouter
    let logger: Logger
    private let listening = Atomic<Bool>(false)
    /// Failed background writes (a full database volume fails every one until space returns).
    private let storeFailures = RateLimitedLog(limit: 5, perSeconds: 30, level: .error)

    /// The admin commands (the NNG admin protocol and the REST API answer with the same code).
    public var admin: AdminService { router.admin }
    /// Called after each ingest commit (metrics counters, the W&B outbox, the alert rules).
    public var ingestObservers: IngestObservers { router.observers }
    /// True while the NNG listener accepts workers (for `/readyz`).
    public var isListening: Bool { listening.load(ordering: .acquiring) }

    /// Validates the configuration and opens the database (nothing listens yet).
    public init(configuration: CoordinatorConfiguration, logger: Logger) throws {
        try configuration.validate()
        self.configuration = configuration
        self.logger = logger
        store = try Store(path: configuration.databasePath)
        registry = WorkerRegistry()
        scheduler = Scheduler(store: store, registry: registry, logger: logger, gangReserveAfter: configuration.gangReserveAfterSeconds)
        router = RequestRouter(store: store, registry: registry, scheduler: scheduler, configuration: configuration, logger: logger)
        var api: WandbAPI?
        if configuration.wandbMode == .online, let settings = configuration.wandbSettings {
            api = try WandbAPI(settings: settings, client: HTTPClient(), logger: logger)
        }
        wandb = WandbOutbox(store: store, mode: configuration.wandbMode, root: configuration.wandbDirectory, logger: logger, api: api,
                            streamIntervalMs: configuration.wandbStreamIntervalMs,
                            unauthorizedPause: .milliseconds(configuration.wandbUnauthorizedPauseMs))
        router.observers.add { [wandb] _ in wandb.wake() }
        summaries = SeriesSummaryConsumer(store: store, logger: logger)
        router.observers.add { [summaries] _ in summaries.wake() }
        evalReports = EvalReportWriter(store: store, logger: logger)
        router.observers.add { [evalReports] _ in evalReports.wake() }
        alerts = AlertCenter(store: store, registry: registry, logger: logger, configuration: configuration.alertRules,
                             groupWait: configuration.alertGroupWaitSeconds, repeatInterval: configuration.alertRepeatIntervalSeconds,
                             queueNotifications: configuration.slackWebhook != nil)
        router.observers.add { [alerts] _ in alerts.wake() }
        if let url = configuration.slackWebhook {
            let dashboard = configuration.dashboardURL
            // The W&B app lives at wandb.ai for the public API; a self-hosted server serves both.
            let wandbBase = configuration.wandbAppURL
            notifier = AlertNotifier(store: store, webhook: SlackWebhook(url: url, client: HTTPClient(configuration: .init(threads: 1))), logger: logger,
                                     wandbLink: { [store] run in
                                         guard let base = wandbBase, let s = try? store.wandbState(runId: run), let e = s.entity, let p = s.project else { return nil }
                                         return "\(base)/\(e)/\(p)/runs/\(run)"
                                     },
                                     dashboardLink: { run in dashboard.map { "\($0)/runs/\(run)" } })
        } else {
            notifier = nil
        }
        // Rebuild the live picture: every known worker gets a full liveness period to re-attach.
        for w in try store.loadWorkers() where w.state != .gone {
            registry.upsert(workerId: w.id, name: w.name, session: w.session, capabilities: w.capabilities,
                            liveness: w.state == .lost ? .lost : .live, status: w.status)
        }
        for lease in try store.activeLeases() { registry.leaseGranted(workerId: lease.workerId, lease.shard) }
        for lease in try store.cancelRequestedShards() { registry.requestCancel(lease, reason: "cancelled by the user") }
        GangStops.propagate(store: store, registry: registry, logger: logger)
    }

    /// Listens on the NNG address and serves until graceful shutdown (or cancellation), then
    /// closes the socket and flushes heartbeat state. The ``services(http:)``' listener.
    func serveNNG() async throws {
        let socket = try NNGSocket(.reply)
        let pipes = PipeTracker(logger: logger)
        try socket.onPipeEvent { pipes.record($0) }
        let server = NNGReplyServer(socket: socket, initialContexts: 64, minIdle: 16) { [router] in router.handle($0) }
        try server.start()
        do {
            try socket.listen(configuration.listen, maxMessageBytes: configuration.maxMessageBytes, tls: configuration.tls)
        } catch {
            server.close()
            throw ConfigurationError("cannot listen on \(configuration.listen): \(error). Is another coordinator running there?")
        }
        logger.notice("alerts: \(configuration.slackWebhook.map { "Slack webhook \($0) and the log" } ?? "the log only (no SLACK_WEBHOOK_URL)")")
        logger.notice("coordinator \(TTSCluster.version) listening on \(configuration.listen), database \(configuration.databasePath)\(configuration.token == nil ? " (no token: open cluster)" : " (token required)")")
        listening.store(true, ordering: .releasing)
        try? await gracefulShutdown() // returns at graceful shutdown; throws (ignored) on cancellation
        listening.store(false, ordering: .releasing)
        server.close()
        try? store.flushHeartbeats(registry.takeDirty())
        logger.notice("NNG listener closed")
    }

    /// Declares silent workers lost. Runs on a thread of its own so that blocking database
    /// work on Swift's (2-thread) cooperative pool can never delay it.
    func monitorLiveness() async {
        let stop = LivenessThreadStop()
        let thread = Thread { [self] in
            let lostAfter = Duration.milliseconds(configuration.lostAfterMs)
            // Losses whose transaction failed (e.g. a full database volume): the registry has
            // already marked them, so they are retried from here until they are recorded and
            // their shards requeued.
            var unrecorded: [(workerId: String, name: String, silentFor: Duration)] = []
            while !stop.isSet {
                Thread.sleep(forTimeInterval: 0.25)
                let due = unrecorded + registry.expire(lostAfter: lostAfter)
                unrecorded = []
                for lost in due {
                    let silent = Double(lost.silentFor.components.seconds) + Double(lost.silentFor.components.attoseconds) / 1e18
                    do {
                        let requeued = try store.markWorkerLost(workerId: lost.workerId, silentFor: silent)
                        for s in requeued { registry.leaseEnded(shardId: s) }
                        GangStops.propagate(store: store, registry: registry, logger: logger)
                        logger.warning("worker \(lost.name) lost: silent for \(String(format: "%.1f", silent)) s; requeued shards \(requeued)")
                        alerts.wake() // the loss is in the ingest log
                        Task {
                            await self.scheduler.dropWaiters(workerId: lost.workerId)
                            if !requeued.isEmpty { await self.scheduler.workAvailable() }
                        }
                    } catch {
                        if !unrecorded.contains(where: { $0.workerId == lost.workerId }) {
                            storeFailures.log(logger, "could not record the loss of worker \(lost.name) (retrying): \(error)")
                        }
                        unrecorded.append(lost)
                    }
                }
            }
        }
        thread.name = "tts-liveness"
        thread.start()
        await withTaskCancellationHandler {
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        } onCancel: {
            stop.set()
        }
    }

    func flushHeartbeats() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(configuration.heartbeatFlushMs))
            do {
                try store.flushHeartbeats(registry.takeDirty())
            } catch {
                // In-memory liveness stays authoritative; the next flush writes the newest state.
                storeFailures.log(logger, "could not persist heartbeats: \(error)")
            }
        }
    }
}

/// A flag the liveness thread polls.
final class LivenessThreadStop: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}
