import Foundation
import Logging
import Shared
import Slack

/// Delivers queued alert notifications to a Slack incoming webhook, exactly once and in order,
/// from the durable outbox (`alert_outbox`).
///
/// - One message at a time, at most one per second (``SlackWebhook`` paces), oldest first; the
///   due notifications of one run and rule (a burst within `group_wait`) go as one message.
/// - Delivered: marked in the same transaction as the alert's notification count. A crash before
///   that re-sends the message after restart (at-least-once at the HTTP boundary; Slack webhooks
///   have no idempotency key), never loses it.
/// - 429: waits `Retry-After`. 5xx and network errors: retried with backoff (1 s doubling to
///   60 s), kept in the outbox across restarts. Slack's refusals (`invalid_payload`,
///   `no_service`, `channel_is_archived` …): reported once with Slack's reason and given up.
/// - The webhook URL is a secret: it is never logged (``SlackWebhookURL`` redacts itself).
public actor AlertNotifier {
    /// Its store reads and writes block (SQLite with fsync): they run on a thread of its own,
    /// never on a thread of the cooperative pool.
    private let executor = DedicatedThreadExecutor(name: "alert-notifier")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    let store: Store
    let webhook: SlackWebhook
    let logger: Logger
    let wandbLink: @Sendable (String) -> String?
    let dashboardLink: @Sendable (String) -> String?
    private nonisolated let wakeups: AsyncStream<Void>.Continuation
    private let wakeupStream: AsyncStream<Void>
    private var reported: Set<String> = []
    private var failingSince: Double?

    public init(store: Store, webhook: SlackWebhook, logger: Logger,
                wandbLink: @escaping @Sendable (String) -> String? = { _ in nil },
                dashboardLink: @escaping @Sendable (String) -> String? = { _ in nil }) {
        self.store = store
        self.webhook = webhook
        self.logger = logger
        self.wandbLink = wandbLink
        self.dashboardLink = dashboardLink
        (wakeupStream, wakeups) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks for a delivery attempt now (something was queued).
    public nonisolated func wake() { wakeups.yield() }

    /// Delivers until cancelled: on every wake-up and at least every 50 ms (group waits end on time; retries).
    public func run() async {
        let ticker = Task { [wakeups] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(50))
                wakeups.yield()
            }
        }
        for await _ in wakeupStream {
            if Task.isCancelled { break }
            await deliverDue()
        }
        ticker.cancel()
    }

    /// Sends every notification that is due, one message at a time.
    func deliverDue() async {
        while !Task.isCancelled {
            let now = Date().timeIntervalSince1970
            let batch: [AlertNotification]
            do {
                batch = try store.nextAlertNotifications(now: now)
            } catch {
                logger.error("alerts: cannot read the notification outbox: \(error)")
                return
            }
            guard !batch.isEmpty else { return }
            let outcome = await webhook.post(message(for: batch))
            let ids = batch.map(\.id)
            let after = Date().timeIntervalSince1970
            do {
                switch outcome {
                case .delivered:
                    try store.markAlertNotificationsDelivered(ids, now: after)
                    if let since = failingSince {
                        logger.notice("Slack: delivering again after \(Int(after - since)) s of failures")
                        failingSince = nil
                    }
                case .rateLimited(let wait):
                    // Not an attempt: Slack asked to wait; the webhook actor pauses every sender.
                    logger.notice("Slack: rate limited, waiting \(wait) as Retry-After asks")
                    try? await Task.sleep(for: wait)
                case .retryable(let error):
                    let attempts = (batch.map(\.attempts).max() ?? 0) + 1
                    let delay = min(60, pow(2, Double(min(attempts - 1, 6))))
                    try store.markAlertNotificationsFailed(ids, error: error.description, retryAt: after + delay)
                    if failingSince == nil {
                        failingSince = after
                        logger.warning("Slack: delivery failed (\(error)); \(batch.count) notification(s) stay queued and are retried with backoff")
                    }
                    return
                case .permanent(let error):
                    try store.markAlertNotificationsFailed(ids, error: error.description, retryAt: nil)
                    if reported.insert(error.code.rawValue).inserted {
                        logger.error("Slack refused an alert message: \(error). It is not retried; the alert stays in `tts-coordinator alerts` and the log. \(error.disposition == .disableWebhook ? "Check the webhook (SLACK_WEBHOOK_URL): Slack says it cannot post there." : "")")
                    }
                }
            } catch {
                logger.error("alerts: cannot record a Slack delivery: \(error)")
                return
            }
        }
    }

    /// One Slack message for a group of notifications (one alert: its own message).
    func message(for batch: [AlertNotification]) -> SlackMessage {
        let messages = batch.map { n -> SlackMessage in
            var signal = n.signal
            if n.kind == "repeat" { signal.summary = "still firing: " + signal.summary }
            let run = signal.key.runId
            return SlackMessage.alert(signal.slackAlert(wandbURL: run.flatMap(wandbLink), dashboardURL: run.flatMap(dashboardLink)))
        }
        guard messages.count > 1 else { return messages[0] }
        let blocks = messages.flatMap { $0.blocks + [.divider] }.dropLast()
        return SlackMessage(text: messages.map(\.text).joined(separator: "\n"), blocks: Array(blocks.prefix(50)))
    }
}
