/// Why a jiwer-style computation could not run.
public enum JiwerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The two sides hold a different number of sentences (jiwer raises `ValueError` here).
    case sentenceCountMismatch(references: Int, hypotheses: Int)

    public var description: String {
        switch self {
        case let .sentenceCountMismatch(references, hypotheses):
            "error rate: got \(references) reference and \(hypotheses) hypothesis sentences; pass one hypothesis per reference (in the same order)"
        }
    }
}
