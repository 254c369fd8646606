/// The identity of an alert and its grouping key: (run, rule, series).
///
/// `series` is the metric key for metric rules (`train/text_loss`), the worker name for
/// `worker_lost`, the shard for `oom` and `shard_failed`, and empty for run-wide rules
/// (`stalled`, `run_completed`, `eval_regression`, `status_digest`). `runId` is nil for facts
/// that belong to no run (a lost idle worker).
public struct AlertKey: Sendable, Hashable, Codable, CustomStringConvertible {
    public var runId: String?
    public var rule: AlertRule
    public var series: String

    public init(runId: String?, rule: AlertRule, series: String = "") {
        self.runId = runId
        self.rule = rule
        self.series = series
    }

    /// A stable text form, `run|rule|series` (`-` for no run): the key to store alert state under.
    public var fingerprint: String { "\(runId ?? "-")|\(rule.rawValue)|\(series)" }

    public var description: String { fingerprint }
}
