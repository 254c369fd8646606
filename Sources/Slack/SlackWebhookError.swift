/// Why a Slack webhook POST did not deliver a message. Its ``message`` never contains the
/// webhook URL or any part of its path.
public struct SlackWebhookError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Slack's error strings (the response body of a failed webhook POST), plus our own codes.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        // Our payload was refused (400): don't retry the same payload.
        public static let invalidPayload = Code(rawValue: "invalid_payload")
        public static let userNotFound = Code(rawValue: "user_not_found")
        public static let noText = Code(rawValue: "no_text")
        public static let tooManyAttachments = Code(rawValue: "too_many_attachments")
        public static let invalidBlocks = Code(rawValue: "invalid_blocks")
        public static let invalidBlocksFormat = Code(rawValue: "invalid_blocks_format")
        public static let messageBlocksTooLong = Code(rawValue: "msg_blocks_too_long")
        public static let invalidAttachments = Code(rawValue: "invalid_attachments")
        // The webhook itself is refused (403/404/410): nothing will get through until an admin acts.
        public static let actionProhibited = Code(rawValue: "action_prohibited")
        public static let invalidToken = Code(rawValue: "invalid_token")
        public static let postingToGeneralChannelDenied = Code(rawValue: "posting_to_general_channel_denied")
        public static let teamDisabled = Code(rawValue: "team_disabled")
        public static let channelNotFound = Code(rawValue: "channel_not_found")
        public static let noService = Code(rawValue: "no_service")
        public static let channelIsArchived = Code(rawValue: "channel_is_archived")
        // Slack's side (500): retry.
        public static let rollupError = Code(rawValue: "rollup_error")
        // Ours.
        /// HTTP 429.
        public static let rateLimited = Code(rawValue: "rate_limited")
        /// HTTP 5xx (or 408) without a known error string.
        public static let serverError = Code(rawValue: "server_error")
        /// No HTTP response: connection refused, timeout, TLS …
        public static let transport = Code(rawValue: "transport_error")
        /// A status or body Slack does not document (a 200 whose body is not `ok`, an unknown 4xx).
        public static let unexpectedResponse = Code(rawValue: "unexpected_response")
        /// The configured URL is not usable.
        public static let invalidURL = Code(rawValue: "invalid_url")
        public static let cancelled = Code(rawValue: "cancelled")

        public var description: String { rawValue }
    }

    /// What the sender should do about it.
    public enum Disposition: String, Sendable, Equatable {
        /// Try again later (with backoff; after `Retry-After` for 429).
        case retry
        /// This message will never be accepted: drop it (and count it), keep the webhook.
        case dropMessage
        /// The webhook is disabled, removed, archived or forbidden: stop sending to it and tell a human.
        case disableWebhook
    }

    public var code: Code
    /// The HTTP status, when there was a response.
    public var status: Int?
    /// A sentence for humans and logs, without the URL.
    public var message: String

    /// What the sender should do about it.
    public var disposition: Disposition

    /// - Parameter disposition: nil = the code's usual one (``defaultDisposition(for:)``).
    public init(code: Code, status: Int?, message: String, disposition: Disposition? = nil) {
        self.code = code
        self.status = status
        self.message = message
        self.disposition = disposition ?? Self.defaultDisposition(for: code)
    }

    /// Retry for rate limits, server and network errors; disable the webhook for Slack's
    /// webhook-level refusals; drop the message otherwise.
    public static func defaultDisposition(for code: Code) -> Disposition {
        switch code {
        case .rateLimited, .serverError, .transport, .rollupError, .cancelled: .retry
        case .actionProhibited, .invalidToken, .postingToGeneralChannelDenied, .teamDisabled, .channelNotFound,
             .noService, .channelIsArchived, .invalidURL: .disableWebhook
        default: .dropMessage
        }
    }

    public var isRetryable: Bool { disposition == .retry }

    public var description: String {
        let status = self.status.map { "HTTP \($0) " } ?? ""
        return "Slack webhook \(status)\(code): \(message)"
    }
}
