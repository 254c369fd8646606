import ClusterAdmin
import Foundation
import Scoring
import Shared

/// Scores an evaluation once every shard is in: corpus-level CER and WER over the whole set
/// (jiwer 4's list semantics, after the versioned Korean normaliser), the utterance mean of CER
/// (named as such), the ASR floor (the test set's own audio through the same ASR), the guide's
/// quality band, the worst utterances, and the per-utterance table. Utterances that could not be
/// scored (synthesis or audio errors) are listed and counted, not scored.
struct EvalAggregator {
    struct Row: Sendable, Equatable {
        var result: EvalUtteranceResult
        var referenceNormalized: String
        var hypothesisNormalized: String?
        var cerCounts: EditCounts?
        var werCounts: EditCounts?
        var cer: Double? { cerCounts?.errorRate }
        /// It could not be synthesized or transcribed (its CER counts it as all deletions).
        var failed: Bool { !EvalAggregator.isScored(result) }
    }

    struct Score: Sendable, Equatable {
        var cer: Double
        var wer: Double
        var cerUtteranceMean: Double
        var floorCer: Double?
        /// Utterances whose floor transcription failed (counted as deletions in ``floorCer``).
        var floorFailed: Int = 0
        var scored: Int
        var failed: Int
        var cerCounts: EditCounts
        var werCounts: EditCounts
        var rows: [Row]
        var normalizer: String
        /// The guide's bands on the utterance-mean WER, as its script prints them.
        var band: String
        /// Speaker similarity: the mean over the utterances that have it (synthesized vs prompt),
        /// and the ground-truth floor (target vs prompt); how many utterances each mean covers.
        var sim: Double?
        var simFloor: Double?
        var simCount = 0
        /// Mel-cepstral distortion (dB): the mean over the utterances that have it.
        var mcd: Double?
        var mcdCount = 0
        /// The codec floor (the targets' true codes decoded by the codec): MCD and SIM means.
        var mcdCodecFloor: Double?
        var simCodecFloor: Double?

        /// The floor shows that the ASR cannot read the test set's own audio.
        var asrUnreadable: Bool { (floorCer ?? 0) > EvalAggregator.unreadableFloorCer }
        /// The words that go with the figures (nil: none needed).
        var note: String? {
            if scored == 0 { return "no utterance could be scored: this evaluation failed and has no CER or WER" }
            if asrUnreadable { return EvalAggregator.unreadableNote + " (ASR floor CER \(String(format: "%.1f %%", (floorCer ?? 0) * 100)))" }
            return nil
        }
    }

    /// Above this ASR floor CER the ASR cannot read the test set's own audio (the default of the
    /// `eval_regression` rule's `max_floor_cer`, which ignores such evaluations).
    static let unreadableFloorCer = 0.5
    /// What the report, the dashboard and the W&B summary say about such a set.
    static let unreadableNote = "the ASR cannot read this test set's reference audio; CER does not measure the model here"

    static let cerNormalizer = KoreanTextNormalizer(removesWhitespace: true)
    static let werNormalizer = KoreanTextNormalizer(removesWhitespace: false)

    /// The per-utterance table logged to W&B as `eval/table` (at most `limit` rows, worst CER first
    /// after the utterances that failed): id, CER, WER, reference, hypothesis, the ASR floor's
    /// hypothesis, audio seconds, error.
    static func wandbTable(_ score: Score, limit: Int = 500) -> (columns: [String], rows: [[JSONValue]]) {
        let columns = ["id", "cer", "wer", "sim", "mcd", "reference", "hypothesis", "asr_floor_hypothesis", "audio_seconds", "error"]
        func num(_ d: Double?) -> JSONValue { d.flatMap { $0.isFinite ? JSONValue.number($0) : nil } ?? .null }
        let ordered = score.rows.sorted { a, b in
            if a.failed != b.failed { return a.failed }
            switch (a.cer, b.cer) {
            case (nil, nil): return a.result.id < b.result.id
            case (nil, _): return true
            case (_, nil): return false
            case let (x?, y?): return x != y ? x > y : a.result.id < b.result.id
            }
        }
        let rows: [[JSONValue]] = ordered.prefix(limit).map { r in
            [.string(r.result.id), num(r.cer), num(r.werCounts?.errorRate), num(r.result.sim), num(r.result.mcd), .string(r.result.reference),
             r.result.hypothesis.map(JSONValue.string) ?? .null, r.result.floorHypothesis.map(JSONValue.string) ?? .null,
             num(r.result.audioSeconds), r.result.error.map(JSONValue.string) ?? .null]
        }
        return (columns, rows)
    }

