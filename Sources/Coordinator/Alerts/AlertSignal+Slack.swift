import Shared
import Slack

extension AlertSignal {
    /// The signal as a ``SlackAlert`` for ``SlackMessage/alert(_:)``, with links to the run on
    /// W&B and on the dashboard when the caller knows them.
    public func slackAlert(wandbURL: String? = nil, dashboardURL: String? = nil) -> SlackAlert {
        let status: SlackAlert.Status = switch transition {
        case .fire: .firing
        case .resolve: .resolved
        case .notify: .notice
        }
        var fields = values.prefix(6).map { SlackAlert.Field($0.name, AlertText.number($0.value)) }
        if !key.series.isEmpty && key.series != worker && !values.contains(where: { $0.name == key.series }) {
            fields.insert(SlackAlert.Field("series", key.series), at: 0)
        }
        return SlackAlert(rule: key.rule.rawValue, status: status, severity: severity.rawValue, summary: summary,
                          runId: key.runId, worker: worker, step: step, fields: Array(fields), details: details,
                          wandbURL: wandbURL, dashboardURL: dashboardURL)
    }
}
