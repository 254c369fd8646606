import ClusterAdmin
import JobSpecs

/// Every evaluated checkpoint of a run side by side, with the best one by a chosen measure —
/// the measure that the retention rule `keep: {best: K, by: …}` ranks pins by, with the same
/// direction (``RetentionPolicy/higherIsBetter``). What `tts-coordinator evals RUN` prints and
/// the run page shows.
public struct CheckpointComparison: Sendable {
    /// One evaluation of the run, with its value of the measure.
    public struct Row: Sendable {
        public var eval: EvalSummary
        /// The measure's value; nil when the evaluation has none (not measured, failed, or a CER
        /// of a set the ASR cannot read, which does not measure the model).
        public var value: Double?
        public var isBest: Bool
    }

    /// The measures that come from the ASR's transcripts (meaningless when it cannot read the set).
    public static let cerBased: Set<String> = ["eval/cer", "eval/wer", "eval/cer_utt_mean"]

    /// The measures a comparison can rank by.
    public static let measures = ["eval/cer", "eval/wer", "eval/cer_utt_mean", "eval/sim", "eval/mcd"]

    public var runId: String
    public var measure: String
    public var higherIsBetter: Bool
    /// The run's evaluations in step order.
    public var rows: [Row]
    public var best: Row? { rows.first(where: \.isBest) }

    /// Thrown for a measure the comparison does not know.
    public struct UnknownMeasure: Error, CustomStringConvertible {
        public var measure: String
        public var description: String {
            "cannot compare checkpoints by \(measure): use one of \(CheckpointComparison.measures.joined(separator: ", "))"
        }
    }

    /// - Parameters:
    ///   - evals: evaluations (of any runs; only `runId`'s are kept).
    ///   - measure: one of ``measures``.
    public init(evals: [EvalSummary], runId: String, by measure: String = "eval/cer") throws(UnknownMeasure) {
        guard Self.measures.contains(measure) else { throw UnknownMeasure(measure: measure) }
        self.runId = runId
        self.measure = measure
        higherIsBetter = RetentionPolicy.higherIsBetter.contains(measure)
        var rows = evals.filter { $0.runId == runId }
            .sorted { ($0.step ?? .min, $0.id) < ($1.step ?? .min, $1.id) }
            .map { Row(eval: $0, value: Self.value(of: $0, measure), isBest: false) }
        var best: Int?
        for (i, r) in rows.enumerated() {
            guard let v = r.value else { continue }
            // Ties go to the earlier checkpoint (as retention keeps the first best).
            if let b = best, let bv = rows[b].value, higherIsBetter ? v <= bv : v >= bv { continue }
            best = i
        }
        if let best { rows[best].isBest = true }
        self.rows = rows
    }

    /// The value of `measure` in an evaluation (finite, or nil).
    public static func value(of e: EvalSummary, _ measure: String) -> Double? {
        if cerBased.contains(measure) && e.asrUnreadable == true { return nil }
        let v: Double? = switch measure {
        case "eval/cer": e.cer
        case "eval/wer": e.wer
        case "eval/cer_utt_mean": e.cerUtteranceMean
        case "eval/sim": e.sim
        case "eval/mcd": e.mcd
        default: nil
        }
        return v.flatMap { $0.isFinite ? $0 : nil }
    }
}
