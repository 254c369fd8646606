import Shared

/// Per-job settings of every alert rule, with documented defaults.
///
/// Decoding is lenient: any field left out keeps its default, so a job may write only what it
/// changes, e.g. `{"loss_spike": {"threshold": 2.0}, "status_digest": {"interval_minutes": 0}}`.
/// Keys are snake_case.
public struct AlertRulesConfiguration: Sendable, Equatable, Codable {
    /// `loss_spike`: smoothed value (EMA) vs a baseline (rolling median of a longer window).
    public struct LossSpike: Sendable, Equatable, Codable {
        public var enabled = true
        public var severity = AlertSeverity.warning
        /// Watched losses. Default `train/text_loss`, `train/mel_loss`, `train/loss`.
        public var keys = ["train/text_loss", "train/mel_loss", "train/loss"]
        /// Fires when EMA > `threshold` × median. Default 1.5 (the old monitor's factor).
        public var threshold = 1.5
        /// EMA span in points (α = 2 / (span + 1)). Default 5.
        public var smoothingPoints = 5
        /// Points in the rolling-median baseline. Default 100 (at most 4096).
        public var baselinePoints = 100
        /// Points seen before the rule may fire. Default 50.
        public var warmupPoints = 50
        /// Consecutive points above the threshold before firing. Default 3.
        public var consecutivePoints = 3
        /// Consecutive points back under the threshold before resolving (anti-flapping). Default 20.
        public var resolvePoints = 20

        public init() {}
    }

    /// `non_finite`: NaN or ±Inf in a loss or gradient norm; fires on the first one.
    public struct NonFinite: Sendable, Equatable, Codable {
        public var enabled = true
        public var severity = AlertSeverity.critical
        /// Keys watched exactly. Default the loss keys and `train/grad_norm`.
        public var keys = ["train/text_loss", "train/mel_loss", "train/loss", "train/grad_norm"]
        /// Also watch any key containing one of these. Default `loss`, `grad_norm`.
        public var keysContaining = ["loss", "grad_norm"]
        /// Consecutive finite points before resolving (anti-flapping). Default 10.
        public var resolvePoints = 10

        public init() {}
    }

    /// `accuracy_collapse`: smoothed accuracy < `fraction` × its rolling median.
    public struct AccuracyCollapse: Sendable, Equatable, Codable {
        public var enabled = true
        public var severity = AlertSeverity.warning
        /// Default `train/mel_top1`.
        public var keys = ["train/mel_top1"]
        /// Default 0.5: fires when the accuracy halves.
        public var fraction = 0.5
        public var smoothingPoints = 5
        public var baselinePoints = 100
        public var warmupPoints = 50
        /// Default 5.
        public var consecutivePoints = 5
        /// Default 20.
        public var resolvePoints = 20

        public init() {}
    }

    /// `stalled`: no step progress for max(`stepTimeMultiple` × median step time, `floorSeconds`)
    /// while the worker heartbeats (at most `heartbeatFreshSeconds` ago).
    public struct Stalled: Sendable, Equatable, Codable {
        public var enabled = true
        public var severity = AlertSeverity.critical
        /// K. Default 30 median step times.
        public var stepTimeMultiple = 30.0
        /// Default 600 s (checkpoint saves and evals pause training for minutes).
        public var floorSeconds = 600.0
        /// A heartbeat older than this means the worker is not "still heartbeating". Default 30 s.
        public var heartbeatFreshSeconds = 30.0

        public init() {}
    }

    /// A one-shot rule with only a switch and a severity (`oom`, `worker_lost`, `run_completed`).
    public struct Simple: Sendable, Equatable, Codable {
        public var enabled = true
        public var severity: AlertSeverity

        public init(severity: AlertSeverity) { self.severity = severity }
    }

