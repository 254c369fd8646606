import Foundation
import Shared
import Testing

// The wire form of an utterance's evaluation result: the SIM/MCD fields are optional snake_case
// keys, absent when not measured, and results written before they existed still decode.
@Suite("EvalUtteranceResult JSON: sim, floor_sim, mcd, stage seconds, measure_errors")
struct EvalUtteranceResultCodingTests {
    @Test("a result from before SIM/MCD decodes, with every new field nil")
    func olderJSONDecodes() throws {
        let old = #"{"id":"u1","reference":"안녕","hypothesis":"안녕","audio_path":"/a.wav","audio_seconds":1.5,"synthesis_seconds":0.2,"asr_seconds":0.3}"#
        let r = try JSONCoding.decode(EvalUtteranceResult.self, from: Array(old.utf8))
        #expect(r.id == "u1" && r.hypothesis == "안녕" && r.asrSeconds == 0.3)
        #expect(r.sim == nil && r.floorSim == nil && r.mcd == nil && r.simSeconds == nil && r.mcdSeconds == nil && r.measureErrors == nil)
    }

    @Test("the measures are written under sim, floor_sim, mcd, sim_seconds, mcd_seconds, measure_errors and read back")
    func keysAndRoundTrip() throws {
        let r = EvalUtteranceResult(id: "u2", reference: "네", hypothesis: "네", floorHypothesis: nil, audioPath: "/b.wav", audioSeconds: 1,
                                    synthesisSeconds: 0.1, asrSeconds: 0.2, error: nil, sim: 0.81, floorSim: 0.9, mcd: 5.25,
                                    simSeconds: 0.05, mcdSeconds: 0.04, measureErrors: ["floor_sim": "target: missing"])
        let bytes = try JSONCoding.encode(r)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        #expect(object["sim"] as? Double == 0.81 && object["floor_sim"] as? Double == 0.9 && object["mcd"] as? Double == 5.25)
        #expect(object["sim_seconds"] as? Double == 0.05 && object["mcd_seconds"] as? Double == 0.04)
        #expect(object["measure_errors"] as? [String: String] == ["floor_sim": "target: missing"])
        #expect(try JSONCoding.decode(EvalUtteranceResult.self, from: bytes) == r)
    }

    @Test("unmeasured fields are absent from the JSON, not null")
    func absentWhenNil() throws {
        let r = EvalUtteranceResult(id: "u3", reference: "네", hypothesis: nil, floorHypothesis: nil, audioPath: nil, audioSeconds: nil,
                                    synthesisSeconds: 0, asrSeconds: 0, error: "synthesizer failed")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(try JSONCoding.encode(r))) as? [String: Any])
        for key in ["sim", "floor_sim", "mcd", "sim_seconds", "mcd_seconds", "measure_errors"] {
            #expect(object[key] == nil, "\(key) present: \(object)")
        }
    }

    @Test("a shard's output without notes decodes (older workers), and notes survive a round trip")
    func shardOutput() throws {
        let old = #"{"utterances":[{"id":"u1","reference":"네","synthesis_seconds":0,"asr_seconds":0}]}"#
        let o = try JSONCoding.decode(EvalShardOutput.self, from: Array(old.utf8))
        #expect(o.utterances.map(\.id) == ["u1"] && o.notes == nil)
        let n = EvalShardOutput(utterances: o.utterances, notes: ["sim not measured: no speaker encoder"])
        #expect(try JSONCoding.decode(EvalShardOutput.self, from: try JSONCoding.encode(n)) == n)
    }
}
