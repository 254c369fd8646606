import Foundation

/// The SIM embedder run in process: Resemblyzer's GE2E speaker encoder exported to TorchScript
/// (`scripts/torch/export_speaker_encoder.py`), through the torch shim (``SpeakerEncoder``).
///
/// **Level**: every clip is resampled to the encoder's 16 kHz and scaled to
/// ``level`` (−30 dBFS RMS) before embedding, up *or down*. Resemblyzer itself only raises quiet
/// audio to −30 dBFS and embeds louder audio at its own level, and this encoder's embedding
/// depends on the level (docs/EVALUATION.md, "Loudness"): without the common level a synthesizer
/// that speaks louder or softer than the prompt would lose SIM for its gain alone. At −30 dBFS
/// the module's own normalisation leaves the samples alone, so both sides of every cosine are
/// embedded the same way.
public struct TorchSpeakerEmbedder: SpeakerEmbedder {
    /// The RMS level both sides of a SIM are brought to before embedding, in dBFS.
    public static let level = -30.0
    /// The file name the setup exports (`Tests/Fixtures/eval/speaker_env.sh`).
    public static let fileName = "speaker_encoder.pt"

    public let encoder: SpeakerEncoder
    /// The TorchScript file it was loaded from.
    public let path: String

    public init(encoder: SpeakerEncoder, path: String) {
        self.encoder = encoder
        self.path = path
    }

    /// Loads the exported encoder through `shim`.
    /// - Parameters:
    ///   - threads: torch intra-op threads for this module (0: the shim's default).
    /// - Throws: ``SpeakerEmbeddingError`` naming the file and the shim's reason.
    public static func load(_ path: String, shim: TorchShim, device: Int = -1, threads: Int = 0) throws(SpeakerEmbeddingError) -> TorchSpeakerEmbedder {
        guard FileManager.default.fileExists(atPath: path) else {
            throw SpeakerEmbeddingError("no speaker encoder at \(path) (Tests/Fixtures/eval/speaker_env.sh exports it)")
        }
        do {
            return TorchSpeakerEmbedder(encoder: try shim.loadSpeakerEncoder(path, device: device, threads: threads), path: path)
        } catch {
            throw SpeakerEmbeddingError("cannot load the speaker encoder \(path): \(error)")
        }
    }

    /// Where the worker looks for the encoder when `--speaker-encoder` is not given, in order:
    /// `TTS_SPEAKER_ENCODER`, `speaker_encoder.pt` next to the executable, then
    /// `.build-oracle/speaker/speaker_encoder.pt` under the working directory (where the setup —
    /// `scripts/demo.sh`, `scripts/test.sh` through `speaker_env.sh` — exports it).
    public static func candidatePaths(environment: [String: String] = ProcessInfo.processInfo.environment) -> [String] {
        var out: [String] = []
        if let p = environment["TTS_SPEAKER_ENCODER"], !p.isEmpty { out.append(p) }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().deletingLastPathComponent()
        out.append(exe.appendingPathComponent(fileName).path)
        out.append(FileManager.default.currentDirectoryPath + "/.build-oracle/speaker/" + fileName)
        return out
    }

    public var summary: String { "Resemblyzer GE2E (TorchScript) at \(path)" }

    public func embed(path: String, clip: AudioClip) async throws(SpeakerEmbeddingError) -> [Float] {
        let prepared = clip.resampled(to: encoder.sampleRate)
        guard prepared.rmsDBFS.isFinite else { throw SpeakerEmbeddingError("\(path) is silent: nothing to embed") }
        do {
            return try encoder.embed(prepared.normalizedLoudness(to: Self.level).samples)
        } catch {
            throw SpeakerEmbeddingError("the speaker encoder failed on \(path): \(error)")
        }
    }
}
