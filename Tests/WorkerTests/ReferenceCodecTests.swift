import Foundation
import Scoring
import Testing
@testable import Worker

extension TorchShimTests {
    /// The reference codec (scripts/torch/reference_model.py, CodecDecoder): the dataset's codec
    /// floor files are the exported model's decode_codes of the targets' own codes (checked by the
    /// Python oracle scripts/torch/check_reference_codec.py), and by the Swift MCD they are far
    /// closer to the targets than random codes decoded the same way — and the oracle's numpy MCD
    /// agrees with Scoring.MelCepstralDistortion on them.
    @Test("codec floor: codec_audio/ is the model's decode of the true codes (oracle), 640 samples per code, MCD ~6 dB by the Swift measure (= the oracle's), at least 2 dB below random codes")
    func codecFloor() throws {
        let f = try Self.fixture()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let dir = TrainerFixture.temporaryDirectory("codec")
        let json = dir + "/codec.json"
        let r = try TrainerFixture.run("/usr/bin/python3", [root.appendingPathComponent("scripts/torch/check_reference_codec.py").path,
                                                            "--model", f.model, "--dataset", f.dataset, "--steps", "0",
                                                            "--expect", "--json", json], timeout: 600)
        try #require(r.status == 0, "check_reference_codec.py failed (\(r.status)): \(r.stderr.suffix(3_000))")
        struct Report: Decodable {
            var ids: [String]
            var per_utterance: [String: [Double]]
        }
        let report = try JSONDecoder().decode(Report.self, from: Data(contentsOf: URL(fileURLWithPath: json)))
        let oracle = try #require(report.per_utterance["ground_truth"]), random = try #require(report.per_utterance["random"])
        #expect(report.ids.count == 12 && oracle.count == 12 && random.count == 12, "\(report.ids)")

        // The validation records name the floor files; one per target.
        var floorPath: [String: (audio: String, codec: String, codes: Int)] = [:]
        for line in try String(contentsOfFile: f.dataset + "/gpt_pairs_val.jsonl", encoding: .utf8).split(separator: "\n") {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let id = try #require(o["target_id"] as? String)
            let codec = try #require(o["target_codec_audio_path"] as? String, "\(id): no target_codec_audio_path")
            floorPath[id] = (f.dataset + "/" + (try #require(o["target_audio_path"] as? String)), f.dataset + "/" + codec,
                             try #require(o["target_code_len"] as? Int))
        }
        let measure = try MelCepstralDistortion()
        var swift: [Double] = []
        for (i, id) in report.ids.enumerated() {
            let p = try #require(floorPath[id])
            let codec = try AudioFile.read(p.codec), target = try AudioFile.read(p.audio)
            #expect(codec.sampleRate == 16_000 && codec.samples.count == 640 * p.codes, "\(id): \(codec.samples.count) samples for \(p.codes) codes")
            let d = try measure.distortion(synthesized: codec.samples, target: target.samples).mcd
            swift.append(d)
            // The oracle measured the float samples, this the 16-bit file: equal to well under 0.05 dB.
            #expect(abs(d - oracle[i]) < 0.05, "\(id): Swift MCD \(d) dB, the oracle's \(oracle[i]) dB")
        }
        let mean = swift.reduce(0, +) / Double(swift.count), randomMean = random.reduce(0, +) / Double(random.count)
        #expect(mean > 3 && mean < 7.5, "codec floor MCD \(mean) dB")
        #expect(mean < randomMean - 2, "codec floor \(mean) dB vs random codes \(randomMean) dB")
    }
}
