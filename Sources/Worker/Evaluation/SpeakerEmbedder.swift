/// Something that turns an utterance into a speaker embedding, for the SIM measure of an
/// evaluation (docs/EVALUATION.md): the cosine of two embeddings (``SpeakerEncoder/similarity(_:_:)``).
///
/// Backends: ``TorchSpeakerEmbedder`` (Resemblyzer's GE2E encoder as TorchScript through the shim)
/// and ``CommandSpeakerEmbedder`` (a program that reads a WAV path and prints a JSON embedding).
/// An ``EvalExecutor`` uses one embedder for every shard and caches the embeddings of the files it
/// sees more than once (voice prompts, target audio) within a shard.
public protocol SpeakerEmbedder: Sendable {
    /// What it is, for the worker's log (e.g. "Resemblyzer GE2E (TorchScript) at PATH").
    var summary: String { get }

    /// The embedding of one utterance.
    /// - Parameters:
    ///   - path: the audio file (what a command backend reads).
    ///   - clip: its samples, already read and mixed down, at the file's own rate (what an
    ///     in-process backend embeds after its own resampling and level normalisation).
    /// - Throws: ``SpeakerEmbeddingError`` saying why there is no embedding.
    func embed(path: String, clip: AudioClip) async throws(SpeakerEmbeddingError) -> [Float]
}
