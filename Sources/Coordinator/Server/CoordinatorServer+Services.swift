import Foundation
import Logging
import ServiceLifecycle

extension CoordinatorServer {
    /// The coordinator as services, in start order, for a `ServiceGroup`. The group shuts them
    /// down in reverse order, one after the other, which gives the coordinator's shutdown order:
    ///
    /// 1. **Stop taking work**: the HTTP API (`http`), then the scheduler (held polls are
    ///    answered "no work", no shard is leased any more).
    /// 2. **Drain the consumers**: the Slack notifier, the alert rules (their cursor is made
    ///    durable), the W&B outbox, the report writer, the series summaries — each finishes what
    ///    it is doing; what it has not read stays in the ingest log for the next start.
    /// 3. **Close the sockets**: the heartbeat flusher and the liveness monitor stop, then the
    ///    NNG listener closes and writes the last heartbeat state.
    /// 4. **Checkpoint the database**: the WAL is folded into the database file.
    public func services(http: (any Service)? = nil) -> [ServiceGroupConfiguration.ServiceConfiguration] {
        func loop(_ name: String, _ body: @escaping @Sendable () async -> Void) -> ServiceGroupConfiguration.ServiceConfiguration {
            // A loop that ends early (a disabled sink returns at once) does not stop the others.
            .init(service: ClosureService { try await cancelWhenGracefulShutdown { await body() } },
                  successTerminationBehavior: .ignore, failureTerminationBehavior: .gracefullyShutdownGroup, serviceName: name)
        }
        var out: [ServiceGroupConfiguration.ServiceConfiguration] = [
            .init(service: ClosureService { [store, logger] in
                try? await gracefulShutdown()
                do {
                    try store.checkpoint()
                    logger.notice("coordinator stopped: database checkpointed")
                } catch {
                    logger.error("coordinator stopped; the database checkpoint failed (\(error)); the next start replays its WAL")
                }
            }, serviceName: "database"),
            .init(service: ClosureService { try await self.serveNNG() }, serviceName: "nng-listener"),
            loop("liveness") { await self.monitorLiveness() },
            loop("heartbeat-flusher") { await self.flushHeartbeats() },
            loop("series-summaries") { await self.summaries.run() },
            loop("eval-reports") { await self.evalReports.run() },
            loop("wandb-outbox") { await self.wandb.run() },
            loop("alert-rules") { await self.alerts.run(notifier: self.notifier) },
        ]
        if let notifier { out.append(loop("slack-notifier") { await notifier.run() }) }
        out.append(.init(service: ClosureService { [scheduler, logger] in
            try? await gracefulShutdown()
            logger.notice("shutting down: no shard is leased any more; draining the consumers, then closing the listener")
            await scheduler.stopLeasing()
        }, serviceName: "scheduler"))
        if let http { out.append(.init(service: http, serviceName: "http")) }
        return out
    }
}
