import ClusterAdmin
import Foundation
import Shared
import Testing

/// The states in admin answers are types, with the same JSON as the strings they replaced.
@Suite("Admin answer states")
struct AdminStatesTests {
    @Test("a state encodes as its name, decodes back, and prints as its name")
    func sameWire() throws {
        let summary = EvalSummary(id: 1, jobId: 2, runId: nil, step: nil, checkpoint: "c", state: .succeeded, utterances: 3, outputDir: "/o",
                                  cer: nil, wer: nil, cerUtteranceMean: nil, floorCer: nil, failedUtterances: nil, normalizer: nil,
                                  message: "", createdAt: nil, finishedAt: nil)
        let text = String(decoding: try JSONCoding.encode(summary), as: UTF8.self)
        #expect(text.contains("\"state\":\"succeeded\""), "\(text)")
        #expect(try JSONCoding.decode(EvalSummary.self, from: Array(text.utf8)) == summary)
        #expect("\(summary.state)" == "succeeded")
        #expect(String(decoding: try JSONCoding.encode([WorkerSummary.State.live, .gone]), as: UTF8.self) == #"["live","gone"]"#)
    }

    @Test("a state this build does not know (from a newer coordinator) decodes and is kept as it came")
    func unknownStateDecodes() throws {
        let state = try JSONCoding.decode(RunSummary.State.self, from: Array(#""paused""#.utf8))
        #expect(state.rawValue == "paused")
        #expect(state != .running && state != .queued)
        #expect(String(decoding: try JSONCoding.encode(state), as: UTF8.self) == #""paused""#)
        #expect(RunSummary.State.succeeded.isFinished && !RunSummary.State.queued.isFinished)
    }
}
