import Shared

/// The rules' state of one metric series (run, key). Which detectors exist is decided once,
/// when the key is first seen, from the run's configuration.
struct SeriesAlertState: Sendable {
    let key: String
    var spike: BaselineDeviationDetector?
    var collapse: BaselineDeviationDetector?
    var nonFinite: AlertHysteresis?
    let isEvalCER: Bool
    /// The ASR floor's CER of an evaluation (read by `eval_regression`, watched by nothing).
    let isEvalFloor: Bool
    /// Neither detector watches it: only the bookkeeping below runs.
    let isPassive: Bool
    var last = Double.nan
    var lastStep: Int64 = 0
    /// Lowest finite value (best loss).
    var minimum = Double.nan
    /// Value and step of the first non-finite point of the current `non_finite` alert.
    var nonFiniteValue = Double.nan
    var nonFiniteStep: Int64 = 0

    init(key: String, configuration c: AlertRulesConfiguration) {
        self.key = key
        if c.lossSpike.enabled && c.lossSpike.keys.contains(key) {
            let s = c.lossSpike
            spike = BaselineDeviationDetector(direction: .above, factor: s.threshold, smoothingPoints: s.smoothingPoints,
                                              baselinePoints: s.baselinePoints, warmupPoints: s.warmupPoints,
                                              consecutivePoints: s.consecutivePoints, resolvePoints: s.resolvePoints)
        }
        if c.accuracyCollapse.enabled && c.accuracyCollapse.keys.contains(key) {
            let a = c.accuracyCollapse
            collapse = BaselineDeviationDetector(direction: .below, factor: a.fraction, smoothingPoints: a.smoothingPoints,
                                                 baselinePoints: a.baselinePoints, warmupPoints: a.warmupPoints,
                                                 consecutivePoints: a.consecutivePoints, resolvePoints: a.resolvePoints)
        }
        let n = c.nonFinite
        if n.enabled && (n.keys.contains(key) || n.keysContaining.contains(where: { !$0.isEmpty && key.contains($0) })) {
            nonFinite = AlertHysteresis(fireAfter: 1, resolveAfter: n.resolvePoints)
        }
        isEvalCER = c.evalRegression.enabled && c.evalRegression.keys.contains(key)
        isEvalFloor = c.evalRegression.enabled && c.evalRegression.floorKey == key
        isPassive = spike == nil && collapse == nil && nonFinite == nil && !isEvalCER && !isEvalFloor
    }

    var isWatchedLoss: Bool { spike != nil }
}

/// Everything the rules keep about one run.
struct RunAlertState: Sendable {
    let runId: String
    var configuration: AlertRulesConfiguration
    var worker: String?
    /// Engine time of each worker's last heartbeat for this run: a data-parallel gang has one
    /// worker per rank, and a stall names them all.
    var heartbeats: [String: Double] = [:]
    var series: [SeriesAlertState] = []
    var seriesIndex: [String: Int] = [:]
    /// The series of the previous point (-1: none yet).
    var lastSeries = -1
    var stall = StallDetector()
    var eval = EvalRegressionTracker()
    /// The ASR floor CER of each evaluated step (stored before the CER of the same evaluation).
    var floorCer: [Int64: Double] = [:]
    /// Shards whose OOM has been reported already (runners print the message more than once).
    var oomShards: Set<String> = []

    init(runId: String, configuration: AlertRulesConfiguration) {
        self.runId = runId
        self.configuration = configuration
    }

    // MARK: Metric points (the hot path)

    @inline(__always)
    mutating func ingest(_ p: MetricPoint, now: Double, into signals: inout [AlertSignal]) {
        // Points cycle through a run's keys in the same order: try the series after the last
        // one before hashing the key.
        let s: Int
        let next = lastSeries + 1 < series.count ? lastSeries + 1 : 0
        if next < series.count, series[next].key == p.key {
            s = next
        } else if lastSeries >= 0, lastSeries < series.count, series[lastSeries].key == p.key {
            s = lastSeries
        } else {
            s = seriesSlot(p.key)
        }
        lastSeries = s
        observe(series: s, step: p.step, value: p.value, wallTime: p.wallTime, now: now, into: &signals)
    }

    /// The slot of `key`'s series (created on first sight).
    mutating func seriesSlot(_ key: String) -> Int {
        if let i = seriesIndex[key] { return i }
        let s = series.count
        series.append(SeriesAlertState(key: key, configuration: configuration))
        seriesIndex[key] = s
        return s
    }

