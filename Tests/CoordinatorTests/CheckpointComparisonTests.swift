import Testing
import ClusterAdmin
@testable import Coordinator

/// Comparing a run's evaluated checkpoints: the best by the measure retention ranks by.
@Suite("Checkpoint comparison")
struct CheckpointComparisonTests {
    static func eval(_ id: Int64, step: Int64, run: String = "r", cer: Double?, sim: Double? = nil, mcd: Double? = nil,
                     unreadable: Bool? = nil, state: EvalSummary.State = .succeeded) -> EvalSummary {
        EvalSummary(id: id, jobId: id, runId: run, step: step, checkpoint: "ckpt_\(step).pt", state: state, utterances: 4, outputDir: "/tmp/e\(id)",
                    cer: cer, wer: cer, cerUtteranceMean: cer, floorCer: 0.05, failedUtterances: 0, normalizer: "ko-v1",
                    message: "", createdAt: nil, finishedAt: nil, asrUnreadable: unreadable, sim: sim, mcd: mcd)
    }

    static let evals = [
        eval(3, step: 300, cer: 0.20, sim: 0.71, mcd: 9.5),
        eval(1, step: 100, cer: 0.40, sim: 0.52, mcd: 12.0),
        eval(2, step: 200, cer: 0.15, sim: 0.66, mcd: 10.1),
        eval(4, step: 400, cer: nil, state: .failed),
        eval(9, step: 100, run: "other", cer: 0.01, sim: 0.99, mcd: 1.0),
    ]

    @Test("rows are the run's evaluations in step order; the best by CER is the lowest")
    func bestByCER() throws {
        let c = try CheckpointComparison(evals: Self.evals, runId: "r")
        #expect(c.rows.map(\.eval.step) == [100, 200, 300, 400])
        #expect(c.best?.eval.id == 2)
        #expect(c.rows.filter(\.isBest).count == 1)
        #expect(c.rows.last?.value == nil, "a failed evaluation has no value")
    }

    @Test("SIM is better when higher, MCD when lower (the same directions as retention's keep: best)")
    func directions() throws {
        #expect(try CheckpointComparison(evals: Self.evals, runId: "r", by: "eval/sim").best?.eval.step == 300)
        #expect(try CheckpointComparison(evals: Self.evals, runId: "r", by: "eval/sim").higherIsBetter)
        #expect(try CheckpointComparison(evals: Self.evals, runId: "r", by: "eval/mcd").best?.eval.step == 300)
    }

    @Test("the CER of a set the ASR cannot read does not rank; SIM still does")
    func unreadableCERDoesNotRank() throws {
        let evals = [Self.eval(1, step: 100, cer: 0.9, sim: 0.5, unreadable: true), Self.eval(2, step: 200, cer: 1.0, sim: 0.6, unreadable: true)]
        #expect(try CheckpointComparison(evals: evals, runId: "r").best == nil)
        #expect(try CheckpointComparison(evals: evals, runId: "r", by: "eval/sim").best?.eval.id == 2)
    }

    @Test("ties go to the earlier checkpoint; an unknown measure is refused, naming the ones that exist")
    func tiesAndUnknown() throws {
        let evals = [Self.eval(1, step: 100, cer: 0.3), Self.eval(2, step: 200, cer: 0.3)]
        #expect(try CheckpointComparison(evals: evals, runId: "r").best?.eval.id == 1)
        #expect(throws: CheckpointComparison.UnknownMeasure.self) { try CheckpointComparison(evals: evals, runId: "r", by: "eval/loss") }
        do { _ = try CheckpointComparison(evals: evals, runId: "r", by: "eval/loss") } catch {
            #expect("\(error)".contains("eval/sim") && "\(error)".contains("eval/mcd"))
        }
    }
}
