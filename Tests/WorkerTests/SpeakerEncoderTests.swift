import Foundation
import Testing
@testable import Worker

// The SIM metric's speaker encoder: Resemblyzer's pretrained GE2E encoder exported to TorchScript
// (scripts/torch/export_speaker_encoder.py, weights from the resemblyzer wheel) and run through the
// shim's tts_shim_embed_waveform, against Resemblyzer itself in Python
// (Tests/Fixtures/eval/speaker_embed_oracle.py). Audio: Korean sentences from two espeak-ng voices
// (ko+m3, ko+f2), resampled to 16 kHz mono by sox, read with libsndfile (AudioFile).
// Tests/Fixtures/eval/speaker_env.sh makes the venv, the module and the shim; if anything is
// missing the tests FAIL with its reason, they never skip.
@Suite("Speaker encoder (SIM) through the torch shim", .serialized, .timeLimit(.minutes(20)))
struct SpeakerEncoderTests {
    struct Clip {
        var voice: String
        var sentence: Int
        var wav: String
        var samples: [Float]
        /// Resemblyzer: embed_utterance(preprocess_wav(wav)), and the preprocessed samples.
        var reference: [Float]
        var preprocessed: [Float]
        /// Resemblyzer: embed_utterance(normalize_volume(wav, -30, increase_only=True)) (no VAD).
        var referenceUntrimmed: [Float]
    }

    struct Fixture {
        var encoder: SpeakerEncoder
        var clips: [Clip]
    }

    static let voices = ["ko+m3", "ko+f2"]
    static let sentences = [
        "안녕하세요 오늘 날씨가 정말 좋네요",
        "저는 한국어 음성 인식을 공부하고 있습니다",
        "서울에서 부산까지 기차로 세 시간 걸립니다",
    ]

    nonisolated(unsafe) static var cached: Fixture? // set once, from the serialized suite only

