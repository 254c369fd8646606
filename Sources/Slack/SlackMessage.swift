import Foundation
import Shared

/// A Slack message for an incoming webhook: Block Kit blocks plus the plain-text `text` that
/// Slack shows in notifications and clients without blocks (always set).
///
/// Slack's limits are applied when encoding: `text` ≤ 3,000 characters here (Slack truncates
/// at 40,000), at most 50 blocks, section text ≤ 3,000, header ≤ 150, ≤ 10 fields of ≤ 2,000.
public struct SlackMessage: Sendable, Equatable {
    /// One Block Kit block.
    public enum Block: Sendable, Equatable {
        /// Large bold plain text.
        case header(String)
        /// `mrkdwn` text, with optional two-column `mrkdwn` fields.
        case section(text: String, fields: [String] = [])
        /// Small grey `mrkdwn` lines.
        case context([String])
        case divider
        /// Link buttons.
        case links([Link])
    }

    /// A button that opens a URL.
    public struct Link: Sendable, Equatable {
        public var title: String
        public var url: String

        public init(title: String, url: String) {
            self.title = title
            self.url = url
        }
    }

    public var text: String
    public var blocks: [Block]

    public init(text: String, blocks: [Block] = []) {
        self.text = text
        self.blocks = blocks
    }

    /// Escapes `&`, `<` and `>` for `mrkdwn` (Slack's control characters), e.g. in run names.
    public static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            default: out.append(c)
            }
        }
        return out
    }

    /// The request body: `{"text": …, "blocks": […]}` as UTF-8 JSON.
    public func jsonBody() -> [UInt8] {
        var object: [String: JSONValue] = ["text": .string(Self.clip(text, 3000))]
        if !blocks.isEmpty { object["blocks"] = .array(blocks.prefix(50).map(Self.json)) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? Array(encoder.encode(JSONValue.object(object)))) ?? Array(#"{"text":"(unencodable message)"}"#.utf8)
    }

    private static func json(_ block: Block) -> JSONValue {
        func text(_ type: String, _ s: String, _ limit: Int) -> JSONValue {
            .object(["type": .string(type), "text": .string(clip(s, limit))])
        }
        switch block {
        case .header(let s):
            return .object(["type": .string("header"), "text": text("plain_text", s, 150)])
        case .section(let s, let fields):
            var o: [String: JSONValue] = ["type": .string("section"), "text": text("mrkdwn", s.isEmpty ? " " : s, 3000)]
            if !fields.isEmpty { o["fields"] = .array(fields.prefix(10).map { text("mrkdwn", $0, 2000) }) }
            return .object(o)
        case .context(let lines):
            return .object(["type": .string("context"), "elements": .array(lines.prefix(10).map { text("mrkdwn", $0, 2000) })])
        case .divider:
            return .object(["type": .string("divider")])
        case .links(let links):
            return .object(["type": .string("actions"), "elements": .array(links.prefix(25).map { link in
                .object(["type": .string("button"), "text": text("plain_text", link.title, 75), "url": .string(link.url)])
            })])
        }
    }

    /// At most `limit` characters, with `…` when cut.
    static func clip(_ s: String, _ limit: Int) -> String {
        guard s.count > limit else { return s }
        return String(s.prefix(limit - 1)) + "…"
    }
}
