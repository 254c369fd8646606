import Foundation
import Shared

/// The `persistent` ASR of an eval shard (docs/ASR.md): one process started once per shard (a
/// Whisper-class model loads once), sent one audio file after another as JSON lines on its
/// stdin, each answered by one JSON line on its stdout. The process machinery (start and ready
/// line, timeouts, restarts, stop) is ``PersistentProcess``'s, shared with the `persistent`
/// synthesizer.
///
/// - **Files** (``PersistentProcess/transcribe(id:audio:language:)``): one request line
///   `{"id", "audio", "language"}`, one reply line with the same `id` and either `text` (the
///   transcript) or `error` (that file's error; the process goes on).
typealias PersistentASR = PersistentProcess<ASRMessage>

extension PersistentProcess where Message == ASRMessage {
    /// The settings of a payload's `persistent` ASR: its startup argv as given (it takes no
    /// placeholders), `asr_timeout_seconds` per file (default 120), `asr_startup_timeout_seconds`
    /// (default 600) and `asr_max_restarts` (default 2).
    static func configuration(_ command: [String], payload: EvalPayload) -> Configuration {
        Configuration(argv: command,
                      utteranceTimeout: .milliseconds(Int64((payload.asrTimeoutSeconds ?? 120) * 1000)),
                      startupTimeout: .milliseconds(Int64((payload.asrStartupTimeoutSeconds ?? defaultStartupTimeout) * 1000)),
                      maxRestarts: payload.asrMaxRestarts ?? defaultMaxRestarts)
    }

    /// Transcribes one audio file. Returns the transcript (trimmed) or that file's error, and the
    /// seconds from sending the request to the reply (no model loading).
    func transcribe(id: String, audio: String, language: String) async -> (text: String?, problem: String?, seconds: Double) {
        let exchange = await exchange(id: id, request: ASRRequest(id: id, audio: audio, language: language))
        guard let reply = exchange.reply else { return (nil, exchange.problem ?? "no reply for \(id)", exchange.seconds) }
        if let error = reply.error { return (nil, "the ASR failed on \(id) (\(audio)): \(error)", exchange.seconds) }
        return ((reply.text ?? "").trimmingCharacters(in: .whitespacesAndNewlines), nil, exchange.seconds)
    }
}

/// One request line of a `persistent` ASR: `{"id", "audio", "language"}`.
struct ASRRequest: Encodable, Sendable {
    /// The utterance id (the same for its synthesized audio and its floor, asked one after the other).
    var id: String
    /// The audio file (any format libsndfile reads; the worker has already read it once).
    var audio: String
    /// The language code (`ko`).
    var language: String
}

/// A protocol line from a `persistent` ASR: the ready line or a reply.
struct ASRMessage: JSONLinesMessage {
    /// Ready line: true once loaded; false (with `error`) when it cannot start.
    var ready: Bool?
    var sampleRate: Int?
    var name: String?
    var version: Int?
    /// Reply: the request's id, and the transcript or why there is none.
    var id: String?
    var text: String?
    var error: String?
    var seconds: Double?

    enum CodingKeys: String, CodingKey {
        case ready, name, version, id, text, error, seconds
        case sampleRate = "sample_rate"
    }

    /// A reply needs `text` or `error`.
    var isReply: Bool { text != nil || error != nil }
    static let replyFields = "text or error"
    static let role = JSONLinesRole(noun: "ASR", doing: "transcribing", tag: "asr", contract: "docs/ASR.md")
}