    /// Whether an utterance was scored: it has a transcript and no error. Every other utterance
    /// failed (synthesis, audio or ASR) and counts against the checkpoint.
    static func isScored(_ r: EvalUtteranceResult) -> Bool { r.hypothesis != nil && r.error == nil }

    /// Scores a set. An utterance that failed counts as an empty transcript: all of its
    /// reference characters and words are deletions, in the corpus figures and in the utterance
    /// mean (a checkpoint that cannot speak half the set is not scored on the other half). With
    /// no scored utterance at all there is no score: CER and WER are NaN, never 0 %. The ASR
    /// floor is scored the same way over the utterances whose floor was attempted (a transcript
    /// or a `floor_error`).
    static func score(_ results: [EvalUtteranceResult]) -> Score {
        let ok = results.filter(isScored)
        let refs = results.map(\.reference), hyps = results.map { isScored($0) ? $0.hypothesis ?? "" : "" }
        // Same lengths by construction: the reports cannot throw.
        let cer = ok.isEmpty ? nil : (try? ErrorRateReport(unit: .character, references: refs, hypotheses: hyps, normalizer: cerNormalizer))
        let wer = ok.isEmpty ? nil : (try? ErrorRateReport(unit: .word, references: refs, hypotheses: hyps, normalizer: werNormalizer))
        let floorAttempts = results.filter { $0.floorHypothesis != nil || $0.floorError != nil }
        let floor = floorAttempts.allSatisfy({ $0.floorHypothesis == nil }) ? nil
            : try? ErrorRateReport(unit: .character, references: floorAttempts.map(\.reference),
                                   hypotheses: floorAttempts.map { $0.floorError == nil ? $0.floorHypothesis ?? "" : "" }, normalizer: cerNormalizer)
        var rows: [Row] = []
        for (k, r) in results.enumerated() {
            if let cer, let wer {
                rows.append(Row(result: r, referenceNormalized: cer.utterances[k].reference,
                                hypothesisNormalized: isScored(r) ? cer.utterances[k].hypothesis : nil,
                                cerCounts: cer.utterances[k].counts, werCounts: wer.utterances[k].counts))
            } else {
                rows.append(Row(result: r, referenceNormalized: cerNormalizer.normalize(r.reference), hypothesisNormalized: nil, cerCounts: nil, werCounts: nil))
            }
        }
        let werMean = wer?.utteranceMeanRate ?? .nan
        func mean(_ values: [Double]) -> Double? { values.isEmpty ? nil : values.reduce(0, +) / Double(values.count) }
        let sims = results.compactMap(\.sim).filter(\.isFinite), floorSims = results.compactMap(\.floorSim).filter(\.isFinite)
        let mcds = results.compactMap(\.mcd).filter(\.isFinite)
        var score = Score(cer: cer?.corpusRate ?? .nan, wer: wer?.corpusRate ?? .nan, cerUtteranceMean: cer?.utteranceMeanRate ?? .nan,
                     floorCer: floor?.corpusRate, floorFailed: floorAttempts.count { $0.floorError != nil || $0.floorHypothesis == nil },
                     scored: ok.count, failed: results.count - ok.count,
                     cerCounts: cer?.corpusCounts ?? EditCounts(), werCounts: wer?.corpusCounts ?? EditCounts(), rows: rows,
                     normalizer: cerNormalizer.version, band: band(werMean))
        score.sim = mean(sims)
        score.simFloor = mean(floorSims)
        score.simCount = sims.count
        score.mcd = mean(mcds)
        score.mcdCount = mcds.count
        score.mcdCodecFloor = mean(results.compactMap(\.codecMcd).filter(\.isFinite))
        score.simCodecFloor = mean(results.compactMap(\.codecSim).filter(\.isFinite))
        return score
    }

