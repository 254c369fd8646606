/// What Vosk heard in one utterance.
public struct VoskTranscript: Sendable, Equatable {
    /// The `text` field of Vosk's final result: space-separated tokens, possibly empty. Korean models
    /// emit morpheme-like units and bracketed number tokens (`[1]`); normalise before scoring.
    public let text: String
    /// The final result exactly as Vosk returned it (JSON).
    public let json: String

    public init(text: String, json: String) {
        self.text = text
        self.json = json
    }
}
