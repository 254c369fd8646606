import Foundation
import Shared
import Testing
@testable import Worker

// SIM and MCD in an eval shard (issue 17; docs/EVALUATION.md): the worker measures each
// synthesized utterance against its voice prompt (sim) and the test set's own recording
// (floor_sim: target vs prompt; mcd: synthesized vs target). The test set is the espeak-ng Korean
// reference dataset (Tests/Fixtures/torch/torch_env.sh), the speaker encoder Resemblyzer's
// exported to TorchScript (Tests/Fixtures/eval/speaker_env.sh), run through the torch shim. The
// ASR is a command stand-in (the CER is not what these tests are about). If the encoder, the shim
// or the dataset cannot be made, the tests FAIL with the script's reason; they never skip.
@Suite("Eval shard: SIM and MCD per utterance", .serialized, .timeLimit(.minutes(20)))
struct EvalMeasuresTests {
    struct Fixture {
        var embedder: TorchSpeakerEmbedder
        var utterances: [EvalUtterance]
        var dir: String
    }

    nonisolated(unsafe) static var cached: Fixture? // set once, from the serialized suite only

    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()

    static func values(_ script: String) throws -> [String: String] {
        let out = try TrainerFixture.run("/bin/bash", [here.appendingPathComponent(script).path], timeout: 1_800)
        try #require(out.status == 0, """
            \(script) failed (\(out.status)): the SIM/MCD tests need the exported speaker encoder \
            (speaker_encoder.pt: Debian's python3-torch, resemblyzer 0.1.4 from PyPI), the torch shim and the \
            espeak-ng reference dataset; scripts/test.sh makes them. It said: \(out.stderr.suffix(3_000))
            """)
        var values: [String: String] = [:]
        for line in out.stdout.split(separator: "\n") {
            if let eq = line.firstIndex(of: "=") { values[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        return values
    }

    static func fixture() throws -> Fixture {
        if let f = cached { return f }
        let speaker = try values("Fixtures/eval/speaker_env.sh")
        let torch = try values("Fixtures/torch/torch_env.sh")
        let encoder = try #require(speaker["ENCODER"], "speaker_env.sh printed no ENCODER=")
        try #require(FileManager.default.fileExists(atPath: encoder), "the exported speaker encoder \(encoder) is missing")
        let shimPath = try #require(speaker["SHIM"], "speaker_env.sh printed no SHIM=")
        let shim = try TorchShim.load(path: shimPath)
        let embedder = try TorchSpeakerEmbedder.load(encoder, shim: shim, threads: 2)
        let dataset = try #require(torch["DATASET"], "torch_env.sh printed no DATASET=")
        let all = try EvalManifest.read([ManifestSpec(path: dataset + "/gpt_pairs_val.jsonl", language: "ko")])
        // Six pairs: both espeak-ng speakers, prompts and targets on disk.
        let picked = Array(all.filter { $0.id.hasPrefix("espeak_m") }.prefix(3) + all.filter { $0.id.hasPrefix("espeak_f") }.prefix(3))
        try #require(picked.count == 6, "the reference dataset's gpt_pairs_val.jsonl has fewer than 3 pairs per speaker")
        for u in picked {
            try #require(u.promptAudio != nil && u.referenceAudio != nil, "\(u.id) has no prompt or target audio")
        }
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/espeak-ng"), "/usr/bin/espeak-ng is missing: apt-get install espeak-ng")
        let f = Fixture(embedder: embedder, utterances: picked, dir: TrainerFixture.temporaryDirectory("eval-measures"))
        cached = f
        return f
    }

    /// An `eval-command` shard: `synthesizer` speaks the texts, a stand-in ASR "hears" one word.
    static func run(_ utterances: [EvalUtterance], synthesizer: SynthesizerSpec, embedder: (any SpeakerEmbedder)?,
                    unavailable: String? = nil, dir: String) async throws -> (ShardReport, EvalShardOutput) {
        let payload = EvalPayload(evalId: 3, checkpoint: "/nowhere/model.pth", utterances: utterances, synthesizer: synthesizer,
                                  asr: "command", asrCommand: ["/bin/sh", "-c", "echo 들었습니다"], asrTimeoutSeconds: 30,
                                  outputDir: dir + "/out-\(UUID().uuidString)", withFloor: false)
        let a = ShardAssignment(shard: ShardRef(shardId: 1, leaseEpoch: 1), jobId: 1, kind: "eval-command", attempt: 1, payload: try JSONCoding.encode(payload))
        let executor = EvalExecutor(kind: "eval-command", voskLibrary: nil, voskModel: nil, speakerEmbedder: embedder, speakerUnavailable: unavailable)
        let report = try await executor.run(a, context: ShardContext(assignment: a, progress: { _, _ in }))
        #expect(report.outcome == .succeeded, "\(report.message)")
        return (report, try JSONCoding.decode(EvalShardOutput.self, from: report.output))
    }

    static let espeak = SynthesizerSpec(kind: "command", command: ["/usr/bin/espeak-ng", "-v", "ko", "-w", "{output}", "{text}"], timeoutSeconds: 60)

    @Test("an eval shard over the espeak-ng test set has sim, floor_sim and mcd for every synthesized utterance, in their ranges")
    func measuresEverySynthesizedUtterance() async throws {
        let f = try Self.fixture()
        let (report, output) = try await Self.run(f.utterances, synthesizer: Self.espeak, embedder: f.embedder, dir: f.dir)
        #expect(output.notes == nil, "nothing is unmeasured: \(output.notes ?? [])")
        #expect(!report.message.contains("not measured"), "\(report.message)")
        #expect(output.utterances.count == 6)
        for r in output.utterances {
            #expect(r.error == nil && r.hypothesis == "들었습니다", "\(r)")
            #expect(r.measureErrors == nil, "\(r.id): \(r.measureErrors ?? [:])")
            let sim = try #require(r.sim, "\(r.id) has no sim"), floor = try #require(r.floorSim, "\(r.id) has no floor_sim")
            let mcd = try #require(r.mcd, "\(r.id) has no mcd")
            // The GE2E embeddings are non-negative unit vectors: cosines in [0, 1] ⊂ [-1, 1].
            #expect((0...1).contains(sim) && (0...1).contains(floor), "\(r.id): sim \(sim), floor_sim \(floor)")
            #expect(mcd.isFinite && mcd > 0 && mcd < 30, "\(r.id): mcd \(mcd) dB")
            #expect((r.simSeconds ?? 0) > 0 && (r.mcdSeconds ?? 0) > 0, "\(r.id): stage times \(String(describing: r.simSeconds)), \(String(describing: r.mcdSeconds))")
        }
        let mean = { (v: [Double]) in v.reduce(0, +) / Double(v.count) }
        let sims = output.utterances.compactMap(\.sim), floors = output.utterances.compactMap(\.floorSim), mcds = output.utterances.compactMap(\.mcd)
        // The floor is the same speaker (the prompt and the target are one espeak-ng voice); the
        // synthesizer speaks with espeak-ng's default Korean voice, another speaker for half the set.
        #expect(mean(floors) > 0.8, "floor_sim mean \(mean(floors))")
        #expect(mean(floors) > mean(sims), "the ground truth is closer to the prompt than another voice: floor \(mean(floors)), sim \(mean(sims))")
        // The synthesizer's voice is the male speaker's (espeak-ng ko, 175 vs 165 words/min), not
        // the female's (ko+f2): its spectra are closer to the male targets.
        let male = output.utterances.filter { $0.id.hasPrefix("espeak_m") }.compactMap(\.mcd)
        let female = output.utterances.filter { $0.id.hasPrefix("espeak_f") }.compactMap(\.mcd)
        #expect(mean(male) < mean(female), "mcd: same voice \(male), other voice \(female)")
        print(String(format: "espeak-ng ko vs the test set (6 pairs): sim mean %.3f, floor_sim mean %.3f, mcd mean %.2f dB (%.2f–%.2f)",
                     mean(sims), mean(floors), mean(mcds), mcds.min() ?? 0, mcds.max() ?? 0))
    }

    @Test("a synthesizer that returns the target audio itself (reference) has mcd 0 and sim equal to floor_sim")
    func targetAudioItself() async throws {
        let f = try Self.fixture()
        let (_, output) = try await Self.run(f.utterances, synthesizer: .reference, embedder: f.embedder, dir: f.dir)
        for r in output.utterances {
            let sim = try #require(r.sim, "\(r.id) has no sim"), floor = try #require(r.floorSim, "\(r.id) has no floor_sim")
            #expect(abs(sim - floor) < 1e-9, "\(r.id): sim \(sim) vs floor_sim \(floor)")
            let mcd = try #require(r.mcd, "\(r.id) has no mcd")
            #expect(mcd < 1e-9, "\(r.id): mcd \(mcd)")
        }
    }

    @Test("the codec floor: the dataset's target_codec_audio_path gives codec_mcd and codec_sim; the target itself as codec audio gives 0 and floor_sim")
    func codecFloor() async throws {
        let f = try Self.fixture()
        try #require(f.utterances.allSatisfy { $0.codecAudio != nil }, "the reference dataset's val records have no target_codec_audio_path")
        let (_, real) = try await Self.run(f.utterances, synthesizer: .reference, embedder: f.embedder, dir: f.dir)
        for r in real.utterances {
            let mcd = try #require(r.codecMcd, "\(r.id) has no codec_mcd: \(r.measureErrors ?? [:])")
            #expect(mcd > 0.5 && mcd < 30, "\(r.id): codec_mcd \(mcd) dB (the codec loses detail)")
            #expect(r.codecSim.map { (-1...1).contains($0) } == true, "\(r.id): codec_sim \(String(describing: r.codecSim))")
        }
        // A "codec" that returns the target unchanged is no loss at all: the measure has teeth.
        let lossless = f.utterances.map { u -> EvalUtterance in var u = u; u.codecAudio = u.referenceAudio; return u }
        let (_, ideal) = try await Self.run(lossless, synthesizer: .reference, embedder: f.embedder, dir: f.dir)
        for r in ideal.utterances {
            #expect((r.codecMcd ?? 1) < 1e-9, "\(r.id): codec_mcd \(String(describing: r.codecMcd))")
            let floor = try #require(r.floorSim)
            #expect(abs((r.codecSim ?? -2) - floor) < 1e-9)
        }
    }

    @Test("without a speaker embedder no utterance has sim or floor_sim, mcd is still measured, and the shard says why once")
    func withoutEmbedder() async throws {
        let f = try Self.fixture()
        let why = "no speaker encoder (looked at /nowhere/speaker_encoder.pt)"
        let (report, output) = try await Self.run(Array(f.utterances.prefix(3)), synthesizer: Self.espeak, embedder: nil, unavailable: why, dir: f.dir)
        #expect(output.notes == ["sim not measured: \(why)"])
        #expect(report.message.contains("; sim not measured: \(why)"), "\(report.message)")
        for r in output.utterances {
            #expect(r.error == nil && r.hypothesis == "들었습니다", "\(r)")
            #expect(r.sim == nil && r.floorSim == nil && r.simSeconds == nil, "\(r)")
            #expect(r.measureErrors == nil, "the shard's note says it, not each utterance: \(r.measureErrors ?? [:])")
            #expect((r.mcd ?? -1) > 0, "\(r.id): mcd \(String(describing: r.mcd))")
        }
    }

    @Test("an unreadable prompt or target is a measure error of that utterance; its transcript and the other measures stand")
    func unreadableInputsAreMeasureErrors() async throws {
        let f = try Self.fixture()
        var noPrompt = f.utterances[0], noTarget = f.utterances[1]
        noPrompt.promptAudio = f.dir + "/missing-prompt.wav"
        noTarget.referenceAudio = f.dir + "/missing-target.wav"
        let (report, output) = try await Self.run([noPrompt, noTarget], synthesizer: Self.espeak, embedder: f.embedder, dir: f.dir)
        #expect(!report.message.contains("with errors"), "\(report.message)")
        let a = output.utterances[0], b = output.utterances[1]
        #expect(a.error == nil && a.hypothesis == "들었습니다" && b.error == nil && b.hypothesis == "들었습니다")
        #expect(a.sim == nil && a.floorSim == nil && a.mcd != nil, "\(a)")
        #expect(a.measureErrors?["sim"]?.contains("missing-prompt.wav") == true && a.measureErrors?["floor_sim"]?.contains("missing-prompt.wav") == true,
                "\(a.measureErrors ?? [:])")
        #expect(b.sim != nil && b.floorSim == nil && b.mcd == nil, "\(b)")
        #expect(b.measureErrors?["mcd"]?.contains("missing-target.wav") == true && b.measureErrors?["floor_sim"]?.contains("missing-target.wav") == true,
                "\(b.measureErrors ?? [:])")
        #expect(b.measureErrors?["sim"] == nil)
    }

    @Test("level: a clip and the same clip 26 dB quieter embed alike, because both are brought to -30 dBFS first")
    func levelNormalisedBeforeEmbedding() async throws {
        let f = try Self.fixture()
        let path = try #require(f.utterances[0].referenceAudio)
        let clip = try AudioFile.read(path)
        var quiet = clip
        quiet.samples = clip.samples.map { $0 * 0.05 }
        #expect(abs(clip.normalizedLoudness(to: -30).rmsDBFS + 30) < 1e-3 && abs(quiet.normalizedLoudness(to: -30).rmsDBFS + 30) < 1e-3)
        let loud = try await f.embedder.embed(path: path, clip: clip), soft = try await f.embedder.embed(path: path, clip: quiet)
        let sim = SpeakerEncoder.similarity(loud, soft)
        #expect(sim > 0.999, "cosine \(sim) (Resemblyzer's raise-only normalisation gives ~0.93 here, docs/EVALUATION.md)")
    }

    @Test("the worker's choice: an encoder path that does not exist, or no torch shim, means no embedder and says why")
    func embedderChoice() throws {
        let none = SpeakerEmbedderChoice.make(encoderPath: "/nowhere/speaker_encoder.pt", command: nil, shim: nil)
        #expect(none.embedder == nil && none.summary.contains("/nowhere/speaker_encoder.pt") && none.summary.contains("--speaker-encoder"), "\(none.summary)")
        let encoder = try #require(Self.values("Fixtures/eval/speaker_env.sh")["ENCODER"])
        let noShim = SpeakerEmbedderChoice.make(encoderPath: encoder, command: nil, shim: nil)
        #expect(noShim.embedder == nil && noShim.summary.contains("torch shim"), "\(noShim.summary)")
        let defaults = TorchSpeakerEmbedder.candidatePaths(environment: ["TTS_SPEAKER_ENCODER": "/x/enc.pt"])
        #expect(defaults.first == "/x/enc.pt" && defaults.last?.hasSuffix("/.build-oracle/speaker/speaker_encoder.pt") == true, "\(defaults)")
        let command = SpeakerEmbedderChoice.make(encoderPath: nil, command: ["/bin/echo", "{audio}"], shim: nil)
        #expect(command.embedder is CommandSpeakerEmbedder)
    }

    // MARK: - the command backend

    /// A stand-in embedder: prints [mean |x|, rms, zero-crossing rate, 1] of a 16-bit WAV, logs
    /// each file it was asked for, fails on files whose name contains "broken".
    static let standIn = """
        import array, json, math, sys, wave
        path, log = sys.argv[1], sys.argv[2]
        with open(log, "a") as f: f.write(path + "\\n")
        if "broken" in path: sys.exit("cannot embed " + path)
        with wave.open(path) as w:
            x = array.array("h", w.readframes(w.getnframes()))
        n = len(x)
        mean = sum(abs(v) for v in x) / n / 32768
        rms = math.sqrt(sum(v * v for v in x) / n) / 32768
        zcr = sum(1 for a, b in zip(x, x[1:]) if (a < 0) != (b < 0)) / n
        print(json.dumps([mean, rms, zcr, 1.0]))
        """

    @Test("a speaker command embeds each file once per shard (a shared prompt is cached), and a failing run is a measure error")
    func commandBackend() async throws {
        let f = try Self.fixture()
        let python = "/usr/bin/python3"
        try #require(FileManager.default.isExecutableFile(atPath: python), "\(python) is missing: apt-get install python3")
        let script = f.dir + "/embed_standin.py", log = f.dir + "/embed-calls-\(UUID().uuidString).txt"
        try Self.standIn.write(toFile: script, atomically: true, encoding: .utf8)
        let embedder = CommandSpeakerEmbedder(argv: [python, script, "{audio}", log], timeoutSeconds: 30)
        // Three utterances with one prompt, and a fourth whose prompt the command cannot embed.
        let prompt = try #require(f.utterances[0].promptAudio)
        let broken = f.dir + "/broken-prompt.wav"
        try? FileManager.default.removeItem(atPath: broken)
        try FileManager.default.copyItem(atPath: prompt, toPath: broken)
        var us = Array(f.utterances.prefix(3)).map { u in var u = u; u.promptAudio = prompt; return u }
        var fourth = f.utterances[3]
        fourth.promptAudio = broken
        us.append(fourth)
        let (_, output) = try await Self.run(us, synthesizer: .reference, embedder: embedder, dir: f.dir)
        let calls = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(calls.filter { $0 == prompt }.count == 1, "the shared prompt is embedded once: \(calls)")
        for r in output.utterances.prefix(3) {
            // Reference synthesizer: the synthesized audio is the target, so sim == floor_sim.
            let sim = try #require(r.sim, "\(r)"), floor = try #require(r.floorSim, "\(r)")
            #expect(sim == floor && sim > 0 && sim <= 1 + 1e-12, "\(r.id): \(sim) \(floor)")
            #expect(calls.filter { $0 == r.audioPath }.count == 1, "the target, also the synthesized audio, is embedded once: \(calls)")
        }
        let last = output.utterances[3]
        #expect(last.error == nil && last.sim == nil && last.mcd == 0, "\(last)")
        #expect(last.measureErrors?["sim"]?.contains("exited with status 1") == true, "\(last.measureErrors ?? [:])")
    }
}