    /// `shard_failed`, with the last log lines.
    public struct ShardFailed: Sendable, Equatable, Codable {
        public var enabled = true
        /// When the shard will be retried. Default warning.
        public var severity = AlertSeverity.warning
        /// When the retry budget is spent. Default critical.
        public var finalSeverity = AlertSeverity.critical
        /// Log lines kept in the alert. Default 20.
        public var logLines = 20

        public init() {}
    }

    /// `eval_regression`: CER > best + max(`absoluteMargin`, `relativeMargin` × best).
    public struct EvalRegression: Sendable, Equatable, Codable {
        public var enabled = true
        public var severity = AlertSeverity.warning
        /// Metric keys carrying an eval CER. Default `eval/cer`.
        public var keys = ["eval/cer"]
        /// Default 0.005 (half a CER point).
        public var absoluteMargin = 0.005
        /// Default 0.10 (10 % worse than the best).
        public var relativeMargin = 0.10
        /// The key of the ASR floor's CER (the test set's own audio through the same ASR),
        /// stored with the evaluation's scores at the same step. Default `eval/asr_floor_cer`.
        public var floorKey = "eval/asr_floor_cer"
        /// Above this floor CER the ASR cannot read the test set's own audio, so CER does not
        /// measure the model there: such an evaluation's CER is ignored by this rule.
        /// Default 0.5 (50 %).
        public var maxFloorCer = 0.5

        public init() {}
    }

    /// `status_digest`: one message per active run every `intervalMinutes` (0 = off).
    public struct StatusDigest: Sendable, Equatable, Codable {
        /// Default 60.
        public var intervalMinutes = 60.0
        public var severity = AlertSeverity.info

        public init() {}

        public var enabled: Bool { intervalMinutes > 0 }
    }

    public var lossSpike = LossSpike()
    public var nonFinite = NonFinite()
    public var accuracyCollapse = AccuracyCollapse()
    public var stalled = Stalled()
    /// Default warning (the shard is retried with a smaller micro-batch).
    public var oom = Simple(severity: .warning)
    /// Default critical.
    public var workerLost = Simple(severity: .critical)
    public var shardFailed = ShardFailed()
    /// Default info.
    public var runCompleted = Simple(severity: .info)
    public var evalRegression = EvalRegression()
    public var statusDigest = StatusDigest()
    /// Default warning.
    public var diskLow = Simple(severity: .warning)
    /// Default critical (the shard is stopped and fails).
    public var resumeMismatch = Simple(severity: .critical)

    /// Every rule on, with the defaults documented on each field.
    public init() {}

    private enum CodingKeys: String, CodingKey, CaseIterable {
        case lossSpike = "loss_spike", nonFinite = "non_finite", accuracyCollapse = "accuracy_collapse", stalled, oom
        case workerLost = "worker_lost", shardFailed = "shard_failed", runCompleted = "run_completed"
        case evalRegression = "eval_regression", statusDigest = "status_digest"
        case diskLow = "disk_low", resumeMismatch = "resume_mismatch"
    }

    /// The rule names an `alerts:` object may hold.
    public static let ruleNames: [String] = CodingKeys.allCases.map(\.rawValue)