    /// Feeds one point of the series in slot `s`.
    @inline(__always)
    mutating func observe(series s: Int, step: Int64, value v: Double, wallTime: Double, now: Double, into signals: inout [AlertSignal]) {
        if stall.observePoint(step: step, wallTime: wallTime, now: now) {
            signals.append(stallResolved(step: step, now: now))
        }
        series[s].last = v
        series[s].lastStep = step
        if series[s].isPassive { return }
        let finite = v.isFinite
        if finite && !(v >= series[s].minimum) { series[s].minimum = v }

        if series[s].nonFinite != nil, let t = series[s].nonFinite!.update(!finite) {
            if t == .fire {
                series[s].nonFiniteValue = v
                series[s].nonFiniteStep = step
            }
            signals.append(nonFiniteSignal(s, t, step: step, now: now))
        }
        guard finite else { return }
        if let t = series[s].spike?.update(v) {
            signals.append(deviationSignal(s, rule: .lossSpike, t, step: step, now: now))
        }
        if let t = series[s].collapse?.update(v) {
            signals.append(deviationSignal(s, rule: .accuracyCollapse, t, step: step, now: now))
        }
        if series[s].isEvalFloor { floorCer[step] = v }
        if series[s].isEvalCER {
            // An evaluation whose ASR cannot read the test set's own audio says nothing about
            // the model: its CER is neither a regression nor a recovery.
            if let floor = floorCer[step], floor > configuration.evalRegression.maxFloorCer { return }
            recordEval(cer: v, step: step, now: now, into: &signals)
        }
    }

    // MARK: Evaluations

    mutating func recordEval(cer: Double, step: Int64?, now: Double, into signals: inout [AlertSignal]) {
        let c = configuration.evalRegression
        guard c.enabled else { return }
        let key = AlertKey(runId: runId, rule: .evalRegression)
        switch eval.record(cer: cer, step: step, c) {
        case .none:
            return
        case .fire:
            let stepText = step.map { " at step \($0)" } ?? ""
            let bestText = eval.bestStep.map { " (step \($0))" } ?? ""
            signals.append(AlertSignal(
                transition: .fire, key: key, severity: c.severity,
                summary: "eval CER \(AlertText.number(cer))\(stepText) is worse than the run's best \(AlertText.number(eval.best))\(bestText) by more than \(AlertText.number(eval.limit(c) - eval.best))",
                values: [.init("cer", cer), .init("best_cer", eval.best), .init("limit", eval.limit(c))],
                worker: worker, step: step, time: now))
        case .resolve:
            signals.append(AlertSignal(
                transition: .resolve, key: key, severity: c.severity,
                summary: "eval CER \(AlertText.number(cer)) is back within the margin of the best \(AlertText.number(eval.best))",
                values: [.init("cer", cer), .init("best_cer", eval.best)], worker: worker, step: step, time: now))
        }
    }

    // MARK: Signals

    func nonFiniteSignal(_ s: Int, _ t: AlertHysteresis.Transition, step: Int64, now: Double) -> AlertSignal {
        let st = series[s]
        let key = AlertKey(runId: runId, rule: .nonFinite, series: st.key)
        let severity = configuration.nonFinite.severity
        switch t {
        case .fire:
            return AlertSignal(transition: .fire, key: key, severity: severity,
                               summary: "\(st.key) is \(AlertText.number(st.nonFiniteValue)) at step \(step)",
                               values: [.init(st.key, st.nonFiniteValue)], worker: worker, step: step, time: now)
        case .resolve:
            return AlertSignal(transition: .resolve, key: key, severity: severity,
                               summary: "\(st.key) is finite again (\(AlertText.number(st.last)) at step \(step); non-finite since step \(st.nonFiniteStep))",
                               values: [.init(st.key, st.last)], worker: worker, step: step, time: now)
        }
    }

