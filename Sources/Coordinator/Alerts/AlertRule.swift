/// The rules of the alerts engine; the raw value is the rule's name in configuration, in
/// alert keys and in messages.
public enum AlertRule: String, Sendable, Codable, CaseIterable, CustomStringConvertible {
    /// A watched loss jumped well above its recent baseline (smoothed value vs rolling median).
    case lossSpike = "loss_spike"
    /// NaN or ±Inf in a loss or gradient norm.
    case nonFinite = "non_finite"
    /// `train/mel_top1` (or another watched accuracy) fell below a fraction of its recent median.
    case accuracyCollapse = "accuracy_collapse"
    /// A running shard's step has not advanced for a long time while its worker still heartbeats.
    case stalled
    /// A runner reported CUDA out-of-memory.
    case oom
    /// A worker stopped heartbeating and was declared lost.
    case workerLost = "worker_lost"
    /// A shard attempt failed.
    case shardFailed = "shard_failed"
    /// A run finished.
    case runCompleted = "run_completed"
    /// An evaluation's CER is worse than the run's best by more than a margin.
    case evalRegression = "eval_regression"
    /// The periodic per-run status message.
    case statusDigest = "status_digest"
    /// The checkpoint volume of a run is nearly full (a pin would leave no room for the trainer's
    /// next save, or was refused).
    case diskLow = "disk_low"
    /// A resumed trainer said it started from another step than the cluster asked for.
    case resumeMismatch = "resume_mismatch"

    public var description: String { rawValue }
}

/// How urgent an alert is.
public enum AlertSeverity: String, Sendable, Codable, CaseIterable, Comparable, CustomStringConvertible {
    case info
    case warning
    case critical

    private var rank: Int {
        switch self {
        case .info: 0
        case .warning: 1
        case .critical: 2
        }
    }

    public static func < (a: AlertSeverity, b: AlertSeverity) -> Bool { a.rank < b.rank }

    public var description: String { rawValue }
}
