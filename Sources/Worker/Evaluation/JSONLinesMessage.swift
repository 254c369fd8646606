import Foundation

/// A protocol line of a persistent program that speaks JSON lines (docs/SYNTHESIZER.md,
/// docs/ASR.md): its ready line or a reply to one request. ``JSONLinesProcess`` decodes the
/// lines and ``PersistentProcess`` runs the exchange; the conforming type says what a complete
/// reply holds and how the program is named in messages.
protocol JSONLinesMessage: Decodable, Sendable, Equatable {
    /// Ready line: true once loaded; false (with ``error``) when it cannot start.
    var ready: Bool? { get }
    /// Ready line: the program's name (logged).
    var name: String? { get }
    /// Ready line: the sample rate it works at (logged).
    var sampleRate: Int? { get }
    /// Ready line: the protocol version it speaks.
    var version: Int? { get }
    /// Reply: the request's id.
    var id: String? { get }
    /// Why it cannot start (ready line) or why a request failed (reply).
    var error: String? { get }
    /// True when this reply carries the fields its contract requires.
    var isReply: Bool { get }
    /// The fields a reply must carry, for messages (`ok`; `text or error`).
    static var replyFields: String { get }
    /// What the program is called in logs and messages.
    static var role: JSONLinesRole { get }
}

/// How a kind of persistent program is named in logs, messages and thread names.
struct JSONLinesRole: Sendable {
    /// "synthesizer", "ASR".
    var noun: String
    /// What it does to a request: "synthesizing", "transcribing".
    var doing: String
    /// A short tag for thread names.
    var tag: String
    /// The document that states the contract.
    var contract: String
}

/// What one stdout line of a persistent program is.
enum JSONLineParse<Message: JSONLinesMessage>: Equatable {
    case message(Message)
    /// A JSON object with `id` or `ready` whose fields have the wrong types.
    case malformed(String)
    /// Anything else: not a protocol line (logged and ignored).
    case noise
}

extension JSONLinesMessage {
    /// Classifies one stdout line: a JSON object with an `id` or a `ready` key is a protocol
    /// line; anything else (library chatter, a Python dict's repr) is noise. A protocol line
    /// whose fields have the wrong types is malformed, and the message quotes it.
    static func parse(_ line: ArraySlice<UInt8>) -> JSONLineParse<Self> {
        guard let first = line.first(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }), first == UInt8(ascii: "{") else { return .noise }
        let data = Data(line)
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              object["id"] != nil || object["ready"] != nil else { return .noise }
        do { return .message(try JSONDecoder().decode(Self.self, from: data)) } catch {
            return .malformed("a protocol line with fields of the wrong type: \(String(decoding: line.prefix(200), as: UTF8.self))")
        }
    }
}
