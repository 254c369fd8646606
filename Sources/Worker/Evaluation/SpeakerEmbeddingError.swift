/// Why a speaker embedding could not be made or an embedder could not be set up. In an evaluation
/// it is the utterance's `measure_errors` entry (or the shard's note), never the utterance's error.
public struct SpeakerEmbeddingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The reason, naming the file or the command.
    public let message: String

    public init(_ message: String) { self.message = message }

    public var description: String { message }
}
