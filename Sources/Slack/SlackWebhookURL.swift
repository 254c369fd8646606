import Foundation

/// A Slack incoming-webhook URL: a secret (its path is the credential).
///
/// Nothing derived from it shows the path: `description`, `debugDescription`, `dump` and
/// string interpolation give `https://hooks.slack.com/services/•••`. Only the webhook client
/// reads ``secretValue``.
public struct SlackWebhookURL: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The full URL. Pass it to nothing but the HTTP request.
    public let secretValue: String
    /// `scheme://host[:port]`, safe to show.
    public let origin: String
    /// Path segments worth redacting wherever text could echo them.
    let secretParts: [String]

    /// Validates `url` (an `http://` or `https://` URL with a path). The error never repeats it.
    public init(_ url: String) throws(SlackWebhookError) {
        let trimmed = url.trimmingCharacters(in: .whitespacesAndNewlines)
        let lower = trimmed.lowercased()
        guard lower.hasPrefix("https://") || lower.hasPrefix("http://") else {
            throw SlackWebhookError(code: .invalidURL, status: nil, message: "the Slack webhook URL must start with https:// (or http:// for a loopback test server)")
        }
        let afterScheme = trimmed[trimmed.range(of: "://")!.upperBound...]
        guard let slash = afterScheme.firstIndex(of: "/"), afterScheme.index(after: slash) < afterScheme.endIndex else {
            throw SlackWebhookError(code: .invalidURL, status: nil, message: "the Slack webhook URL has no path (expected https://hooks.slack.com/services/…)")
        }
        secretValue = trimmed
        origin = String(trimmed[..<slash])
        let path = afterScheme[slash...]
        secretParts = [trimmed, String(path)] + path.split(whereSeparator: { $0 == "/" || $0 == "?" || $0 == "&" || $0 == "=" })
            .map(String.init).filter { $0.count >= 4 && $0 != "services" }
    }

    public var description: String { "\(origin)/services/•••" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }

    /// `text` with every part of the URL's path replaced by `•••`.
    public func redact(_ text: String) -> String {
        var out = text
        for part in secretParts where out.contains(part) { out = out.replacingOccurrences(of: part, with: "•••") }
        return out
    }
}
