/// Hits, substitutions, deletions and insertions of an alignment (summed over sentences), and the
/// measures jiwer 4.0 derives from them, computed with jiwer's exact expressions and evaluation order
/// so that every `Double` is bit-identical to Python's.
///
/// jiwer returns Python `int`s in two edge cases, and these properties return the same numbers as
/// `Double`s (see ``isIntegerInJiwer(_:)`` to reproduce the type, e.g. for JSON, where Python prints
/// `2` rather than `2.0`):
/// - empty reference (no reference tokens at all): `wer = insertions`, `mer = 0` or `1`,
///   `wip = 1` or `0` (hypothesis empty or not), `wil = 1 - wip`;
/// - empty hypothesis with a non-empty reference: `wip = 0` and `wil = 1`.
public struct EditCounts: Sendable, Equatable, Hashable, CustomStringConvertible {
    public var hits: Int
    public var substitutions: Int
    public var deletions: Int
    public var insertions: Int

    public init(hits: Int = 0, substitutions: Int = 0, deletions: Int = 0, insertions: Int = 0) {
        self.hits = hits
        self.substitutions = substitutions
        self.deletions = deletions
        self.insertions = insertions
    }

    /// Reference tokens: H + S + D.
    public var referenceCount: Int { hits + substitutions + deletions }
    /// Hypothesis tokens: H + S + I.
    public var hypothesisCount: Int { hits + substitutions + insertions }
    /// The Levenshtein distance: S + D + I.
    public var errors: Int { substitutions + deletions + insertions }

    /// Word (or character) error rate: `float(S+D+I) / float(H+S+D)`; `I` when the reference is empty.
    public var errorRate: Double {
        referenceCount == 0 ? Double(insertions) : Double(errors) / Double(hits + substitutions + deletions)
    }

    /// Match error rate: `float(S+D+I) / float(H+S+D+I)`; 0 or 1 when the reference is empty.
    public var matchErrorRate: Double {
        if referenceCount == 0 { return hypothesisCount == 0 ? 0 : 1 }
        return Double(errors) / Double(hits + substitutions + deletions + insertions)
    }

    /// Word information preserved: `(float(H)/N_ref) * (float(H)/N_hyp)`, 0 for an empty hypothesis;
    /// 1 or 0 when the reference is empty.
    public var wordInformationPreserved: Double {
        if referenceCount == 0 { return hypothesisCount == 0 ? 1 : 0 }
        guard hypothesisCount >= 1 else { return 0 }
        return (Double(hits) / Double(referenceCount)) * (Double(hits) / Double(hypothesisCount))
    }

    /// Word information lost: `1 - wip`.
    public var wordInformationLost: Double { 1 - wordInformationPreserved }

    /// The measures of jiwer's `WordOutput`.
    public enum Measure: String, Sendable, CaseIterable {
        case wer, mer, wil, wip
    }

    /// The measure's value, by jiwer name.
    public func value(of measure: Measure) -> Double {
        switch measure {
        case .wer: errorRate
        case .mer: matchErrorRate
        case .wil: wordInformationLost
        case .wip: wordInformationPreserved
        }
    }

    /// Whether jiwer 4.0 returns this measure as a Python `int` rather than a `float` for these
    /// counts (same value either way).
    public func isIntegerInJiwer(_ measure: Measure) -> Bool {
        if referenceCount == 0 { return true }
        switch measure {
        case .wer, .mer: return false
        case .wil, .wip: return hypothesisCount == 0
        }
    }

    public static func + (lhs: EditCounts, rhs: EditCounts) -> EditCounts {
        EditCounts(hits: lhs.hits + rhs.hits, substitutions: lhs.substitutions + rhs.substitutions,
                   deletions: lhs.deletions + rhs.deletions, insertions: lhs.insertions + rhs.insertions)
    }

    public static func += (lhs: inout EditCounts, rhs: EditCounts) { lhs = lhs + rhs }

    /// Counts one sentence's alignment as jiwer does: `equal` → hits, `substitute` → S (reference
    /// span), `delete` → D, `insert` → I (hypothesis span).
    public init(alignment: [AlignmentChunk]) {
        self.init()
        for chunk in alignment {
            switch chunk.kind {
            case .equal: hits += chunk.reference.count
            case .substitute: substitutions += chunk.reference.count
            case .delete: deletions += chunk.reference.count
            case .insert: insertions += chunk.hypothesis.count
            }
        }
    }

    public var description: String { "H=\(hits) S=\(substitutions) D=\(deletions) I=\(insertions)" }
}
