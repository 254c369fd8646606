import Foundation
import Logging
import Shared

/// The coordinator's alerting: feeds everything it stores to the ``RulesEngine``, keeps each
/// alert's lifecycle in SQLite (firing → notified → repeated → resolved) and wakes the
/// ``AlertNotifier``. Every transition is also written to the log (the console notifier, always on).
///
/// Input arrives through one ordered queue (``submit(_:)``), so points are evaluated in the order
/// they were stored; a tick every second checks stalls, queues repeats and status digests.
public actor AlertCenter {
    /// Something the rules should see.
    public enum Input: Sendable {
        case stored(IngestActivity)
        case workerLost(workerId: String, name: String, requeuedShards: [Int64])
        case tick
    }

    let store: Store
    let registry: WorkerRegistry
    let logger: Logger
    let groupWait: Double
    let repeatInterval: Double
    let queueNotifications: Bool
    private var engine: RulesEngine
    private let inputs: AsyncStream<Input>
    private nonisolated let continuation: AsyncStream<Input>.Continuation
    private var notifier: AlertNotifier?
    private var lastDigest: Double
    private var runOfShard: [Int64: String] = [:]
    private var configuredRuns: Set<String> = []
    /// When this alert center was made (runs finished before it are this process's to recover).
    private let startedAt: Double

    /// - Parameters:
    ///   - groupWait: seconds a new notification waits so that a burst of one run and rule
    ///     becomes one message.
    ///   - repeatInterval: seconds after which a still-firing alert is notified again.
    ///   - queueNotifications: false when no notifier delivers (console only).
    public init(store: Store, registry: WorkerRegistry, logger: Logger, configuration: AlertRulesConfiguration = AlertRulesConfiguration(),
                groupWait: Double, repeatInterval: Double, queueNotifications: Bool) {
        self.store = store
        self.registry = registry
        self.logger = logger
        self.groupWait = groupWait
        self.repeatInterval = repeatInterval
        self.queueNotifications = queueNotifications
        engine = RulesEngine(configuration: configuration)
        (inputs, continuation) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .unbounded)
        lastDigest = Date().timeIntervalSince1970
        startedAt = lastDigest
    }

    /// Queues input for the rules (callable from any thread; never blocks).
    public nonisolated func submit(_ input: Input) { continuation.yield(input) }

    /// Processes input until cancelled; `notifier` is woken whenever something is queued.
    public func run(notifier: AlertNotifier?) async {
        self.notifier = notifier
        announceRunsFinishedUnannounced(now: Date().timeIntervalSince1970)
        raiseLostNonFiniteAlerts(now: Date().timeIntervalSince1970)
        let ticker = Task { [continuation] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                continuation.yield(.tick)
            }
        }
        for await input in inputs {
            if Task.isCancelled { break }
            handle(input, now: Date().timeIntervalSince1970)
        }
        ticker.cancel()
    }

    /// Feeds one input to the rules and records what they signal (exposed for tests).
    func handle(_ input: Input, now: Double) {
        var signals: [AlertSignal] = []
        switch input {
        case .stored(.metrics(let workerId, let entries)):
            let worker = registry.name(of: workerId)
            for e in entries {
                var last: String?
                for p in e.points where p.runId != last {
                    last = p.runId
                    configure(p.runId)
                }
                engine.ingest(e.points, now: now, into: &signals)
                for ev in e.events { event(ev, worker: worker, now: now, into: &signals) }
            }
        case .stored(.result(let workerId, let r, let d)):
            result(r, d, worker: registry.name(of: workerId), now: now, into: &signals)
        case .workerLost(_, let name, let shards):
            let runs = Set(shards.compactMap { run(ofShard: $0) })
            if runs.isEmpty {
                engine.workerLost(worker: name, runId: nil, now: now, into: &signals)
            }
            for run in runs.sorted() { engine.workerLost(worker: name, runId: run, now: now, into: &signals) }
        case .tick:
            tick(now: now, into: &signals)
        }
        record(signals, now: now)
    }

    private func event(_ e: EventRequest, worker: String, now: Double, into signals: inout [AlertSignal]) {
        guard let ref = e.shard else { return }
        let run = run(ofShard: ref.shardId)
        switch e.kind {
        case .outOfMemory:
            engine.outOfMemory(runId: run, worker: worker, shard: "\(ref.shardId)#\(ref.leaseEpoch)", message: e.message, now: now, into: &signals)
        case .log where OutOfMemoryText.matches(e.message):
            engine.logLines(runId: run, worker: worker, shard: "\(ref.shardId)#\(ref.leaseEpoch)", lines: [e.message], now: now, into: &signals)
        case .shardStarted:
            if let run { engine.shardStarted(runId: run, worker: worker, step: nil, now: now, into: &signals) }
        case .diskLow:
            let path = (try? JSONCoding.decode([String: JSONValue].self, from: e.data))?["path"]?.stringValue ?? ""
            engine.diskLow(runId: run, worker: worker, path: path, message: e.message, now: now, into: &signals)
        case .resumeMismatch:
            engine.resumeMismatch(runId: run, worker: worker, shard: "\(ref.shardId)#\(ref.leaseEpoch)", message: e.message, now: now, into: &signals)
        default:
            break
        }
    }

    private func result(_ r: ResultRequest, _ d: ResultDisposition, worker: String, now: Double, into signals: inout [AlertSignal]) {
        guard d.accepted else { return }
        let run = run(ofShard: r.shard.shardId)
        let shard = "\(r.shard.shardId)#\(r.shard.leaseEpoch)"
        switch r.outcome {
        case .failed, .outOfMemory:
            if r.outcome == .outOfMemory {
                engine.outOfMemory(runId: run, worker: worker, shard: shard, message: r.message, now: now, into: &signals)
            } else {
                engine.logLines(runId: run, worker: worker, shard: shard, lines: r.logTail, now: now, into: &signals)
            }
            engine.shardFailed(runId: run, worker: worker, shard: "\(r.shard.shardId)", error: r.message, lastLogLines: r.logTail,
                               willRetry: d.requeued, now: now, into: &signals)
        case .succeeded, .cancelled:
            break
        }
        guard let finished = d.finishedRun else { return }
        do {
            guard let facts = try store.finishedRun(finished) else { return }
            if facts.state == "succeeded" {
                engine.runCompleted(RunCompletion(runId: finished, worker: worker, durationSeconds: facts.finishedAt - facts.createdAt,
                                                  checkpoint: facts.checkpoint), now: now, into: &signals)
            } else {
                engine.runEnded(runId: finished, reason: "run \(finished) ended \(facts.state) (exit code \(facts.exitCode ?? -1))", now: now, into: &signals)
            }
        } catch {
            logger.error("alerts: cannot read run \(finished): \(error)")
        }
    }

    /// Runs whose result was committed but whose `run_completed` notice never was: the
    /// coordinator died in between (the notice is derived in memory from the stored result).
    /// Raised once at start, for runs that finished before this process started (a run that
    /// finishes from now on is announced by its result) and within the last 6 hours (an old
    /// database does not announce its history).
    func announceRunsFinishedUnannounced(now: Double) {
        do {
            for runId in try store.succeededRunsWithoutNotice(finishedFrom: now - 6 * 3600, before: startedAt) {
                guard let facts = try store.finishedRun(runId) else { continue }
                configure(runId)
                var signals: [AlertSignal] = []
                engine.runCompleted(RunCompletion(runId: runId, durationSeconds: facts.finishedAt - facts.createdAt, checkpoint: facts.checkpoint),
                                    now: now, into: &signals)
                if !signals.isEmpty { logger.notice("alerts: run \(runId) finished before the coordinator stopped; announcing its completion now") }
                record(signals, now: now)
            }
        } catch {
            logger.error("alerts: cannot look for finished runs to announce: \(error)")
        }
    }

    /// NaN/Inf points stored just before the coordinator died whose `non_finite` alert was not
    /// (the rules see points in memory after their commit): fed to the rules again at start. Only
    /// the newest stored points are read (a crash loses at most the last moments), and a point is
    /// fed only when its step is past every `non_finite` alert of its run and key, so an alert
    /// already recorded is never raised twice.
    func raiseLostNonFiniteAlerts(now: Double) {
        do {
            let points = try store.nonFinitePointsWithoutAlert(maxPoints: 200_000)
            guard !points.isEmpty else { return }
            var signals: [AlertSignal] = []
            for p in points {
                configure(p.runId)
                engine.ingest([p], now: now, into: &signals)
            }
            if !signals.isEmpty { logger.notice("alerts: \(signals.count) non-finite alert(s) stored before the coordinator stopped but not raised; raising them now") }
            record(signals, now: now)
        } catch {
            logger.error("alerts: cannot look for non-finite points without an alert: \(error)")
        }
    }

    private func tick(now: Double, into signals: inout [AlertSignal]) {
        for w in registry.liveProgress() {
            guard let run = run(ofShard: w.progress.shard.shardId) else { continue }
            engine.heartbeat(worker: w.name, runId: run, step: w.progress.step, now: now, into: &signals)
        }
        engine.checkStalls(now: now, into: &signals)
        let digest = engine.defaultConfiguration.statusDigest
        if digest.enabled, now - lastDigest >= digest.intervalMinutes * 60 {
            lastDigest = now
            let live = registry.liveProgress()
            let snapshots = engine.snapshots(now: now).map { s -> RunSnapshot in
                var s = s
                if let w = live.first(where: { run(ofShard: $0.progress.shard.shardId) == s.runId }) {
                    s.worker = w.name
                    s.totalSteps = w.progress.totalSteps
                    if let g = w.telemetry {
                        s.gpuUtilization = g.utilization
                        s.gpuMemoryUsedGB = Double(g.memoryUsedBytes) / 1e9
                        s.gpuMemoryTotalGB = Double(g.memoryTotalBytes) / 1e9
                    }
                }
                return s
            }
            signals += StatusDigest.messages(for: snapshots, configuration: digest, now: now)
        }
        if queueNotifications {
            do {
                if try store.enqueueRepeats(now: now, repeatInterval: repeatInterval) > 0 { notifier?.wake() }
            } catch {
                logger.error("alerts: cannot queue repeats: \(error)")
            }
        }
    }

    private func record(_ signals: [AlertSignal], now: Double) {
        guard !signals.isEmpty else { return }
        do {
            let outcome = try store.recordAlertSignals(signals, now: now, groupWait: groupWait, queueNotifications: queueNotifications)
            for s in outcome.transitions { console(s) }
            if outcome.queued > 0 { notifier?.wake() }
        } catch {
            // Not recorded: say so with the alert itself, so nothing is silently lost.
            logger.error("alerts: cannot store \(signals.count) alert transitions (\(error)); they were: \(signals.map(\.description).joined(separator: "; "))")
        }
    }

    /// The console notifier: one log line per transition.
    private func console(_ s: AlertSignal) {
        let text = "ALERT \(s.transition.rawValue.uppercased()) \(s.key.rule.rawValue) [\(s.severity.rawValue)]\(s.key.runId.map { " run \($0)" } ?? "")\(s.worker.map { " worker \($0)" } ?? ""): \(s.summary)"
        switch (s.transition, s.severity) {
        case (.fire, .critical): logger.error("\(text)")
        case (.fire, _): logger.warning("\(text)")
        default: logger.notice("\(text)")
        }
    }

    /// Applies a run's own rule settings (its config's `alerts` object) the first time it is seen.
    private func configure(_ run: String) {
        guard configuredRuns.insert(run).inserted else { return }
        do {
            if let c = try store.runAlertConfiguration(run) {
                engine.configure(runId: run, c)
                logger.info("alerts: run \(run) uses its own rule settings")
            }
        } catch {
            logger.error("alerts: the alert settings of run \(run) are not usable (\(error)); the defaults apply. Fix the job's `alerts:` section.")
        }
    }

    private func run(ofShard id: Int64) -> String? {
        if let r = runOfShard[id] { return r }
        guard let r = try? store.runId(ofShard: id) else { return nil }
        runOfShard[id] = r
        return r
    }
}
