import Foundation
import Testing
@testable import Coordinator
import ClusterAdmin
import Shared

/// How an evaluation's utterances become its scores: failures count against the checkpoint.
@Suite("Evaluation scoring: failures count")
struct EvalScoringTests {
    static func utterance(_ id: String, _ reference: String, heard: String?, error: String? = nil,
                          floor: String? = nil, floorError: String? = nil) -> EvalUtteranceResult {
        var r = EvalUtteranceResult(id: id, reference: reference, hypothesis: heard, floorHypothesis: floor, audioPath: nil, audioSeconds: 1,
                                    synthesisSeconds: 0, asrSeconds: 0, error: error)
        r.floorError = floorError
        return r
    }

    static func summary(_ id: Int64) -> EvalSummary {
        EvalSummary(id: id, jobId: id, runId: "run-1", step: 100, checkpoint: "c.pt", state: "succeeded", utterances: 4, outputDir: "/tmp/x",
                    cer: nil, wer: nil, cerUtteranceMean: nil, floorCer: nil, failedUtterances: nil, normalizer: nil,
                    message: "", createdAt: nil, finishedAt: nil)
    }

    @Test("a synthesizer that wrote silence for all 400 utterances gives no CER and no WER, not 0 %")
    func allSilentIsNoScore() {
        let results = (0..<400).map { Self.utterance("u\($0)", "안녕하세요", heard: nil, error: "u\($0).wav is silent (peak 0.0)") }
        let s = EvalAggregator.score(results)
        #expect(s.scored == 0)
        #expect(s.failed == 400)
        #expect(s.cer.isNaN && s.wer.isNaN && s.cerUtteranceMean.isNaN)
        #expect(s.rows.allSatisfy { $0.failed })
        let md = EvalAggregator.reportMarkdown(s, eval: Self.summary(1))
        #expect(md.contains("No utterance could be scored"))
        #expect(md.contains("n/a"))
        #expect(!md.contains("0.00 %"))
    }

    @Test("half of the utterances failing counts their reference characters and words as deletions")
    func halfFailedCountsAsDeletions() throws {
        // Four one-word references of five syllables; the two that were heard are heard perfectly.
        let results = [
            Self.utterance("a", "안녕하세요", heard: "안녕하세요"),
            Self.utterance("b", "감사합니다", heard: nil, error: "the synthesizer exited with status 1"),
            Self.utterance("c", "반갑습니다", heard: "반갑습니다"),
            Self.utterance("d", "고맙습니다", heard: "고맙습니다", error: "b.wav is silent (peak 0.0)"),
        ]
        let s = EvalAggregator.score(results)
        #expect(s.scored == 2)
        #expect(s.failed == 2)
        // Plainly: 10 of 20 reference characters were never heard; 2 of 4 words.
        #expect(abs(s.cer - 10.0 / 20.0) < 1e-12)
        #expect(abs(s.wer - 2.0 / 4.0) < 1e-12)
        #expect(abs(s.cerUtteranceMean - (0 + 1 + 0 + 1) / 4.0) < 1e-12)
        #expect(s.cerCounts.deletions == 10 && s.cerCounts.hits == 10)
        let failedRows = s.rows.filter(\.failed).map(\.result.id)
        #expect(failedRows == ["b", "d"])
        // The report names each failure's reason and says how many failed.
        let json = try #require(try JSONSerialization.jsonObject(with: Data(EvalAggregator.reportJSON(s, eval: Self.summary(2)))) as? [String: Any])
        #expect(json["failed"] as? Double == 2)
        #expect((json["notes"] as? [String]) == [], "no shard notes: an empty list")
        let noted = try #require(try JSONSerialization.jsonObject(with: Data(EvalAggregator.reportJSON(s, eval: Self.summary(2), notes: ["sim not measured: no encoder"]))) as? [String: Any])
        #expect((noted["notes"] as? [String]) == ["sim not measured: no encoder"])
        let utterances = try #require(json["utterances"] as? [[String: Any]])
        #expect(utterances.first { $0["id"] as? String == "b" }?["error"] as? String == "the synthesizer exited with status 1")
        #expect(utterances.first { $0["id"] as? String == "b" }?["failed"] as? Bool == true)
        // Failures come first in the W&B table.
        let table = EvalAggregator.wandbTable(s)
        #expect(table.rows.prefix(2).map { $0[0] } == [.string("b"), .string("d")])
    }

