/// The facts of one alert notification, independent of the rules engine: what the Slack
/// builder (``SlackMessage/alert(_:)``) renders.
public struct SlackAlert: Sendable, Equatable {
    public enum Status: String, Sendable {
        case firing
        case resolved
        /// A one-shot notice (OOM, shard failed, run completed, digest).
        case notice
    }

    /// One labelled value, already formatted.
    public struct Field: Sendable, Equatable {
        public var name: String
        public var value: String

        public init(_ name: String, _ value: String) {
            self.name = name
            self.value = value
        }
    }

    /// The rule's name, e.g. `loss_spike`.
    public var rule: String
    public var status: Status
    /// `critical`, `warning` or `info`.
    public var severity: String
    /// One line, e.g. `train/text_loss spiked to 4.1 (2.0× its median 2.05) at step 12345`.
    public var summary: String
    public var runId: String?
    public var worker: String?
    public var step: Int64?
    public var fields: [Field]
    /// Extra lines (log tail, digest body), shown as a code block.
    public var details: [String]
    public var wandbURL: String?
    public var dashboardURL: String?

    public init(rule: String, status: Status, severity: String, summary: String, runId: String? = nil, worker: String? = nil,
                step: Int64? = nil, fields: [Field] = [], details: [String] = [], wandbURL: String? = nil, dashboardURL: String? = nil) {
        self.rule = rule
        self.status = status
        self.severity = severity
        self.summary = summary
        self.runId = runId
        self.worker = worker
        self.step = step
        self.fields = fields
        self.details = details
        self.wandbURL = wandbURL
        self.dashboardURL = dashboardURL
    }
}

extension SlackMessage {
    /// An alert as a Block Kit message: a header with severity and rule, the summary, fields
    /// (run, worker, step, values), the details as a code block, and links to the run on W&B
    /// and on the dashboard; `text` carries the same in one plain line.
    public static func alert(_ a: SlackAlert) -> SlackMessage {
        let icon: String
        switch (a.status, a.severity) {
        case (.resolved, _): icon = "✅"
        case (_, "critical"): icon = "🔴"
        case (_, "warning"): icon = "🟠"
        default: icon = "🔵"
        }
        let state = a.status == .resolved ? "RESOLVED" : a.severity.uppercased()
        let run = a.runId.map { " · run \($0)" } ?? ""
        let header = "\(icon) [\(state)] \(a.rule)\(run)"

        var fields: [String] = []
        if let runId = a.runId { fields.append("*Run*\n\(escape(runId))") }
        if let worker = a.worker { fields.append("*Worker*\n\(escape(worker))") }
        if let step = a.step { fields.append("*Step*\n\(step)") }
        for f in a.fields { fields.append("*\(escape(f.name))*\n\(escape(f.value))") }

        var blocks: [Block] = [.header(header), .section(text: escape(a.summary), fields: Array(fields.prefix(10)))]
        if !a.details.isEmpty {
            // Keep the end of a log tail: the last lines matter most.
            var body = a.details.joined(separator: "\n").replacingAll("```", with: "'''")
            if body.count > 2_900 { body = "…" + String(body.suffix(2_900)) }
            blocks.append(.section(text: "```\(escape(body))```"))
        }
        var links: [Link] = []
        if let url = a.wandbURL { links.append(Link(title: "Run on W&B", url: url)) }
        if let url = a.dashboardURL { links.append(Link(title: "Dashboard", url: url)) }
        if !links.isEmpty { blocks.append(.links(links)) }

        var text = "[\(state)] \(a.rule)\(run): \(a.summary)"
        if let worker = a.worker { text += " (worker \(worker))" }
        return SlackMessage(text: text, blocks: blocks)
    }
}

extension String {
    /// Replaces every occurrence of a non-empty `target`.
    fileprivate func replacingAll(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
