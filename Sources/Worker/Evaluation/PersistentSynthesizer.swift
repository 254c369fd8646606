import Foundation
import Logging
import Shared

/// The `persistent` synthesizer of an eval shard (docs/SYNTHESIZER.md): one process started once
/// per shard, sent one utterance after another as JSON lines on its stdin, each answered by one
/// JSON line on its stdout. The process machinery (start and ready line, timeouts, restarts,
/// stop) is ``PersistentProcess``'s, shared with the `persistent` ASR.
///
/// - **Utterances** (``PersistentProcess/synthesize(id:text:promptAudio:output:)``): one request
///   line, one reply line with the same `id` and `ok`. `ok: false` is that utterance's error and
///   the process goes on; so is `ok: true` without the output file.
typealias PersistentSynthesizer = PersistentProcess<SynthesizerMessage>

extension PersistentProcess where Message == SynthesizerMessage {
    /// The startup argv of a `persistent` synthesizer: `{checkpoint}` and `{output_dir}` replaced.
    static func startupArgv(_ template: [String], checkpoint: String, outputDir: String) -> [String] {
        template.map { $0.replacingOccurrences(of: "{checkpoint}", with: checkpoint).replacingOccurrences(of: "{output_dir}", with: outputDir) }
    }

    /// Synthesizes one utterance into `output`. Returns nil on success, else the utterance's
    /// error, and the seconds from sending the request to the reply (no model loading).
    func synthesize(id: String, text: String, promptAudio: String?, output: String) async -> (problem: String?, seconds: Double) {
        let exchange = await exchange(id: id, request: SynthesizerRequest(id: id, text: text, promptAudio: promptAudio, output: output))
        guard let reply = exchange.reply else { return (exchange.problem ?? "no reply for \(id)", exchange.seconds) }
        guard reply.ok == true else { return ("the synthesizer failed on \(id): \(reply.error ?? "no reason given")", exchange.seconds) }
        guard FileManager.default.fileExists(atPath: output) else {
            return ("the synthesizer answered ok for \(id) but wrote no \(output)", exchange.seconds)
        }
        return (nil, exchange.seconds)
    }
}

/// One request line: `{"id", "text", "prompt_audio", "output"}` (`prompt_audio` null when the
/// manifest has none).
struct SynthesizerRequest: Encodable, Sendable {
    var id: String
    var text: String
    var promptAudio: String?
    var output: String

    enum CodingKeys: String, CodingKey {
        case id, text, output
        case promptAudio = "prompt_audio"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(text, forKey: .text)
        try c.encode(promptAudio, forKey: .promptAudio)
        try c.encode(output, forKey: .output)
    }
}

/// A protocol line from a `persistent` synthesizer: the ready line or a reply.
struct SynthesizerMessage: JSONLinesMessage {
    /// Ready line: true once loaded; false (with `error`) when it cannot start.
    var ready: Bool?
    var sampleRate: Int?
    var name: String?
    var version: Int?
    /// Reply: the request's id, whether it worked, and why not.
    var id: String?
    var ok: Bool?
    var output: String?
    var seconds: Double?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case ready, name, version, id, ok, output, seconds, error
        case sampleRate = "sample_rate"
    }

    /// A reply needs `ok`.
    var isReply: Bool { ok != nil }
    static let replyFields = "ok"
    static let role = JSONLinesRole(noun: "synthesizer", doing: "synthesizing", tag: "synth", contract: "docs/SYNTHESIZER.md")
}
