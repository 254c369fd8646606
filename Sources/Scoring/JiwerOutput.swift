/// jiwer 4.0's `WordOutput`: the transformed sentences, their alignments, the summed counts and the
/// corpus-level measures.
public struct WordOutput: Sendable, Equatable {
    /// The reference sentences after `wer_default`, as words.
    public let references: [[String]]
    /// The hypothesis sentences after `wer_default`, as words.
    public let hypotheses: [[String]]
    /// One alignment per sentence pair, as rapidfuzz/jiwer produce it.
    public let alignments: [[AlignmentChunk]]
    /// H, S, D, I summed over all sentences.
    public let counts: EditCounts

    public init(references: [[String]], hypotheses: [[String]], alignments: [[AlignmentChunk]], counts: EditCounts) {
        self.references = references
        self.hypotheses = hypotheses
        self.alignments = alignments
        self.counts = counts
    }

    public var wer: Double { counts.errorRate }
    public var mer: Double { counts.matchErrorRate }
    public var wil: Double { counts.wordInformationLost }
    public var wip: Double { counts.wordInformationPreserved }
    public var hits: Int { counts.hits }
    public var substitutions: Int { counts.substitutions }
    public var deletions: Int { counts.deletions }
    public var insertions: Int { counts.insertions }
}

/// jiwer 4.0's `CharacterOutput`: like ``WordOutput`` with characters (Python code points) as tokens
/// and `cer` instead of `wer` (and no mer/wil/wip).
public struct CharacterOutput: Sendable, Equatable {
    /// The reference sentences after `cer_default`, as code points.
    public let references: [[Unicode.Scalar]]
    /// The hypothesis sentences after `cer_default`, as code points.
    public let hypotheses: [[Unicode.Scalar]]
    /// One alignment per sentence pair.
    public let alignments: [[AlignmentChunk]]
    /// H, S, D, I summed over all sentences.
    public let counts: EditCounts

    public init(references: [[Unicode.Scalar]], hypotheses: [[Unicode.Scalar]], alignments: [[AlignmentChunk]], counts: EditCounts) {
        self.references = references
        self.hypotheses = hypotheses
        self.alignments = alignments
        self.counts = counts
    }

    /// `I` (a Python int in jiwer) when there are no reference characters at all.
    public var cer: Double { counts.errorRate }
    public var hits: Int { counts.hits }
    public var substitutions: Int { counts.substitutions }
    public var deletions: Int { counts.deletions }
    public var insertions: Int { counts.insertions }
}
