/// What the rules engine emits: an alert started firing, stopped firing, or a one-shot notice.
///
/// The engine decides *what* happened; grouping, `group_wait`, repeats, silences and delivery
/// are the notifier's business. Every `fire` of a key is followed by at most one `resolve` of
/// the same key before the next `fire`.
public struct AlertSignal: Sendable, Equatable, Codable, CustomStringConvertible {
    /// The lifecycle step this signal stands for.
    public enum Transition: String, Sendable, Codable {
        /// The condition started to hold (after the rule's debouncing).
        case fire
        /// The condition stopped holding (after the rule's resolve hold).
        case resolve
        /// A one-shot fact with nothing to resolve (OOM, shard failed, run completed, digest).
        case notify
    }

    /// One named number shown with an alert (the loss, its baseline, the ratio …).
    public struct Value: Sendable, Equatable, Codable, CustomStringConvertible {
        public var name: String
        /// NaN and ±Inf are kept (a non-finite loss is the point of `non_finite`).
        public var value: Double

        public init(_ name: String, _ value: Double) {
            self.name = name
            self.value = value
        }

        // JSON has no NaN/Inf: non-finite values travel as the strings "NaN", "+Inf", "-Inf".
        private enum CodingKeys: String, CodingKey { case name, value }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            if let d = try? c.decode(Double.self, forKey: .value) {
                value = d
            } else {
                switch try c.decode(String.self, forKey: .value) {
                case "+Inf", "Inf", "inf": value = .infinity
                case "-Inf", "-inf": value = -.infinity
                default: value = .nan
                }
            }
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: CodingKeys.self)
            try c.encode(name, forKey: .name)
            if value.isFinite { try c.encode(value, forKey: .value) } else { try c.encode(AlertText.number(value), forKey: .value) }
        }

        public static func == (a: Value, b: Value) -> Bool {
            a.name == b.name && (a.value == b.value || (a.value.isNaN && b.value.isNaN))
        }

        public var description: String { "\(name)=\(AlertText.number(value))" }
    }

    public var transition: Transition
    public var key: AlertKey
    public var severity: AlertSeverity
    /// One line for humans, e.g. `train/text_loss spiked to 4.1 (2.0× its median 2.05) at step 12345`.
    public var summary: String
    public var values: [Value]
    /// Extra lines: the last log lines of a failed shard, a digest's body.
    public var details: [String]
    /// The worker serving the run when the signal was made, when known.
    public var worker: String?
    /// The training step the signal refers to, when there is one.
    public var step: Int64?
    /// The engine clock (`now` of the call that produced it), in seconds.
    public var time: Double

    public init(transition: Transition, key: AlertKey, severity: AlertSeverity, summary: String,
                values: [Value] = [], details: [String] = [], worker: String? = nil, step: Int64? = nil, time: Double) {
        self.transition = transition
        self.key = key
        self.severity = severity
        self.summary = summary
        self.values = values
        self.details = details
        self.worker = worker
        self.step = step
        self.time = time
    }

    public var rule: AlertRule { key.rule }

    public var description: String { "\(transition.rawValue) \(key.fingerprint) [\(severity)] \(summary)" }
}
