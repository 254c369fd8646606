import Foundation
import Shared

/// The alert rules of the coordinator: sees every metric point and every discrete fact as it
/// arrives and emits ``AlertSignal``s (fire / resolve / notify).
///
/// Pure and synchronous: no clock, no I/O. Every call takes the engine clock `now` (seconds,
/// any epoch, non-decreasing) and appends what it produced to `signals`. The owner (one actor
/// or thread) feeds it in arrival order; the notifier does grouping, repeats and delivery.
///
/// Cost per point: one dictionary lookup of the run (skipped when the run repeats), one of the
/// key within the run, then O(1) work plus a short memory shift in a sorted window for watched
/// keys; no allocation once a series exists.
///
/// ```swift
/// var engine = RulesEngine()
/// var signals: [AlertSignal] = []
/// engine.ingest(points, now: clock.now, into: &signals)    // after the metrics transaction commits
/// engine.heartbeat(worker: "box-a-gpu0", runId: "r1", step: 1200, now: t, into: &signals)
/// engine.checkStalls(now: t, into: &signals)               // about once a second
/// ```
public struct RulesEngine: Sendable {
    /// The configuration of runs without one of their own.
    public var defaultConfiguration: AlertRulesConfiguration
    private var configurations: [String: AlertRulesConfiguration] = [:]
    private var runs: [RunAlertState] = []
    private var runIndex: [String: Int] = [:]
    /// The last run looked up: points arrive in long runs of the same run id.
    private var cachedRunId = ""
    private var cachedRunSlot = -1
    /// Workers with a firing `worker_lost`, and its key.
    private var lostWorkers: [String: AlertKey] = [:]

    public init(configuration: AlertRulesConfiguration = AlertRulesConfiguration()) {
        defaultConfiguration = configuration
    }

    /// Sets the rules of one run (its job's settings). A run already seen restarts its rule
    /// state under the new settings (without signals).
    public mutating func configure(runId: String, _ configuration: AlertRulesConfiguration) {
        configurations[runId] = configuration
        if let r = runIndex[runId] {
            var fresh = RunAlertState(runId: runId, configuration: configuration)
            fresh.worker = runs[r].worker
            runs[r] = fresh
        }
    }

    /// The configuration that applies to `runId`.
    public func configuration(for runId: String?) -> AlertRulesConfiguration {
        runId.flatMap { configurations[$0] } ?? defaultConfiguration
    }

    // MARK: - Metric points

    /// Feeds one point (in arrival order).
    public mutating func ingest(_ point: MetricPoint, now: Double, into signals: inout [AlertSignal]) {
        ingestOne(point, now: now, into: &signals)
    }

    /// Feeds a batch of points (in arrival order), all arrived at `now`.
    public mutating func ingest<C: Sequence>(_ points: C, now: Double, into signals: inout [AlertSignal]) where C.Element == MetricPoint {
        for p in points { ingestOne(p, now: now, into: &signals) }
    }

    /// Feeds the points of one run stored as one batch (in arrival order), all arrived at `now`:
    /// the same as feeding its points one by one, with each key looked up once per batch.
    public mutating func ingest(runId: String, batch: PointBatch, now: Double, into signals: inout [AlertSignal]) {
        let r = slot(for: runId)
        let slots = batch.keys.map { runs[r].seriesSlot($0) }
        for i in 0..<batch.count {
            runs[r].observe(series: slots[Int(batch.keyIndex[i])], step: batch.steps[i], value: batch.values[i],
                            wallTime: batch.wallTimes[i], now: now, into: &signals)
        }
    }

    private mutating func ingestOne(_ point: MetricPoint, now: Double, into signals: inout [AlertSignal]) {
        let r = slot(for: point.runId)
        runs[r].ingest(point, now: now, into: &signals)
    }

    /// An evaluation result (also recognised from points of ``AlertRulesConfiguration/EvalRegression/keys``).
    public mutating func evalResult(runId: String, step: Int64?, cer: Double, now: Double, into signals: inout [AlertSignal]) {
        let r = slot(for: runId)
        runs[r].recordEval(cer: cer, step: step, now: now, into: &signals)
    }

    // MARK: - Liveness and progress