    static func fixture() throws -> Fixture {
        if let f = cached { return f }
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        let env = try TrainerFixture.run("/bin/bash", [here.appendingPathComponent("Fixtures/eval/speaker_env.sh").path], timeout: 1_800)
        var values: [String: String] = [:]
        for line in env.stdout.split(separator: "\n") {
            if let eq = line.firstIndex(of: "=") { values[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        try #require(env.status == 0, """
            Tests/Fixtures/eval/speaker_env.sh failed (\(env.status)): the SIM tests need Debian's python3-torch, \
            resemblyzer 0.1.4 + librosa from PyPI in a venv, the exported speaker_encoder.pt and the shim. \
            It said: \(env.stderr.suffix(3_000))
            """)
        let python = try #require(values["PYTHON"]), encoderPath = try #require(values["ENCODER"]), shimPath = try #require(values["SHIM"])
        let shim = try TorchShim.load(path: shimPath)
        let encoder = try shim.loadSpeakerEncoder(encoderPath, threads: 2)

        let dir = TrainerFixture.temporaryDirectory("speaker")
        var wavs: [(voice: String, sentence: Int, path: String)] = []
        for tool in ["/usr/bin/espeak-ng", "/usr/bin/sox"] {
            try #require(FileManager.default.isExecutableFile(atPath: tool), "\(tool) is missing: apt-get install espeak-ng sox")
        }
        for voice in voices {
            for (i, text) in sentences.enumerated() {
                let raw = "\(dir)/\(voice)-\(i)-22k.wav", wav = "\(dir)/\(voice)-\(i).wav"
                let speak = try TrainerFixture.run("/usr/bin/espeak-ng", ["-v", voice, "-w", raw, text])
                try #require(speak.status == 0, "espeak-ng -v \(voice) failed: \(speak.stderr)")
                let convert = try TrainerFixture.run("/usr/bin/sox", ["-R", "-D", raw, "-r", "16000", "-c", "1", "-b", "16", wav])
                try #require(convert.status == 0, "sox failed: \(convert.stderr)")
                wavs.append((voice, i, wav))
            }
        }
        let oracle = here.appendingPathComponent("Fixtures/eval/speaker_embed_oracle.py").path
        let out = try TrainerFixture.run(python, [oracle, dir + "/oracle"] + wavs.map(\.path), timeout: 600)
        try #require(out.status == 0, "speaker_embed_oracle.py failed (\(out.status)): \(out.stderr.suffix(3_000))")
        let decoded = try JSONDecoder().decode(OracleOutput.self, from: Data(out.stdout.utf8))
        try #require(decoded.results.count == wavs.count)
        var clips: [Clip] = []
        for (w, r) in zip(wavs, decoded.results) {
            let audio = try AudioFile.read(w.path)
            try #require(audio.sampleRate == encoder.sampleRate)
            let pre = try Data(contentsOf: URL(fileURLWithPath: r.preprocessed))
            let preprocessed = pre.withUnsafeBytes { raw in (0..<(pre.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) } }
            try #require(preprocessed.count == r.preprocessed_samples)
            clips.append(Clip(voice: w.voice, sentence: w.sentence, wav: w.path, samples: audio.samples,
                              reference: try r.embedding.map(Self.float), preprocessed: preprocessed,
                              referenceUntrimmed: try r.normalized_embedding.map(Self.float)))
        }
        let f = Fixture(encoder: encoder, clips: clips)
        cached = f
        return f
    }

    struct OracleOutput: Decodable {
        struct Result: Decodable {
            var wav: String
            var preprocessed: String
            var preprocessed_samples: Int
            var embedding: [String]
            var normalized_embedding: [String]
        }
        var results: [Result]
    }

    static func float(_ s: String) throws -> Float { try #require(Double(s).map(Float.init), "not a number: \(s)") }

    @Test("parity: our embedding of Resemblyzer's preprocessed samples has cosine >= 0.999 with embed_utterance(preprocess_wav(wav))")
    func parityWithResemblyzer() throws {
        let f = try Self.fixture()
        var worst = 1.0
        for clip in f.clips {
            let ours = try f.encoder.embed(clip.preprocessed)
            #expect(ours.count == 256)
            let norm = ours.reduce(0.0) { $0 + Double($1) * Double($1) }.squareRoot()
            #expect(abs(norm - 1) < 1e-5, "not L2-normalised: |e| = \(norm)")
            #expect(ours.allSatisfy { $0 >= 0 }, "ReLU output before normalisation: no negative component")
            let cos = SpeakerEncoder.similarity(ours, clip.reference)
            #expect(cos >= 0.999, "\(clip.wav): cosine with Resemblyzer \(cos)")
            worst = min(worst, cos)
        }
        print("speaker encoder parity (preprocessed samples, \(f.clips.count) clips): worst cosine \(worst)")
    }

    @Test("parity without VAD: the raw 16 kHz samples give Resemblyzer's embed_utterance(normalize_volume(wav)) (volume normalisation inside the module)")
    func parityUntrimmed() throws {
        let f = try Self.fixture()
        var worst = 1.0
        for clip in f.clips {
            let cos = SpeakerEncoder.similarity(try f.encoder.embed(clip.samples), clip.referenceUntrimmed)
            #expect(cos >= 0.999, "\(clip.wav): cosine \(cos)")
            worst = min(worst, cos)
        }
        // Without the VAD trimming the embedding is still close to Resemblyzer's full path.
        var worstFull = 1.0
        for clip in f.clips { worstFull = min(worstFull, SpeakerEncoder.similarity(try f.encoder.embed(clip.samples), clip.reference)) }
        print("speaker encoder parity (raw samples, no VAD): worst cosine \(worst); against preprocess_wav's: \(worstFull)")
    }

    @Test("SIM: the same espeak-ng voice on different sentences is more similar than the two voices on the same sentence")
    func sameVoiceAboveDifferentVoice() throws {
        let f = try Self.fixture()
        let embeddings = try f.clips.map { try f.encoder.embed($0.preprocessed) }
        var same: [Double] = [], different: [Double] = []
        for i in f.clips.indices {
            for j in f.clips.indices where j > i {
                let sim = SpeakerEncoder.similarity(embeddings[i], embeddings[j])
                if f.clips[i].voice == f.clips[j].voice { same.append(sim) } else { different.append(sim) }
            }
        }
        let mean = { (v: [Double]) in v.reduce(0, +) / Double(v.count) }
        print("SIM same voice: \(same.map { String(format: "%.3f", $0) }) mean \(String(format: "%.3f", mean(same))); "
              + "different voices: min \(String(format: "%.3f", different.min()!)) max \(String(format: "%.3f", different.max()!)) mean \(String(format: "%.3f", mean(different)))")
        #expect(same.count == 6 && different.count == 9)
        #expect(same.min()! > different.max()!, "every same-voice pair above every different-voice pair")
        #expect(mean(same) - mean(different) > 0.1, "the voices are clearly apart: \(mean(same)) vs \(mean(different))")
        // A clip with itself is 1; with a gain change it is the same speaker exactly.
        #expect(abs(SpeakerEncoder.similarity(embeddings[0], embeddings[0]) - 1) < 1e-6)
    }

    @Test("the embedding does not depend on loudness below -30 dBFS (Resemblyzer's volume normalisation) and is deterministic")
    func loudnessAndDeterminism() throws {
        let f = try Self.fixture()
        let clip = f.clips[0]
        let a = try f.encoder.embed(clip.samples)
        let b = try f.encoder.embed(clip.samples)
        #expect(a == b, "two calls on the same samples")
        // Two gains that both leave the clip well below -30 dBFS: both are scaled up to -30 dBFS
        // inside, so the embeddings agree (to float rounding).
        let quiet = try f.encoder.embed(clip.samples.map { $0 * 0.05 })
        let quieter = try f.encoder.embed(clip.samples.map { $0 * 0.01 })
        #expect(SpeakerEncoder.similarity(quiet, quieter) > 0.999_999)
        // Louder than -30 dBFS is left as it is (increase only), so loudness there does matter a little.
        print("SIM of a clip with itself at another level above -30 dBFS: \(SpeakerEncoder.similarity(a, quiet))")
        let start = Date()
        let threeSeconds = Array(clip.samples.prefix(3 * f.encoder.sampleRate))
        for _ in 0..<5 { _ = try f.encoder.embed(threeSeconds) }
        print("speaker embedding of 3 s at 16 kHz: \(String(format: "%.1f", Date().timeIntervalSince(start) / 5 * 1000)) ms (2 threads)")
    }

    @Test("bad input fails with the shim's reason: empty, silent, non-finite waveforms; a module without embed_waveform")
    func errors() throws {
        let f = try Self.fixture()
        #expect(f.encoder.sampleRate == 16_000)
        for (samples, words) in [([Float](), "empty"), ([Float](repeating: 0, count: 16_000), "silent"), ([0.1, .nan, 0.2], "not finite")] {
            do {
                _ = try f.encoder.embed(samples)
                Issue.record("embedding a \(words) waveform succeeded")
            } catch {
                #expect(error.code == .invalidArgument)
                #expect(error.message.contains(words), "\(error.message)")
            }
        }
        // The training reference model has no embed_waveform: a contract error naming the method.
        let torch = try TorchShimTests.fixture()
        do {
            _ = try torch.shim.loadSpeakerEncoder(torch.model)
            Issue.record("loading the reference model as an encoder succeeded")
        } catch {
            #expect(error.code == .contract)
            #expect(error.message.contains("embed_waveform"))
        }
        do {
            _ = try torch.shim.loadSpeakerEncoder("/nonexistent/speaker_encoder.pt")
            Issue.record("loading a missing file succeeded")
        } catch {
            #expect(error.code == .load)
        }
    }
}
