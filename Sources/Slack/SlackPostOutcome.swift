import CurlHTTP
import Foundation

/// The result of one POST to a Slack incoming webhook, classified per Slack's contract
/// (body string first, status second).
public enum SlackPostOutcome: Sendable, Equatable, CustomStringConvertible {
    /// HTTP 200 with the body `ok`.
    case delivered
    /// HTTP 429: wait `retryAfter` (the `Retry-After` header) and pause the whole webhook.
    case rateLimited(retryAfter: Duration)
    /// 5xx, `rollup_error`, network errors: retry with backoff.
    case retryable(SlackWebhookError)
    /// Slack refused the message or the webhook: do not retry (see ``SlackWebhookError/disposition``).
    case permanent(SlackWebhookError)

    /// The delay used when a 429 carries no usable `Retry-After`.
    public static let defaultRetryAfter: Duration = .seconds(1)

    /// Classifies a response.
    public init(response: HTTPResponse, now: Date = Date()) {
        let body = response.bodyText.trimmingCharacters(in: .whitespacesAndNewlines)
        let status = response.status
        if status == 429 {
            self = .rateLimited(retryAfter: Self.retryAfter(response.headers["Retry-After"], now: now))
            return
        }
        if status == 200 && body == "ok" {
            self = .delivered
            return
        }
        if let known = Self.explanations[body] {
            let error = SlackWebhookError(code: .init(rawValue: body), status: status, message: known)
            self = error.isRetryable ? .retryable(error) : .permanent(error)
            return
        }
        let snippet = Self.snippet(body)
        switch status {
        case 500...599, 408:
            self = .retryable(SlackWebhookError(code: .serverError, status: status, message: "Slack answered \(status)\(snippet); retrying with backoff"))
        case 200...299:
            self = .permanent(SlackWebhookError(code: .unexpectedResponse, status: status,
                                                message: "Slack answered \(status) without `ok`\(snippet); the message may not have been posted"))
        case 403, 404, 410, 300...399:
            // Unknown body, but these statuses mean the webhook itself is unusable.
            self = .permanent(SlackWebhookError(code: .unexpectedResponse, status: status,
                                                message: "Slack refused the webhook (\(status))\(snippet); check that the incoming webhook still exists",
                                                disposition: .disableWebhook))
        default:
            self = .permanent(SlackWebhookError(code: .unexpectedResponse, status: status, message: "Slack refused the message (\(status))\(snippet)"))
        }
    }

    /// Classifies a transfer that got no response.
    public init(error: HTTPError) {
        switch error {
        case .cancelled, .shutdown:
            self = .retryable(SlackWebhookError(code: .cancelled, status: nil, message: "the POST was abandoned (\(error)); the message was not confirmed"))
        case .transport, .invalidRequest:
            let e = SlackWebhookError(code: .transport, status: nil, message: "no response from Slack: \(error)")
            self = error.isPermanent ? .permanent(e) : .retryable(e)
        }
    }

    /// The error of a non-delivered outcome.
    public var error: SlackWebhookError? {
        switch self {
        case .delivered: nil
        case .rateLimited(let d):
            SlackWebhookError(code: .rateLimited, status: 429, message: "rate limited by Slack; retry after \(Self.seconds(d)) s")
        case .retryable(let e), .permanent(let e): e
        }
    }

    public var description: String {
        switch self {
        case .delivered: "delivered"
        case .rateLimited(let d): "rate limited (retry after \(Self.seconds(d)) s)"
        case .retryable(let e): "retryable: \(e)"
        case .permanent(let e): "permanent: \(e)"
        }
    }

    /// `Retry-After`: delay-seconds or an HTTP date; missing or unreadable → 1 s; at most 1 h.
    public static func retryAfter(_ value: String?, now: Date = Date()) -> Duration {
        guard let raw = value?.trimmingCharacters(in: .whitespaces), !raw.isEmpty else { return defaultRetryAfter }
        if let seconds = Double(raw), seconds.isFinite {
            return .milliseconds(Int64(min(3600, max(0, seconds)) * 1000))
        }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        if let date = f.date(from: raw) {
            return .milliseconds(Int64(min(3600, max(0, date.timeIntervalSince(now))) * 1000))
        }
        return defaultRetryAfter
    }

    static func seconds(_ d: Duration) -> String {
        let (s, atto) = d.components
        let ms = Int64(s) * 1000 + atto / 1_000_000_000_000_000
        return ms % 1000 == 0 ? "\(ms / 1000)" : String(format: "%.3f", Double(ms) / 1000)
    }

    /// ` ("body")` for an undocumented body, short and printable; empty for an empty body.
    static func snippet(_ body: String) -> String {
        guard !body.isEmpty else { return "" }
        let printable = body.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }
        var text = String(String.UnicodeScalarView(printable.prefix(120)))
        if printable.count > 120 { text += "…" }
        return " (\"\(text)\")"
    }

    /// Slack's documented error strings and what they mean for us.
    static let explanations: [String: String] = [
        "invalid_payload": "Slack could not parse the message (malformed JSON or blocks); it will not be retried",
        "user_not_found": "the message addressed an unknown user; it will not be retried",
        "no_text": "the message had no text; it will not be retried",
        "too_many_attachments": "the message had too many attachments; it will not be retried",
        "invalid_blocks": "Slack refused the message's blocks; it will not be retried",
        "invalid_blocks_format": "Slack refused the message's blocks; it will not be retried",
        "msg_blocks_too_long": "the message's blocks are too long; it will not be retried",
        "invalid_attachments": "Slack refused the message's attachments; it will not be retried",
        "action_prohibited": "a workspace admin restricted posting through this webhook; fix the Slack app's permissions",
        "invalid_token": "the webhook's token is invalid (revoked?); create a new incoming webhook",
        "posting_to_general_channel_denied": "only admins may post to this channel; choose another channel for the webhook",
        "team_disabled": "the Slack workspace is disabled",
        "channel_not_found": "the webhook's channel no longer exists; create a new incoming webhook",
        "no_service": "the webhook is disabled, removed or invalid; create a new incoming webhook",
        "channel_is_archived": "the webhook's channel is archived; unarchive it or create a new incoming webhook",
        "rollup_error": "Slack had an internal error; retrying with backoff",
    ]
}