    /// The guide's quality bands (on WER in percent): < 10 excellent, 10–20 good, 20–30 fair, > 30 train more.
    static func band(_ wer: Double) -> String {
        guard wer.isFinite else { return "n/a" }
        switch wer * 100 {
        case ..<10: return "excellent"
        case ..<20: return "good"
        case ..<30: return "fair"
        default: return "needs more training"
        }
    }

    /// `report.json`: the summary, the shards' notes (what was not measured and why; `[]` when
    /// none) and every utterance.
    static func reportJSON(_ s: Score, eval: EvalSummary, notes: [String] = []) -> [UInt8] {
        func num(_ d: Double?) -> JSONValue { d.map { $0.isFinite ? .number($0) : .null } ?? .null }
        func counts(_ c: EditCounts?) -> JSONValue {
            guard let c else { return .null }
            return .object(["hits": .number(Double(c.hits)), "substitutions": .number(Double(c.substitutions)),
                            "deletions": .number(Double(c.deletions)), "insertions": .number(Double(c.insertions))])
        }
        let utterances: [JSONValue] = s.rows.map { r in
            .object([
                "id": .string(r.result.id), "reference": .string(r.result.reference),
                "hypothesis": r.result.hypothesis.map(JSONValue.string) ?? .null,
                "reference_normalized": .string(r.referenceNormalized),
                "hypothesis_normalized": r.hypothesisNormalized.map(JSONValue.string) ?? .null,
                "cer": num(r.cer), "cer_errors": counts(r.cerCounts), "wer_errors": counts(r.werCounts),
                "floor_hypothesis": r.result.floorHypothesis.map(JSONValue.string) ?? .null,
                "audio_path": r.result.audioPath.map(JSONValue.string) ?? .null, "audio_seconds": num(r.result.audioSeconds),
                "synthesis_seconds": .number(r.result.synthesisSeconds), "asr_seconds": .number(r.result.asrSeconds),
                "error": r.result.error.map(JSONValue.string) ?? .null, "failed": .bool(r.failed),
                "floor_error": r.result.floorError.map(JSONValue.string) ?? .null,
                "sim": num(r.result.sim), "floor_sim": num(r.result.floorSim), "mcd": num(r.result.mcd),
                "codec_sim": num(r.result.codecSim), "codec_mcd": num(r.result.codecMcd),
                "measure_errors": r.result.measureErrors.map { JSONValue.object($0.mapValues(JSONValue.string)) } ?? .null,
            ])
        }
        let doc: JSONValue = .object([
            "eval_id": .number(Double(eval.id)), "run": eval.runId.map(JSONValue.string) ?? .null,
            "step": eval.step.map { .number(Double($0)) } ?? .null, "checkpoint": .string(eval.checkpoint),
            "normalizer": .string(s.normalizer), "cer": num(s.cer), "wer": num(s.wer), "cer_utterance_mean": num(s.cerUtteranceMean),
            "asr_floor_cer": num(s.floorCer), "scored": .number(Double(s.scored)), "failed": .number(Double(s.failed)),
            "floor_failed": .number(Double(s.floorFailed)), "asr_unreadable": .bool(s.asrUnreadable),
            "sim": num(s.sim), "sim_floor": num(s.simFloor), "sim_utterances": .number(Double(s.simCount)),
            "mcd": num(s.mcd), "mcd_utterances": .number(Double(s.mcdCount)),
            "mcd_codec_floor": num(s.mcdCodecFloor), "sim_codec_floor": num(s.simCodecFloor),
            "note": s.note.map(JSONValue.string) ?? .null, "notes": .array(notes.map(JSONValue.string)),
            "quality_band": .string(s.band), "cer_errors": counts(s.cerCounts), "wer_errors": counts(s.werCounts),
            "utterances": .array(utterances),
        ])
        let e = JSONCoding.encoder
        e.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return (try? Array(e.encode(doc))) ?? []
    }

