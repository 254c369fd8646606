/// What a status digest says about one active run. The engine fills what it sees
/// (``RulesEngine/snapshots(now:)``); the coordinator adds what only it knows (total steps,
/// GPU telemetry) before calling ``StatusDigest/messages(for:configuration:now:)``.
public struct RunSnapshot: Sendable, Equatable {
    /// One watched loss: its last value and its trend.
    public struct Loss: Sendable, Equatable {
        public var key: String
        public var value: Double
        /// Smoothed value relative to the rolling median, minus 1 (-0.03 = 3 % below): nil early on.
        public var trend: Double?

        public init(key: String, value: Double, trend: Double? = nil) {
            self.key = key
            self.value = value
            self.trend = trend
        }
    }

    public var runId: String
    public var worker: String?
    public var step: Int64?
    public var totalSteps: Int64?
    public var stepsPerSecond: Double?
    public var losses: [Loss]
    /// GPU utilization in percent.
    public var gpuUtilization: Double?
    public var gpuMemoryUsedGB: Double?
    public var gpuMemoryTotalGB: Double?
    public var lastEvalStep: Int64?
    public var lastEvalCER: Double?
    public var bestCER: Double?
    /// Alerts of the run firing now.
    public var firing: [AlertKey]

    public init(runId: String, worker: String? = nil, step: Int64? = nil, totalSteps: Int64? = nil,
                stepsPerSecond: Double? = nil, losses: [Loss] = [], gpuUtilization: Double? = nil,
                gpuMemoryUsedGB: Double? = nil, gpuMemoryTotalGB: Double? = nil, lastEvalStep: Int64? = nil,
                lastEvalCER: Double? = nil, bestCER: Double? = nil, firing: [AlertKey] = []) {
        self.runId = runId
        self.worker = worker
        self.step = step
        self.totalSteps = totalSteps
        self.stepsPerSecond = stepsPerSecond
        self.losses = losses
        self.gpuUtilization = gpuUtilization
        self.gpuMemoryUsedGB = gpuMemoryUsedGB
        self.gpuMemoryTotalGB = gpuMemoryTotalGB
        self.lastEvalStep = lastEvalStep
        self.lastEvalCER = lastEvalCER
        self.bestCER = bestCER
        self.firing = firing
    }

    /// Seconds to `totalSteps` at the current rate, when both are known.
    public var etaSeconds: Double? {
        guard let step, let totalSteps, let rate = stepsPerSecond, rate > 0, totalSteps >= step else { return nil }
        return Double(totalSteps - step) / rate
    }
}

/// `status_digest`: one message per active run. Scheduling (every `interval_minutes`) is the
/// caller's; this only writes the messages.
public enum StatusDigest {
    /// One `notify` signal per snapshot (none when the digest is off).
    public static func messages(for snapshots: [RunSnapshot], configuration: AlertRulesConfiguration.StatusDigest,
                                now: Double) -> [AlertSignal] {
        guard configuration.enabled else { return [] }
        return snapshots.map { message(for: $0, severity: configuration.severity, now: now) }
    }

    static func message(for s: RunSnapshot, severity: AlertSeverity, now: Double) -> AlertSignal {
        var head = "run \(s.runId)"
        var values: [AlertSignal.Value] = []
        if let step = s.step {
            head += ": step \(step)"
            values.append(.init("step", Double(step)))
            if let total = s.totalSteps, total > 0 {
                head += "/\(total) (\(Int((Double(step) / Double(total) * 100).rounded()))%)"
            }
        }
        if let rate = s.stepsPerSecond, rate.isFinite {
            head += ", \(AlertText.number(rate)) steps/s"
            values.append(.init("steps_per_second", rate))
        }
        if let eta = s.etaSeconds { head += ", ETA \(AlertText.duration(eta))" }
        var details: [String] = []
        for loss in s.losses {
            var line = "\(loss.key) \(AlertText.number(loss.value))"
            if let t = loss.trend, t.isFinite { line += " (\(AlertText.percent(t)) vs median)" }
            details.append(line)
            values.append(.init(loss.key, loss.value))
        }
        if s.gpuUtilization != nil || s.gpuMemoryUsedGB != nil {
            var line = "GPU"
            if let u = s.gpuUtilization { line += " \(Int(u.rounded()))%" }
            if let used = s.gpuMemoryUsedGB {
                line += " · \(AlertText.number(used))"
                if let total = s.gpuMemoryTotalGB { line += "/\(AlertText.number(total))" }
                line += " GB"
            }
            details.append(line)
        }
        if let cer = s.lastEvalCER {
            var line = "last eval: CER \(AlertText.number(cer))"
            if let step = s.lastEvalStep { line += " at step \(step)" }
            if let best = s.bestCER { line += " (best \(AlertText.number(best)))" }
            details.append(line)
            values.append(.init("eval/cer", cer))
        }
        if !s.firing.isEmpty {
            details.append("firing: " + s.firing.map { $0.series.isEmpty ? $0.rule.rawValue : "\($0.rule.rawValue) \($0.series)" }.joined(separator: ", "))
        }
        return AlertSignal(transition: .notify, key: AlertKey(runId: s.runId, rule: .statusDigest), severity: severity,
                           summary: head, values: values, details: details, worker: s.worker, step: s.step, time: now)
    }
}
