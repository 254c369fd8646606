/// The output an eval shard reports: `{"utterances": [...], "notes": [...]}`.
///
/// `notes` (absent when empty) says, once per shard, what was not measured for every utterance
/// and why, e.g. that the worker has no speaker encoder so no utterance has `sim`. Readers that
/// know only `utterances` ignore it.
public struct EvalShardOutput: Codable, Sendable, Equatable {
    /// One result per utterance of the shard, in the payload's order.
    public var utterances: [EvalUtteranceResult]
    /// Shard-wide remarks about the measures (nil: none).
    public var notes: [String]?

    public init(utterances: [EvalUtteranceResult], notes: [String]? = nil) {
        self.utterances = utterances
        self.notes = notes
    }
}
