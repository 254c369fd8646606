import Foundation
import Logging
import Shared

/// The coordinator's alerting: feeds everything the store committed to the ``RulesEngine``,
/// keeps each alert's lifecycle in SQLite (firing → notified → repeated → resolved) and wakes the
/// ``AlertNotifier``. Every transition is also written to the log (the console notifier, always on).
///
/// The rules read the store's ingest log (``Store/ingestLog(after:through:limit:runs:)``) from
/// their own durable cursor (`consumer_cursors.alerts`): what a chunk of the log made them signal
/// is recorded in the same transaction that moves the cursor, so a crash at any moment neither
/// loses nor doubles an alert — the next start continues from the cursor. At start the rules'
/// state (baselines, medians, best CER, which alerts fire) is rebuilt by reading the log of the
/// runs still going up to the cursor again, with the signals it gives discarded (they were
/// recorded the first time); every entry is fed with its commit time, so this replay makes the
/// same decisions as the first reading did.
///
/// A wake-up (``wake()``, after each ingest commit) reads what is new; a tick every second checks
/// stalls, queues repeats and status digests.
public actor AlertCenter {
    /// Its store reads and writes block (SQLite with fsync, reads of many batches): they run on
    /// a thread of its own, never on a thread of the cooperative pool.
    private let executor = DedicatedThreadExecutor(name: "alert-rules")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Something that makes the rules look again.
    public enum Input: Sendable {
        /// Something was committed: read the log.
        case wake
        /// A second passed: stalls, repeats, digests (and the log).
        case tick
    }

    /// The rules' cursor in `consumer_cursors`.
    public static let consumerName = "alerts"

    let store: Store
    let registry: WorkerRegistry
    let logger: Logger
    let groupWait: Double
    let repeatInterval: Double
    let queueNotifications: Bool
    private let configuration: AlertRulesConfiguration
    private var engine: RulesEngine
    private let inputs: AsyncStream<Input>
    private nonisolated let continuation: AsyncStream<Input>.Continuation
    private var notifier: AlertNotifier?
    private var lastDigest: Double
    private var runOfShard: [Int64: (run: String, reportsStep: Bool)] = [:]
    private var configuredRuns: Set<String> = []
    /// The last log position fed to the rules, and the last one made durable.
    private var position: Int64 = 0
    private var durablePosition: Int64 = 0
    private var lastCursorWrite = 0.0
    /// False until the rules' state is rebuilt from the log (and after a failed record: the rules
    /// saw entries whose signals were not stored, so they are rebuilt from the durable cursor).
    private var ready = false

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
        self.configuration = configuration
        engine = RulesEngine(configuration: configuration)
        (inputs, continuation) = AsyncStream.makeStream(of: Input.self, bufferingPolicy: .unbounded)
        lastDigest = Date().timeIntervalSince1970
    }

    /// Queues input for the rules (callable from any thread; never blocks).
    public nonisolated func submit(_ input: Input) { continuation.yield(input) }

    /// Something was committed (callable from any thread; never blocks).
    public nonisolated func wake() { continuation.yield(.wake) }

    /// Processes input until cancelled; `notifier` is woken whenever something is queued.
    public func run(notifier: AlertNotifier?) async {
        self.notifier = notifier
        catchUp()
        let ticker = Task { [continuation] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .seconds(1))
                continuation.yield(.tick)
            }
        }
        for await input in inputs {
            if Task.isCancelled { break }
            // Wake-ups that queued up while the log was read find nothing new: a cheap read.
            catchUp()
            if case .tick = input { tick(now: Date().timeIntervalSince1970) }
        }
        ticker.cancel()
        persistPosition(force: true)
    }

    /// Reads the log past the cursor and feeds it to the rules; the signals of each chunk are
    /// recorded with the cursor in one transaction (exposed for tests).
    func catchUp() {
        do {
            if !ready { try rebuild() }
            while true {
                let chunk = try store.ingestLog(after: position, limit: 500)
                guard chunk.through > position else { break }
                var signals: [AlertSignal] = []
                for entry in chunk.entries { feed(entry, into: &signals) }
                position = chunk.through
                if !signals.isEmpty || position - durablePosition >= 10_000 {
                    try record(signals, now: Date().timeIntervalSince1970, through: position)
                }
            }
            persistPosition(force: false)
        } catch {
            ready = false
            logger.error("alerts: cannot read or record what the rules found (\(error)); the rules will read the log again from their last recorded position")
        }
    }

    /// Rebuilds the rules' state: a fresh engine fed the log of the runs still going (and entries
    /// of no run) up to the durable cursor, its signals discarded.
    private func rebuild() throws {
        engine = RulesEngine(configuration: configuration)
        configuredRuns = []
        let cursor = try store.consumerPosition(Self.consumerName)
        let active = Set(try store.unfinishedRunIds())
        var after: Int64 = 0, replayed = 0
        var discarded: [AlertSignal] = []
        while after < cursor {
            let chunk = try store.ingestLog(after: after, through: cursor, limit: 2_000, runs: active)
            guard chunk.through > after else { break }
            for entry in chunk.entries {
                feed(entry, into: &discarded)
                discarded.removeAll(keepingCapacity: true)
            }
            replayed += chunk.entries.count
            after = chunk.through
        }
        engine.restartStallClocks(now: Date().timeIntervalSince1970)
        position = cursor
        durablePosition = cursor
        ready = true
        if replayed > 0 { logger.info("alerts: rules rebuilt from \(replayed) log entries of \(active.count) unfinished run(s) up to position \(cursor)") }
    }

    /// Makes the cursor durable when the rules moved past entries that signalled nothing (at most
    /// every 2 s: reading such entries again after a crash signals nothing again).
    private func persistPosition(force: Bool) {
        let now = Date().timeIntervalSince1970
        guard position > durablePosition, force || now - lastCursorWrite >= 2 else { return }
        do {
            try record([], now: now, through: position)
        } catch {
            logger.error("alerts: cannot record the rules' position (\(error))")
        }
    }

    /// Feeds one log entry to the rules at its commit time.
    private func feed(_ entry: IngestLogEntry, into signals: inout [AlertSignal]) {
        let now = entry.at
        let worker = entry.workerId.map { registry.name(of: $0) }
        switch entry.fact {
        case .points(let batch):
            guard let run = entry.runId else { break }
            configure(run)
            engine.ingest(runId: run, batch: batch, now: now, into: &signals)
        case .event(let e):
            event(e, worker: worker ?? "coordinator", now: now, into: &signals)
        case .result(let r, let accepted, let requeued, let finishedRun):
            result(r, accepted: accepted, requeued: requeued, finishedRun: finishedRun, worker: worker ?? "coordinator", now: now, into: &signals)
        case .workerLost(let name, _, let runs):
            if runs.isEmpty { engine.workerLost(worker: name, runId: nil, now: now, into: &signals) }
            for run in runs.sorted() { engine.workerLost(worker: name, runId: run, now: now, into: &signals) }
        case .evalCompleted:
            break // its scores reach the rules as points
        }
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

    private func result(_ r: ResultRequest, accepted: Bool, requeued: Bool, finishedRun: String?, worker: String, now: Double,
                        into signals: inout [AlertSignal]) {
        guard accepted else { return }
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
                               willRetry: requeued, now: now, into: &signals)
        case .succeeded, .cancelled:
            break
        }
        guard let finished = finishedRun else { return }
        do {
            guard let facts = try store.finishedRun(finished) else { return }
            if facts.state == .succeeded {
                engine.runCompleted(RunCompletion(runId: finished, worker: worker, durationSeconds: facts.finishedAt - facts.createdAt,
                                                  checkpoint: facts.checkpoint), now: now, into: &signals)
            } else {
                engine.runEnded(runId: finished, reason: "run \(finished) ended \(facts.state.rawValue) (exit code \(facts.exitCode ?? -1))", now: now, into: &signals)
            }
        } catch {
            logger.error("alerts: cannot read run \(finished): \(error)")
        }
    }

    /// Stalls, repeats and digests (exposed for tests).
    func tick(now: Double) {
        var signals: [AlertSignal] = []
        tick(now: now, into: &signals)
        guard !signals.isEmpty else { return }
        do { try record(signals, now: now, through: nil) } catch {
            // Not recorded: say so with the alert itself, so nothing is silently lost.
            logger.error("alerts: cannot store \(signals.count) alert transitions (\(error)); they were: \(signals.map(\.description).joined(separator: "; "))")
        }
    }

    private func tick(now: Double, into signals: inout [AlertSignal]) {
        for w in registry.liveProgress() {
            guard let p = placement(ofShard: w.progress.shard.shardId) else { continue }
            engine.heartbeat(worker: w.name, runId: p.run, step: p.reportsStep ? w.progress.step : nil, now: now, into: &signals)
        }
        engine.checkStalls(now: now, into: &signals)
        let digest = engine.defaultConfiguration.statusDigest
        if digest.enabled, now - lastDigest >= digest.intervalMinutes * 60 {
            lastDigest = now
            let live = registry.liveProgress()
            let snapshots = engine.snapshots(now: now).map { s -> RunSnapshot in
                var s = s
                if let w = live.first(where: { placement(ofShard: $0.progress.shard.shardId).map { $0.run == s.runId && $0.reportsStep } ?? false }) {
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

    /// Records signals (and, with `through`, the rules' cursor) in one transaction.
    private func record(_ signals: [AlertSignal], now: Double, through: Int64?) throws {
        let outcome = try store.recordAlertSignals(signals, now: now, groupWait: groupWait, queueNotifications: queueNotifications,
                                                   consumer: through.map { (Self.consumerName, $0) })
        if let through {
            durablePosition = through
            lastCursorWrite = now
        }
        for s in outcome.transitions { console(s) }
        if outcome.queued > 0 { notifier?.wake() }
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

    private func run(ofShard id: Int64) -> String? { placement(ofShard: id)?.run }

    /// The shard's run and whether it reports the run's step: every shard of a run does, except
    /// the ranks other than 0 of a data-parallel gang (their heartbeats carry no step of their own).
    private func placement(ofShard id: Int64) -> (run: String, reportsStep: Bool)? {
        if let r = runOfShard[id] { return r }
        guard let found = try? store.runAndRank(ofShard: id) else { return nil }
        let r = (run: found.runId, reportsStep: (found.rank ?? 0) == 0)
        runOfShard[id] = r
        return r
    }
}