    /// A run's `alerts:` object as written in its job spec: every key must name a rule and every
    /// setting must have its type. - Throws: ``InvalidSettings`` naming the first bad field.
    public static func validated(_ settings: [String: JSONValue]) throws(InvalidSettings) -> AlertRulesConfiguration {
        for rule in settings.keys.sorted() where !ruleNames.contains(rule) {
            throw InvalidSettings(field: "alerts.\(rule)", message: "unknown rule; the rules are \(ruleNames.joined(separator: ", "))")
        }
        func field(_ context: DecodingError.Context) -> String {
            "alerts" + context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }.joined()
        }
        do {
            return try JSONCoding.decode(AlertRulesConfiguration.self, from: try JSONCoding.encode(settings))
        } catch let DecodingError.typeMismatch(type, context), let DecodingError.valueNotFound(type, context) {
            let expected = type == Double.self || type == Int.self ? "a number" : type == Bool.self ? "true or false" : type == String.self ? "text" : "\(type)"
            throw InvalidSettings(field: field(context), message: "expected \(expected)")
        } catch let DecodingError.dataCorrupted(context) {
            throw InvalidSettings(field: field(context), message: context.debugDescription)
        } catch {
            throw InvalidSettings(field: "alerts", message: "\(error)")
        }
    }

    /// A job's `alerts:` section that the rules cannot use.
    public struct InvalidSettings: Error, CustomStringConvertible, Sendable {
        /// The dotted path of the bad setting (`alerts.stalled.floor_seconds`).
        public let field: String
        public let message: String
        public var description: String { "\(field): \(message)" }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = AlertRulesConfiguration()
        lossSpike = try c.decodeIfPresent(LossSpike.self, forKey: .lossSpike) ?? d.lossSpike
        nonFinite = try c.decodeIfPresent(NonFinite.self, forKey: .nonFinite) ?? d.nonFinite
        accuracyCollapse = try c.decodeIfPresent(AccuracyCollapse.self, forKey: .accuracyCollapse) ?? d.accuracyCollapse
        stalled = try c.decodeIfPresent(Stalled.self, forKey: .stalled) ?? d.stalled
        oom = try c.decodeIfPresent(SimplePatch.self, forKey: .oom)?.applied(to: d.oom) ?? d.oom
        workerLost = try c.decodeIfPresent(SimplePatch.self, forKey: .workerLost)?.applied(to: d.workerLost) ?? d.workerLost
        shardFailed = try c.decodeIfPresent(ShardFailed.self, forKey: .shardFailed) ?? d.shardFailed
        runCompleted = try c.decodeIfPresent(SimplePatch.self, forKey: .runCompleted)?.applied(to: d.runCompleted) ?? d.runCompleted
        evalRegression = try c.decodeIfPresent(EvalRegression.self, forKey: .evalRegression) ?? d.evalRegression
        statusDigest = try c.decodeIfPresent(StatusDigest.self, forKey: .statusDigest) ?? d.statusDigest
        diskLow = try c.decodeIfPresent(SimplePatch.self, forKey: .diskLow)?.applied(to: d.diskLow) ?? d.diskLow
        resumeMismatch = try c.decodeIfPresent(SimplePatch.self, forKey: .resumeMismatch)?.applied(to: d.resumeMismatch) ?? d.resumeMismatch
    }
}

// MARK: - Lenient decoding of each rule (absent fields keep their defaults)

extension KeyedDecodingContainer {
    fileprivate func field<T: Decodable>(_ key: Key, _ fallback: T) throws -> T {
        try decodeIfPresent(T.self, forKey: key) ?? fallback
    }
}

extension AlertRulesConfiguration.LossSpike {
    private enum CodingKeys: String, CodingKey {
        case enabled, severity, keys, threshold, smoothingPoints = "smoothing_points", baselinePoints = "baseline_points"
        case warmupPoints = "warmup_points", consecutivePoints = "consecutive_points", resolvePoints = "resolve_points"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        enabled = try c.field(.enabled, d.enabled)
        severity = try c.field(.severity, d.severity)
        keys = try c.field(.keys, d.keys)
        threshold = try c.field(.threshold, d.threshold)
        smoothingPoints = try c.field(.smoothingPoints, d.smoothingPoints)
        baselinePoints = try c.field(.baselinePoints, d.baselinePoints)
        warmupPoints = try c.field(.warmupPoints, d.warmupPoints)
        consecutivePoints = try c.field(.consecutivePoints, d.consecutivePoints)
        resolvePoints = try c.field(.resolvePoints, d.resolvePoints)
    }
}

