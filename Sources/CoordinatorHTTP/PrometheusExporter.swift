import ClusterAdmin
import Coordinator
import CoreMetrics
import Foundation
import Prometheus
import Shared
import Synchronization

/// `/metrics` in the Prometheus text format. Counters that grow as things happen (points
/// ingested, HTTP requests) are swift-metrics instruments made by a ``PrometheusMetricsFactory``
/// over this exporter's own registry (not the process-wide `MetricsSystem`, so several
/// coordinators in one test process do not collide); gauges that describe the store (workers and
/// shards by state, outbox depth and age, alerts, each run's step and latest losses) are set
/// from the store at every scrape, so they always match it.
public final class PrometheusExporter: Sendable {
    let registry = PrometheusCollectorRegistry()
    let factory: PrometheusMetricsFactory
    private let store: Store
    private let wandbEnabled: Bool
    private let startedAt = Date()
    private let ingestedPoints: CoreMetrics.Counter
    private let ingestedEntries: CoreMetrics.Counter
    /// Label sets set at the previous scrape, so a state that disappeared goes back to 0.
    private let seen = Mutex<[String: Set<[String]>]>([:])

    public init(store: Store, wandbEnabled: Bool) {
        self.store = store
        self.wandbEnabled = wandbEnabled
        factory = PrometheusMetricsFactory(registry: registry)
        ingestedPoints = CoreMetrics.Counter(label: "tts_ingested_points_total", dimensions: [], factory: factory)
        ingestedEntries = CoreMetrics.Counter(label: "tts_ingested_spool_entries_total", dimensions: [], factory: factory)
    }

    /// Counts what ingest stored (call from an ingest observer).
    public func record(_ activity: IngestActivity) {
        guard case .metrics(_, let entries) = activity else { return }
        ingestedEntries.increment(by: entries.count)
        ingestedPoints.increment(by: entries.reduce(0) { $0 + $1.points.count })
    }

    /// Counts an HTTP request by method and status class.
    func recordRequest(method: String, status: Int) {
        CoreMetrics.Counter(label: "tts_http_requests_total", dimensions: [("method", method), ("code", "\(status)")], factory: factory).increment()
    }

    /// The exposition: refreshes every store-derived gauge, then renders the registry.
    public func render() throws -> String {
        let workers = try store.workers()
        let counts = try store.counts()
        var workerStates = counts.workers
        for s in WorkerSummary.State.known.map(\.rawValue) where workerStates[s] == nil { workerStates[s] = 0 }
        gauge("tts_workers", "Workers by state.", labels: workerStates.map { (["state", $0.key], Double($0.value)) })
        var shardStates = counts.shards
        for s in ShardSummary.State.known.map(\.rawValue) where shardStates[s] == nil { shardStates[s] = 0 }
        gauge("tts_shards", "Shards by state.", labels: shardStates.map { (["state", $0.key], Double($0.value)) })
        gauge("tts_jobs", "Jobs in the store.", labels: [([], Double(counts.jobs))])
        let backlog = try store.outboxBacklog(wandb: wandbEnabled)
        gauge("tts_outbox_depth", "Items waiting for a delivery sink (wandb: metric points; slack: alert notifications).",
              labels: backlog.filter { $0.sink != "wandb" || wandbEnabled }.map { (["sink", $0.sink], Double($0.depth)) })
        gauge("tts_outbox_oldest_age_seconds", "Age of the oldest item waiting for a delivery sink.",
              labels: backlog.filter { $0.sink != "wandb" || wandbEnabled }.map { (["sink", $0.sink], $0.oldestAgeSeconds) })
        let alerts = try store.alertCounts()
        var alertStates = alerts.byState
        for s in AlertSummary.State.known.map(\.rawValue) where alertStates[s] == nil { alertStates[s] = 0 }
        gauge("tts_alerts", "Alerts by state.", labels: alertStates.map { (["state", $0.key], Double($0.value)) })
        gauge("tts_alerts_by_rule", "Alerts ever raised, by rule.", labels: alerts.byRule.map { (["rule", $0.key], Double($0.value)) })
        let runs = try RunSummaries.list(store, limit: 10_000)
        gauge("tts_run_step", "Latest step of each run.", labels: runs.map { (["run", $0.id, "name", $0.name, "state", $0.state.rawValue], Double($0.step ?? 0)) })
        var losses: [([String], Double)] = []
        for r in runs { for (k, v) in r.losses { losses.append((["run", r.id, "key", k], v)) } }
        gauge("tts_run_latest_value", "Latest value of each run's loss-like series (text_loss, mel_loss, …).", labels: losses)
        gauge("tts_run_steps_per_second", "Each running run's training speed.",
              labels: runs.compactMap { r in r.stepsPerSecond.map { (["run", r.id], $0) } })
        var gpuMemory: [([String], Double)] = [], gpuUtil: [([String], Double)] = []
        for w in workers where w.state == .live {
            if let t = w.telemetry {
                gpuUtil.append((["worker", w.name], t.utilization))
                gpuMemory.append((["worker", w.name], Double(t.memoryUsedBytes)))
            }
        }
        gauge("tts_worker_gpu_utilization_percent", "GPU utilization of each live worker (NVML).", labels: gpuUtil)
        gauge("tts_worker_gpu_memory_used_bytes", "GPU memory in use on each live worker.", labels: gpuMemory)
        gauge("tts_coordinator_uptime_seconds", "Seconds since this coordinator started.", labels: [([], Date().timeIntervalSince(startedAt))])
        return registry.emitToString()
    }

    /// Sets a gauge family; label sets seen last time and absent now are set to 0 (Prometheus
    /// has no way to say "gone" for a gauge that still exists in the registry).
    private func gauge(_ name: String, _ help: String, labels: [([String], Double)]) {
        var now = Set<[String]>()
        for (flat, value) in labels {
            now.insert(flat)
            registry.makeGauge(name: name, labels: Self.pairs(flat), help: help).set(value)
        }
        let gone = seen.withLock { seen -> Set<[String]> in
            let previous = seen[name] ?? []
            seen[name] = now.union(previous)
            return previous.subtracting(now)
        }
        for flat in gone { registry.makeGauge(name: name, labels: Self.pairs(flat), help: help).set(0.0) }
    }

    private static func pairs(_ flat: [String]) -> [(String, String)] {
        stride(from: 0, to: flat.count - 1, by: 2).map { (flat[$0], flat[$0 + 1]) }
    }
}
