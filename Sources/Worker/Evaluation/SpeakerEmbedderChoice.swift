import Foundation

/// How a worker picks the ``SpeakerEmbedder`` of its evaluations, once, at startup.
public enum SpeakerEmbedderChoice {
    /// The embedder, or nil and the reason (which the eval shards' notes repeat).
    ///
    /// 1. `command` (`--speaker-command`): a ``CommandSpeakerEmbedder``; no shim needed.
    /// 2. `encoderPath` (`--speaker-encoder`), else the first of
    ///    ``TorchSpeakerEmbedder/candidatePaths(environment:)`` that exists: a
    ///    ``TorchSpeakerEmbedder`` through `shim`.
    /// - Returns: `summary` says what was chosen (for the log) or why nothing was.
    public static func make(encoderPath: String?, command: [String]?, timeoutSeconds: Double = 120, shim: TorchShim?, device: Int = -1,
                            environment: [String: String] = ProcessInfo.processInfo.environment) -> (embedder: (any SpeakerEmbedder)?, summary: String) {
        if let command, !command.isEmpty {
            let e = CommandSpeakerEmbedder(argv: command, timeoutSeconds: timeoutSeconds)
            return (e, e.summary)
        }
        let candidates = encoderPath.map { [$0] } ?? TorchSpeakerEmbedder.candidatePaths(environment: environment)
        guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
            return (nil, "no speaker encoder (looked at \(candidates.joined(separator: ", "))); export it with Tests/Fixtures/eval/speaker_env.sh and pass --speaker-encoder PATH, or give --speaker-command")
        }
        guard let shim else {
            return (nil, "the speaker encoder \(found) needs the torch shim, which this worker did not load (--torch-shim PATH)")
        }
        do {
            let e = try TorchSpeakerEmbedder.load(found, shim: shim, device: device)
            return (e, e.summary)
        } catch {
            return (nil, error.message)
        }
    }
}