extension AlertRulesConfiguration.NonFinite {
    private enum CodingKeys: String, CodingKey {
        case enabled, severity, keys, keysContaining = "keys_containing", resolvePoints = "resolve_points"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        enabled = try c.field(.enabled, d.enabled)
        severity = try c.field(.severity, d.severity)
        keys = try c.field(.keys, d.keys)
        keysContaining = try c.field(.keysContaining, d.keysContaining)
        resolvePoints = try c.field(.resolvePoints, d.resolvePoints)
    }
}

extension AlertRulesConfiguration.AccuracyCollapse {
    private enum CodingKeys: String, CodingKey {
        case enabled, severity, keys, fraction, smoothingPoints = "smoothing_points", baselinePoints = "baseline_points"
        case warmupPoints = "warmup_points", consecutivePoints = "consecutive_points", resolvePoints = "resolve_points"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        enabled = try c.field(.enabled, d.enabled)
        severity = try c.field(.severity, d.severity)
        keys = try c.field(.keys, d.keys)
        fraction = try c.field(.fraction, d.fraction)
        smoothingPoints = try c.field(.smoothingPoints, d.smoothingPoints)
        baselinePoints = try c.field(.baselinePoints, d.baselinePoints)
        warmupPoints = try c.field(.warmupPoints, d.warmupPoints)
        consecutivePoints = try c.field(.consecutivePoints, d.consecutivePoints)
        resolvePoints = try c.field(.resolvePoints, d.resolvePoints)
    }
}

extension AlertRulesConfiguration.Stalled {
    private enum CodingKeys: String, CodingKey {
        case enabled, severity, stepTimeMultiple = "step_time_multiple", floorSeconds = "floor_seconds"
        case heartbeatFreshSeconds = "heartbeat_fresh_seconds"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        enabled = try c.field(.enabled, d.enabled)
        severity = try c.field(.severity, d.severity)
        stepTimeMultiple = try c.field(.stepTimeMultiple, d.stepTimeMultiple)
        floorSeconds = try c.field(.floorSeconds, d.floorSeconds)
        heartbeatFreshSeconds = try c.field(.heartbeatFreshSeconds, d.heartbeatFreshSeconds)
    }
}

/// `{enabled?, severity?}` applied over a rule's own defaults (their severities differ).
private struct SimplePatch: Decodable {
    var enabled: Bool?
    var severity: AlertSeverity?

    func applied(to base: AlertRulesConfiguration.Simple) -> AlertRulesConfiguration.Simple {
        var r = base
        if let enabled { r.enabled = enabled }
        if let severity { r.severity = severity }
        return r
    }
}

extension AlertRulesConfiguration.ShardFailed {
    private enum CodingKeys: String, CodingKey {
        case enabled, severity, finalSeverity = "final_severity", logLines = "log_lines"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        enabled = try c.field(.enabled, d.enabled)
        severity = try c.field(.severity, d.severity)
        finalSeverity = try c.field(.finalSeverity, d.finalSeverity)
        logLines = try c.field(.logLines, d.logLines)
    }
}

extension AlertRulesConfiguration.EvalRegression {
    private enum CodingKeys: String, CodingKey {
        case enabled, severity, keys, absoluteMargin = "absolute_margin", relativeMargin = "relative_margin"
        case floorKey = "floor_key", maxFloorCer = "max_floor_cer"
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        enabled = try c.field(.enabled, d.enabled)
        severity = try c.field(.severity, d.severity)
        keys = try c.field(.keys, d.keys)
        absoluteMargin = try c.field(.absoluteMargin, d.absoluteMargin)
        relativeMargin = try c.field(.relativeMargin, d.relativeMargin)
        floorKey = try c.field(.floorKey, d.floorKey)
        maxFloorCer = try c.field(.maxFloorCer, d.maxFloorCer)
    }
}

extension AlertRulesConfiguration.StatusDigest {
    private enum CodingKeys: String, CodingKey { case intervalMinutes = "interval_minutes", severity }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Self()
        intervalMinutes = try c.field(.intervalMinutes, d.intervalMinutes)
        severity = try c.field(.severity, d.severity)
    }
}