    func deviationSignal(_ s: Int, rule: AlertRule, _ t: AlertHysteresis.Transition, step: Int64, now: Double) -> AlertSignal {
        let st = series[s]
        guard let d = rule == .lossSpike ? st.spike : st.collapse else { preconditionFailure("no detector for \(rule)") }
        let key = AlertKey(runId: runId, rule: rule, series: st.key)
        let severity = rule == .lossSpike ? configuration.lossSpike.severity : configuration.accuracyCollapse.severity
        let values: [AlertSignal.Value] = [.init(st.key, st.last), .init("smoothed", d.ema), .init("baseline_median", d.lastBaseline),
                                           .init("ratio", d.ratio), .init("peak_ratio", d.peakRatio)]
        let summary: String
        switch (rule, t) {
        case (.lossSpike, .fire):
            summary = "\(st.key) spiked to \(AlertText.number(d.ema)) (smoothed; \(AlertText.ratio(d.ratio)) its median \(AlertText.number(d.lastBaseline))) at step \(step)"
        case (.lossSpike, .resolve):
            summary = "\(st.key) is back to \(AlertText.number(d.ema)) (\(AlertText.ratio(d.ratio)) its median; peak \(AlertText.ratio(d.peakRatio))) at step \(step)"
        case (_, .fire):
            summary = "\(st.key) collapsed to \(AlertText.number(d.ema)) (smoothed; \(AlertText.ratio(d.ratio)) its median \(AlertText.number(d.lastBaseline))) at step \(step)"
        case (_, .resolve):
            summary = "\(st.key) recovered to \(AlertText.number(d.ema)) (\(AlertText.ratio(d.ratio)) its median) at step \(step)"
        }
        return AlertSignal(transition: t == .fire ? .fire : .resolve, key: key, severity: severity, summary: summary,
                           values: values, worker: worker, step: step, time: now)
    }

    func stallFired(now: Double) -> AlertSignal {
        let c = configuration.stalled
        let idle = now - stall.lastProgressAt
        let median = stall.medianStepTime
        let step = stall.lastStep == .min ? nil : stall.lastStep
        var values: [AlertSignal.Value] = [.init("seconds_without_progress", idle), .init("limit_seconds", stall.limit(c))]
        if median.isFinite { values.append(.init("median_step_seconds", median)) }
        let live = heartbeats.filter { now - $0.value <= c.heartbeatFreshSeconds }.keys.sorted()
        let still = live.count > 1
            ? "while the \(live.count) workers of its gang (\(live.joined(separator: ", "))) still heartbeat: a rank may be stuck in a collective, or the trainer hung"
            : "while its worker \(worker ?? "?") still heartbeats"
        return AlertSignal(
            transition: .fire, key: AlertKey(runId: runId, rule: .stalled), severity: c.severity,
            summary: "run \(runId) has not advanced past step \(step.map(String.init) ?? "?") for \(AlertText.duration(idle)) \(still)",
            values: values, worker: worker, step: step, time: now)
    }

    func stallResolved(step: Int64?, now: Double, reason: String? = nil) -> AlertSignal {
        AlertSignal(
            transition: .resolve, key: AlertKey(runId: runId, rule: .stalled), severity: configuration.stalled.severity,
            summary: reason ?? "run \(runId) is advancing again (step \(step.map(String.init) ?? "?"))",
            worker: worker, step: step, time: now)
    }

    /// The keys of every alert of this run that is firing now.
    var firingKeys: [AlertKey] {
        var keys: [AlertKey] = []
        for st in series {
            if st.spike?.isFiring == true { keys.append(AlertKey(runId: runId, rule: .lossSpike, series: st.key)) }
            if st.nonFinite?.isFiring == true { keys.append(AlertKey(runId: runId, rule: .nonFinite, series: st.key)) }
            if st.collapse?.isFiring == true { keys.append(AlertKey(runId: runId, rule: .accuracyCollapse, series: st.key)) }
        }
        if stall.isFiring { keys.append(AlertKey(runId: runId, rule: .stalled)) }
        if eval.isFiring { keys.append(AlertKey(runId: runId, rule: .evalRegression)) }
        return keys
    }

    /// Resolves every firing alert of the run (it ended), with `reason` as the summary.
    mutating func resolveAll(reason: String, now: Double, into signals: inout [AlertSignal]) {
        for key in firingKeys {
            let severity: AlertSeverity = switch key.rule {
            case .lossSpike: configuration.lossSpike.severity
            case .nonFinite: configuration.nonFinite.severity
            case .accuracyCollapse: configuration.accuracyCollapse.severity
            case .stalled: configuration.stalled.severity
            default: configuration.evalRegression.severity
            }
            signals.append(AlertSignal(transition: .resolve, key: key, severity: severity, summary: reason, worker: worker, time: now))
        }
        for i in series.indices {
            series[i].spike?.resetAlert()
            series[i].collapse?.resetAlert()
            series[i].nonFinite?.reset()
        }
        _ = stall.workerGone()
        eval.resetAlert()
    }
}