    /// `report.md`: the headline numbers, the worst utterances and the table.
    static func reportMarkdown(_ s: Score, eval: EvalSummary, worst: Int = 5) -> String {
        func pct(_ d: Double?) -> String { d.map { $0.isFinite ? String(format: "%.2f %%", $0 * 100) : "n/a" } ?? "n/a" }
        func cell(_ t: String) -> String { t.replacingOccurrences(of: "|", with: "\\|").replacingOccurrences(of: "\n", with: " ") }
        var md = "# Evaluation \(eval.id)\(eval.runId.map { " — run \($0)" } ?? "")\(eval.step.map { " at step \($0)" } ?? "")\n\n"
        md += "Checkpoint `\(eval.checkpoint)`; normaliser `\(s.normalizer)`; \(s.scored) utterance(s) scored, \(s.failed) failed"
        md += s.failed > 0 ? " (each failed utterance counts as an empty transcript: all its reference characters and words are deletions).\n\n" : ".\n\n"
        if s.scored == 0 { md += "**No utterance could be scored: this evaluation failed and has no CER or WER.**\n\n" }
        else if s.asrUnreadable { md += "**Note: \(EvalAggregator.unreadableNote).** Its ASR floor CER is \(pct(s.floorCer)): the same ASR cannot transcribe the test set's own audio, so CER and WER below say nothing about the checkpoint, and the `eval_regression` alert ignores them.\n\n" }
        md += "| measure | value |\n|---|---|\n"
        md += "| CER (corpus: errors summed over the set ÷ reference characters) | \(pct(s.cer)) |\n"
        md += "| CER (utterance mean: the mean of per-utterance CERs) | \(pct(s.cerUtteranceMean)) |\n"
        md += "| WER (corpus) | \(pct(s.wer)) |\n"
        md += "| ASR floor CER (the test set's own audio) | \(pct(s.floorCer))\(s.floorFailed > 0 ? " (\(s.floorFailed) failed, counted as deletions)" : "") |\n"
        md += "| quality band (the guide's, on the utterance-mean WER) | \(s.band) |\n"
        func fixed(_ d: Double?, _ f: String) -> String { d.map { String(format: f, $0) } ?? "n/a" }
        md += "| SIM (speaker similarity to the prompt, mean of \(s.simCount)) | \(fixed(s.sim, "%.3f")) |\n"
        md += "| SIM floor (the test set's own audio vs the prompt) | \(fixed(s.simFloor, "%.3f")) |\n"
        md += "| MCD (dB, vs the target audio after DTW, mean of \(s.mcdCount)) | \(fixed(s.mcd, "%.2f")) |\n"
        if s.mcdCodecFloor != nil || s.simCodecFloor != nil {
            md += "| codec floor (the targets' true codes decoded the same way): MCD dB / SIM | \(fixed(s.mcdCodecFloor, "%.2f")) / \(fixed(s.simCodecFloor, "%.3f")) |\n"
        }
        md += "\n"
        let ranked = s.rows.filter { $0.cer != nil && !$0.failed }.sorted { ($0.cer ?? 0) > ($1.cer ?? 0) }.prefix(worst)
        if !ranked.isEmpty {
            md += "## Worst utterances\n\n| id | CER | reference | hypothesis |\n|---|---|---|---|\n"
            for r in ranked { md += "| \(cell(r.result.id)) | \(pct(r.cer)) | \(cell(r.result.reference)) | \(cell(r.result.hypothesis ?? "")) |\n" }
            md += "\n"
        }
        md += "## Utterances\n\n| id | CER | reference | hypothesis | floor | audio s | error |\n|---|---|---|---|---|---|---|\n"
        for r in s.rows {
            md += "| \(cell(r.result.id)) | \(pct(r.cer)) | \(cell(r.result.reference)) | \(cell(r.result.hypothesis ?? "")) | \(cell(r.result.floorHypothesis ?? "")) | \(r.result.audioSeconds.map { String(format: "%.2f", $0) } ?? "") | \(cell(r.result.error ?? "")) |\n"
        }
        return md
    }
}