    @Test("the ASR floor counts an utterance whose floor transcription failed as deletions")
    func floorFailuresCount() {
        let results = [
            Self.utterance("a", "안녕하세요", heard: "안녕하세요", floor: "안녕하세요"),
            Self.utterance("b", "감사합니다", heard: "감사합니다", floorError: "target audio b.wav is missing"),
        ]
        let s = EvalAggregator.score(results)
        #expect(s.floorCer.map { abs($0 - 0.5) < 1e-12 } == true)
        #expect(s.floorFailed == 1)
        #expect(abs(s.cer) < 1e-12)
    }

    @Test("with no floor asked for, there is no floor CER")
    func noFloor() {
        let s = EvalAggregator.score([Self.utterance("a", "안녕하세요", heard: "안녕")])
        #expect(s.floorCer == nil)
        #expect(s.floorFailed == 0)
    }

    @Test("a test set whose own audio the ASR cannot read is reported as such, in words")
    func unreadableSetSaysSo() throws {
        // espeak-ng Korean through Vosk: the floor hears nothing right.
        let results = [
            Self.utterance("a", "안녕하세요", heard: "아", floor: "오"),
            Self.utterance("b", "감사합니다", heard: "가", floor: "이"),
        ]
        let s = EvalAggregator.score(results)
        #expect(s.asrUnreadable)
        let note = try #require(s.note)
        #expect(note.hasPrefix("the ASR cannot read this test set's reference audio; CER does not measure the model here"))
        let md = EvalAggregator.reportMarkdown(s, eval: Self.summary(3))
        #expect(md.contains("the ASR cannot read this test set's reference audio; CER does not measure the model here"))
        let json = try #require(try JSONSerialization.jsonObject(with: Data(EvalAggregator.reportJSON(s, eval: Self.summary(3)))) as? [String: Any])
        #expect(json["asr_unreadable"] as? Bool == true)
        // A readable floor adds nothing.
        let readable = EvalAggregator.score([Self.utterance("a", "안녕하세요", heard: "안녕하세", floor: "안녕하세요")])
        #expect(!readable.asrUnreadable && readable.note == nil)
        #expect(!EvalAggregator.reportMarkdown(readable, eval: Self.summary(4)).contains("cannot read"))
    }

    @Test("SIM, its floor and MCD are means over the utterances that have them; the report shows them")
    func simAndMCDMeans() throws {
        var a = Self.utterance("a", "안녕하세요", heard: "안녕하세요"), b = Self.utterance("b", "감사합니다", heard: "감사")
        var c = Self.utterance("c", "반갑습니다", heard: nil, error: "silent")
        a.sim = 0.8; a.floorSim = 0.9; a.mcd = 6.0
        b.sim = 0.6; b.floorSim = 0.7; b.mcd = 8.0
        c.floorSim = 0.5 // the floor exists even where the model failed
        let s = EvalAggregator.score([a, b, c])
        #expect(s.sim.map { abs($0 - 0.7) < 1e-12 } == true && s.simCount == 2)
        #expect(s.simFloor.map { abs($0 - 0.7) < 1e-12 } == true)
        #expect(s.mcd.map { abs($0 - 7.0) < 1e-12 } == true && s.mcdCount == 2)
        let md = EvalAggregator.reportMarkdown(s, eval: Self.summary(5))
        #expect(md.contains("| SIM (speaker similarity to the prompt, mean of 2) | 0.700 |"))
        #expect(md.contains("| MCD (dB, vs the target audio after DTW, mean of 2) | 7.00 |"))
        // The codec floor (true codes decoded the same way) is reported beside them.
        var d = Self.utterance("d", "고맙습니다", heard: "고맙습니다")
        d.codecMcd = 5.5; d.codecSim = 0.65
        let withCodec = EvalAggregator.score([a, b, d])
        #expect(withCodec.mcdCodecFloor == 5.5 && withCodec.simCodecFloor == 0.65)
        #expect(EvalAggregator.reportMarkdown(withCodec, eval: Self.summary(7)).contains("| codec floor (the targets' true codes decoded the same way): MCD dB / SIM | 5.50 / 0.650 |"))
        // Not measured: n/a, not 0.
        let none = EvalAggregator.score([Self.utterance("a", "안녕하세요", heard: "안녕하세요")])
        #expect(none.sim == nil && none.mcd == nil)
        #expect(EvalAggregator.reportMarkdown(none, eval: Self.summary(6)).contains("| MCD (dB, vs the target audio after DTW, mean of 0) | n/a |"))
    }
}