    /// A worker heartbeat; `runId` and `step` when it is running a shard of a run. Resolves the
    /// worker's `worker_lost` if one is firing (it came back) and the run's `stalled` if the
    /// step moved.
    public mutating func heartbeat(worker: String, runId: String?, step: Int64?, now: Double, into signals: inout [AlertSignal]) {
        workerReturned(worker: worker, now: now, into: &signals)
        guard let runId else { return }
        let r = slot(for: runId)
        runs[r].heartbeats[worker] = now
        // A gang's ranks other than 0 report no step: the run's worker is the one that does.
        if step != nil || runs[r].worker == nil || runs[r].heartbeats.count == 1 { runs[r].worker = worker }
        if runs[r].stall.observeHeartbeat(step: step, now: now) {
            signals.append(runs[r].stallResolved(step: step, now: now))
        }
    }

    /// A shard of `runId` started (or resumed from a checkpoint at `step`) on `worker`: the
    /// stall clock starts over.
    public mutating func shardStarted(runId: String, worker: String, step: Int64?, now: Double, into signals: inout [AlertSignal]) {
        let r = slot(for: runId)
        runs[r].worker = worker
        runs[r].heartbeats = [:] // the workers heartbeating for it from now on are its workers
        if runs[r].stall.restart(step: step, now: now) {
            signals.append(runs[r].stallResolved(step: step, now: now, reason: "run \(runId) restarted on \(worker)"))
        }
    }

    /// Starts every run's stall clock over at `now` (after the rules' state was rebuilt from the
    /// log: its last progress times are those of the log, not of the workers now).
    public mutating func restartStallClocks(now: Double) {
        for r in runs.indices { _ = runs[r].stall.restart(step: nil, now: now) }
    }

    /// Fires `stalled` for every run whose worker heartbeats but whose step has not advanced
    /// for max(K × median step time, floor). Call it periodically (about once a second).
    public mutating func checkStalls(now: Double, into signals: inout [AlertSignal]) {
        for r in runs.indices {
            let c = runs[r].configuration.stalled
            guard c.enabled, runs[r].stall.check(now: now, c) else { continue }
            signals.append(runs[r].stallFired(now: now))
        }
    }

    /// `worker` was declared lost (while serving `runId`, if any). Fires `worker_lost` once per
    /// loss and resolves the run's `stalled` (the loss explains it).
    public mutating func workerLost(worker: String, runId: String?, now: Double, into signals: inout [AlertSignal]) {
        if let runId, let r = runIndex[runId] { runs[r].heartbeats[worker] = nil }
        if let runId, let r = runIndex[runId], runs[r].stall.workerGone() {
            signals.append(runs[r].stallResolved(step: nil, now: now, reason: "worker \(worker) of run \(runId) was lost"))
        }
        let c = configuration(for: runId).workerLost
        guard c.enabled, lostWorkers[worker] == nil else { return }
        let key = AlertKey(runId: runId, rule: .workerLost, series: worker)
        lostWorkers[worker] = key
        let what = runId.map { " while running \($0)" } ?? ""
        signals.append(AlertSignal(transition: .fire, key: key, severity: c.severity,
                                   summary: "worker \(worker) stopped heartbeating and was declared lost\(what)",
                                   worker: worker, time: now))
    }

    /// `worker` is live again: resolves its `worker_lost`. (Heartbeats do this too.)
    public mutating func workerReturned(worker: String, now: Double, into signals: inout [AlertSignal]) {
        guard let key = lostWorkers.removeValue(forKey: worker) else { return }
        signals.append(AlertSignal(transition: .resolve, key: key, severity: configuration(for: key.runId).workerLost.severity,
                                   summary: "worker \(worker) is back", worker: worker, time: now))
    }

    // MARK: - Failures

    /// A runner reported CUDA out-of-memory (the shim's typed error, or a matching stderr
    /// line). Notifies once per shard attempt (`shard`: the caller's id for it).
    public mutating func outOfMemory(runId: String?, worker: String?, shard: String, message: String, now: Double,
                                     into signals: inout [AlertSignal]) {
        let c = configuration(for: runId).oom
        guard c.enabled else { return }
        if let runId {
            let r = slot(for: runId)
            guard runs[r].oomShards.insert(shard).inserted else { return }
        }
        let key = AlertKey(runId: runId, rule: .oom, series: shard)
        let trimmed = String(message.prefix(500))
        signals.append(AlertSignal(transition: .notify, key: key, severity: c.severity,
                                   summary: "CUDA out of memory on \(worker ?? "?") in shard \(shard)\(runId.map { " of run \($0)" } ?? "")",
                                   details: [trimmed], worker: worker, time: now))
    }

