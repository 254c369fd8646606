/// jiwer 4.0's `process_words`, `process_characters`, `wer`, `mer`, `wil`, `wip` and `cer` with their
/// default transforms, bit-exact: the same tokens (Python code points, Python's whitespace set), the
/// same alignment and H/S/D/I split (rapidfuzz's tie-breaking, see ``EditOperations``), the same
/// `Double`s, the same corpus aggregation (counts summed over sentences, then one division) and the
/// same empty-reference results (no error; see ``EditCounts``).
///
/// A list of sentences is scored at corpus level, as jiwer's list API does; for the mean of
/// per-utterance rates use ``ErrorRateReport``. Like jiwer, an empty list counts as one empty
/// sentence. No normalisation happens here (no case folding, no punctuation removal, NFC ≠ NFD):
/// apply a normaliser such as ``KoreanTextNormalizer`` to both sides first if you want one.
public enum Jiwer {
    /// jiwer `process_words(reference, hypothesis)` with `wer_default` on both sides.
    public static func processWords(reference: [String], hypothesis: [String]) throws(JiwerError) -> WordOutput {
        let refs = sentences(reference), hyps = sentences(hypothesis)
        guard refs.count == hyps.count else { throw .sentenceCountMismatch(references: refs.count, hypotheses: hyps.count) }
        // Words are compared by code points (UTF-8 bytes), not by Swift's canonical-equivalence `==`.
        return BatchScoring.processWords(refs, hyps)
    }

    /// jiwer `process_words` for one sentence pair (jiwer wraps a `str` as `[str]`).
    public static func processWords(reference: String, hypothesis: String) -> WordOutput {
        // One sentence on each side: the counts always match.
        (try? processWords(reference: [reference], hypothesis: [hypothesis]))!
    }

    /// jiwer `process_characters(reference, hypothesis)` with `cer_default` on both sides.
    public static func processCharacters(reference: [String], hypothesis: [String]) throws(JiwerError) -> CharacterOutput {
        let refs = sentences(reference), hyps = sentences(hypothesis)
        guard refs.count == hyps.count else { throw .sentenceCountMismatch(references: refs.count, hypotheses: hyps.count) }
        return BatchScoring.processCharacters(refs, hyps)
    }

    /// jiwer `process_characters` for one sentence pair.
    public static func processCharacters(reference: String, hypothesis: String) -> CharacterOutput {
        (try? processCharacters(reference: [reference], hypothesis: [hypothesis]))!
    }

    /// jiwer `wer`: corpus-level word error rate.
    public static func wer(reference: [String], hypothesis: [String]) throws(JiwerError) -> Double {
        try processWords(reference: reference, hypothesis: hypothesis).wer
    }

    /// jiwer `wer` for one sentence pair.
    public static func wer(reference: String, hypothesis: String) -> Double {
        processWords(reference: reference, hypothesis: hypothesis).wer
    }

    /// jiwer `mer`: corpus-level match error rate.
    public static func mer(reference: [String], hypothesis: [String]) throws(JiwerError) -> Double {
        try processWords(reference: reference, hypothesis: hypothesis).mer
    }

    /// jiwer `wil`: corpus-level word information lost.
    public static func wil(reference: [String], hypothesis: [String]) throws(JiwerError) -> Double {
        try processWords(reference: reference, hypothesis: hypothesis).wil
    }

    /// jiwer `wip`: corpus-level word information preserved.
    public static func wip(reference: [String], hypothesis: [String]) throws(JiwerError) -> Double {
        try processWords(reference: reference, hypothesis: hypothesis).wip
    }

    /// jiwer `cer`: corpus-level character error rate (whitespace inside a sentence counts).
    public static func cer(reference: [String], hypothesis: [String]) throws(JiwerError) -> Double {
        try processCharacters(reference: reference, hypothesis: hypothesis).cer
    }

    /// jiwer `cer` for one sentence pair.
    public static func cer(reference: String, hypothesis: String) -> Double {
        processCharacters(reference: reference, hypothesis: hypothesis).cer
    }

    /// jiwer's reducers turn an empty list into one empty sentence (`[[]]`).
    private static func sentences(_ list: [String]) -> [String] { list.isEmpty ? [""] : list }
}
