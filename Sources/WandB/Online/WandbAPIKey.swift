import Foundation

/// A W&B API key. It never shows itself: `description`, `debugDescription`, `dump` and string
/// interpolation all print `WandbAPIKey(<redacted>)`; only the `Authorization` header value
/// the client builds contains it (base64-encoded).
public struct WandbAPIKey: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    private let secret: String

    /// nil for an empty key or one with whitespace or control characters inside (it would break
    /// the header). Surrounding whitespace (a trailing newline from a file) is trimmed.
    public init?(_ raw: String) {
        let trimmed = raw.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !trimmed.isEmpty,
              !trimmed.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F }) else { return nil }
        secret = trimmed
    }

    /// Key length in characters (classic W&B keys have 40), for diagnostics without the key.
    public var length: Int { secret.count }

    public var description: String { "WandbAPIKey(<redacted>)" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }

    /// `Basic base64("api:" + key)` (wandb-core `apiKeyCredentialProvider.apply`).
    var basicAuthorization: String { "Basic " + Data("api:\(secret)".utf8).base64EncodedString() }

    /// `text` with every occurrence of the key (raw or inside the Basic credential) replaced by
    /// `<redacted>`: applied to anything from the network before it reaches an error or a log.
    public func redact(_ text: String) -> String {
        var out = text.replacingOccurrences(of: secret, with: "<redacted>")
        let b64 = Data("api:\(secret)".utf8).base64EncodedString()
        out = out.replacingOccurrences(of: b64, with: "<redacted>")
        return out
    }
}