    /// A run's checkpoint volume is nearly full (`disk_low` event). Notifies once per run and
    /// path until it resolves by itself (no repeat while the same volume stays low).
    public mutating func diskLow(runId: String?, worker: String?, path: String, message: String, now: Double,
                                 into signals: inout [AlertSignal]) {
        let c = configuration(for: runId).diskLow
        guard c.enabled else { return }
        signals.append(AlertSignal(transition: .notify, key: AlertKey(runId: runId, rule: .diskLow, series: (path as NSString).deletingLastPathComponent),
                                   severity: c.severity, summary: String(message.prefix(400)), details: [], worker: worker, time: now))
    }

    /// A resumed trainer started from another step than asked (`resume_mismatch` event).
    public mutating func resumeMismatch(runId: String?, worker: String?, shard: String, message: String, now: Double,
                                        into signals: inout [AlertSignal]) {
        let c = configuration(for: runId).resumeMismatch
        guard c.enabled else { return }
        signals.append(AlertSignal(transition: .notify, key: AlertKey(runId: runId, rule: .resumeMismatch, series: shard),
                                   severity: c.severity, summary: String(message.prefix(500)), details: [], worker: worker, time: now))
    }

    /// Runner output lines: the first line that reports CUDA OOM (``OutOfMemoryText``) raises `oom`.
    public mutating func logLines(runId: String?, worker: String?, shard: String, lines: [String], now: Double,
                                  into signals: inout [AlertSignal]) {
        guard let line = lines.first(where: { OutOfMemoryText.matches($0) }) else { return }
        outOfMemory(runId: runId, worker: worker, shard: shard, message: line, now: now, into: &signals)
    }

    /// A shard attempt failed. `willRetry` false means the retry budget is spent (critical by
    /// default). An OOM in `error` or the log lines also raises `oom` (once per shard).
    public mutating func shardFailed(runId: String?, worker: String?, shard: String, error: String, lastLogLines: [String],
                                     willRetry: Bool, now: Double, into signals: inout [AlertSignal]) {
        logLines(runId: runId, worker: worker, shard: shard, lines: [error] + lastLogLines, now: now, into: &signals)
        let c = configuration(for: runId).shardFailed
        guard c.enabled else { return }
        let tail = Array(lastLogLines.suffix(max(0, c.logLines)))
        let retry = willRetry ? "; it will be retried" : "; no retries left"
        signals.append(AlertSignal(
            transition: .notify, key: AlertKey(runId: runId, rule: .shardFailed, series: shard),
            severity: willRetry ? c.severity : c.finalSeverity,
            summary: "shard \(shard)\(runId.map { " of run \($0)" } ?? "") failed on \(worker ?? "?"): \(String(error.prefix(300)))\(retry)",
            details: tail, worker: worker, time: now))
    }

    // MARK: - Run lifecycle

