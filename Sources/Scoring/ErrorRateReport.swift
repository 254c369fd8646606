/// Error rates of a set of utterances, at both levels the evaluation publishes, each named for what
/// it is:
///
/// - **corpus** (jiwer's list API, `jiwer.cer(refs, hyps)`): H/S/D/I summed over every utterance,
///   then one division. Long utterances weigh more. This is the headline `eval/cer`.
/// - **utterance mean** (seed-tts-eval's `average_wer.py`): the arithmetic mean of per-utterance
///   rates, computed as Python's `sum(rates) / len(rates)` (left to right, so it is bit-identical to
///   that expression, not to `numpy.mean`'s pairwise sum). Published as `eval/cer_utt_mean`.
///
/// For `refs=["a b c d e f g h i j","x"]`, `hyps=[same,"y"]` the corpus WER is 1/11 and the
/// utterance mean 0.5.
///
/// An utterance whose (normalised) reference is empty keeps jiwer 4's value for it (its insertion
/// count as the rate) in the mean; ``emptyReferenceCount`` says how many there were so a report can
/// flag them.
public struct ErrorRateReport: Sendable, Equatable {
    /// Which tokens are counted.
    public enum Unit: String, Sendable, Equatable {
        /// jiwer `process_words` with `wer_default` (words split on U+0020).
        case word
        /// jiwer `process_characters` with `cer_default` (code points, spaces included).
        case character
    }

    /// The score of one utterance.
    public struct Utterance: Sendable, Equatable {
        /// The reference as scored (after the normaliser, if any).
        public let reference: String
        /// The hypothesis as scored (after the normaliser, if any).
        public let hypothesis: String
        public let counts: EditCounts
        /// The utterance's error rate (jiwer's value for this single pair).
        public var rate: Double { counts.errorRate }
    }

    public let unit: Unit
    /// The normaliser's name and version (e.g. `ko-v1`), or nil when the texts were scored as given.
    public let normalizerVersion: String?
    public let utterances: [Utterance]
    /// H/S/D/I summed over all utterances.
    public let corpusCounts: EditCounts

    /// Corpus-level rate: identical to `jiwer.wer(refs, hyps)` / `jiwer.cer(refs, hyps)` on the same
    /// (normalised) lists.
    public var corpusRate: Double { corpusCounts.errorRate }

    /// The mean of per-utterance rates (`sum(rates) / len(rates)`); NaN for no utterances.
    public var utteranceMeanRate: Double {
        guard !utterances.isEmpty else { return .nan }
        var sum = 0.0
        for u in utterances { sum += u.rate }
        return sum / Double(utterances.count)
    }

    /// Utterances whose (normalised) reference has no tokens.
    public var emptyReferenceCount: Int { utterances.count { $0.counts.referenceCount == 0 } }

    /// Scores `references[i]` against `hypotheses[i]` for every i.
    ///
    /// - Parameters:
    ///   - unit: words or characters.
    ///   - normalizer: applied to both sides first; nil scores the texts exactly as jiwer's defaults do.
    /// - Throws: ``JiwerError/sentenceCountMismatch(references:hypotheses:)`` when the lists differ
    ///   in length.
    public init(unit: Unit, references: [String], hypotheses: [String], normalizer: KoreanTextNormalizer? = nil) throws(JiwerError) {
        guard references.count == hypotheses.count else {
            throw .sentenceCountMismatch(references: references.count, hypotheses: hypotheses.count)
        }
        self.unit = unit
        self.normalizerVersion = normalizer?.version
        var utterances: [Utterance] = []
        utterances.reserveCapacity(references.count)
        var total = EditCounts()
        for (rawReference, rawHypothesis) in zip(references, hypotheses) {
            let reference = normalizer?.normalize(rawReference) ?? rawReference
            let hypothesis = normalizer?.normalize(rawHypothesis) ?? rawHypothesis
            let counts = switch unit {
            case .word: Jiwer.processWords(reference: reference, hypothesis: hypothesis).counts
            case .character: Jiwer.processCharacters(reference: reference, hypothesis: hypothesis).counts
            }
            total += counts
            utterances.append(Utterance(reference: reference, hypothesis: hypothesis, counts: counts))
        }
        self.utterances = utterances
        self.corpusCounts = total
    }
}