    /// The run finished: resolves its firing alerts, notifies `run_completed` (filling final and
    /// best losses and the best CER from what the engine saw, when `completion` lacks them) and
    /// forgets the run.
    public mutating func runCompleted(_ completion: RunCompletion, now: Double, into signals: inout [AlertSignal]) {
        var done = completion
        let c = configuration(for: completion.runId).runCompleted
        if let r = runIndex[completion.runId] {
            runs[r].resolveAll(reason: "run \(completion.runId) completed", now: now, into: &signals)
            let run = runs[r]
            let losses = run.series.filter(\.isWatchedLoss)
            if done.finalLosses.isEmpty { done.finalLosses = losses.filter { !$0.last.isNaN }.map { .init($0.key, $0.last) } }
            if done.bestLosses.isEmpty { done.bestLosses = losses.filter { !$0.minimum.isNaN }.map { .init($0.key, $0.minimum) } }
            if done.bestCER == nil, run.eval.best.isFinite { done.bestCER = run.eval.best }
            if done.worker == nil { done.worker = run.worker }
            if done.finalStep == nil, run.stall.lastStep != .min { done.finalStep = run.stall.lastStep }
            remove(slot: r)
        }
        configurations[completion.runId] = nil
        guard c.enabled else { return }
        var summary = "run \(done.runId) completed"
        if let step = done.finalStep { summary += " at step \(step)" }
        if let d = done.durationSeconds { summary += " in \(AlertText.duration(d))" }
        var details: [String] = []
        for v in done.finalLosses {
            var line = "\(v.name): final \(AlertText.number(v.value))"
            if let best = done.bestLosses.first(where: { $0.name == v.name }) { line += ", best \(AlertText.number(best.value))" }
            details.append(line)
        }
        var values = done.finalLosses
        values += done.bestLosses.map { .init("best " + $0.name, $0.value) }
        if let cer = done.bestCER {
            details.append("best CER: \(AlertText.number(cer))")
            values.append(.init("best_cer", cer))
        }
        if let d = done.durationSeconds { values.append(.init("duration_seconds", d)) }
        if let checkpoint = done.checkpoint { details.append("checkpoint: \(checkpoint)") }
        signals.append(AlertSignal(transition: .notify, key: AlertKey(runId: done.runId, rule: .runCompleted), severity: c.severity,
                                   summary: summary, values: values, details: details, worker: done.worker,
                                   step: done.finalStep, time: now))
    }

    /// The run ended without completing (cancelled, failed for good): resolves its firing
    /// alerts with `reason` and forgets it.
    public mutating func runEnded(runId: String, reason: String, now: Double, into signals: inout [AlertSignal]) {
        configurations[runId] = nil
        guard let r = runIndex[runId] else { return }
        runs[r].resolveAll(reason: reason, now: now, into: &signals)
        remove(slot: r)
    }

    // MARK: - Inspection

    /// Every alert firing now (metric rules, stalls, eval regressions, lost workers).
    public var firingKeys: [AlertKey] {
        runs.flatMap(\.firingKeys) + lostWorkers.values.sorted { $0.series < $1.series }
    }

    /// Run ids the engine holds state for.
    public var activeRuns: [String] { runs.map(\.runId) }

    /// What the engine knows of every active run, for ``StatusDigest``: step, steps/s (from the
    /// median step time), the watched losses with their trend, the last eval, firing alerts.
    public func snapshots(now: Double) -> [RunSnapshot] {
        runs.map { run in
            let median = run.stall.medianStepTime
            let losses: [RunSnapshot.Loss] = run.series.compactMap { st in
                guard let d = st.spike, !st.last.isNaN else { return nil }
                let baseline = d.baselineMedian
                let trend: Double? = baseline.isFinite && baseline > 0 && d.ema.isFinite ? d.ema / baseline - 1 : nil
                return RunSnapshot.Loss(key: st.key, value: st.last, trend: trend)
            }
            return RunSnapshot(
                runId: run.runId, worker: run.worker, step: run.stall.lastStep == .min ? nil : run.stall.lastStep,
                stepsPerSecond: median.isFinite && median > 0 ? 1 / median : nil, losses: losses,
                lastEvalStep: run.eval.lastStep, lastEvalCER: run.eval.last.isFinite ? run.eval.last : nil,
                bestCER: run.eval.best.isFinite ? run.eval.best : nil, firing: run.firingKeys)
        }
    }

    // MARK: - Run slots

    @inline(__always)
    private mutating func slot(for runId: String) -> Int {
        if cachedRunSlot >= 0 && runId == cachedRunId { return cachedRunSlot }
        let r: Int
        if let found = runIndex[runId] {
            r = found
        } else {
            r = runs.count
            runs.append(RunAlertState(runId: runId, configuration: configuration(for: runId)))
            runIndex[runId] = r
        }
        cachedRunId = runId
        cachedRunSlot = r
        return r
    }

    private mutating func remove(slot r: Int) {
        let id = runs[r].runId
        let last = runs.count - 1
        if r != last {
            runs.swapAt(r, last)
            runIndex[runs[r].runId] = r
        }
        runs.removeLast()
        runIndex[id] = nil
        cachedRunSlot = -1
        cachedRunId = ""
    }
}
