import Foundation
import Shared
import Testing
@testable import Worker
#if canImport(Glibc)
import Glibc
#endif

/// The `persistent` ASR contract (docs/ASR.md): the real examples/asr/whisper_large_v3_asr.py
/// over a stand-in `faster_whisper` package (Tests/Fixtures/eval/faster_whisper_standin) whose
/// "recognition" reads `AUDIO.txt`, counts its loads and fails, hangs or crashes on request; and
/// a minimal protocol-only server (Tests/Fixtures/eval/asr_standin_server.py) for protocol
/// breaks. A missing python3 makes these tests fail saying so; they never skip.
@Suite(.timeLimit(.minutes(3))) struct PersistentASRTests {
    struct Fixture {
        static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        static let script = root.appendingPathComponent("examples/asr/whisper_large_v3_asr.py").path
        static let standin = root.appendingPathComponent("Tests/Fixtures/eval/faster_whisper_standin").path
        static let server = root.appendingPathComponent("Tests/Fixtures/eval/asr_standin_server.py").path

        let dir: URL
        let python: String
        let modelDir: String
        var loadsFile: String { dir.appendingPathComponent("loads.txt").path }
        var callsFile: String { dir.appendingPathComponent("calls.txt").path }
        var startsFile: String { dir.appendingPathComponent("starts.txt").path }

        init() throws {
            python = try PersistentSynthesizerTests.Fixture.findPython()
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("persistent-asr-\(UUID().uuidString)")
            modelDir = dir.appendingPathComponent("faster-whisper-large-v3").path
            try FileManager.default.createDirectory(atPath: modelDir, withIntermediateDirectories: true)
            for file in ["model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"] {
                try Data("{}\n".utf8).write(to: URL(fileURLWithPath: modelDir + "/" + file))
            }
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("ref"), withIntermediateDirectories: true)
        }

        /// A reference recording whose "transcript" (for both stand-ins) is `heard`.
        func audio(_ name: String, heard: String) throws -> String {
            let path = dir.appendingPathComponent("ref/\(name).wav").path
            let tone = (0..<8000).map { Float(sin(Double($0) * 0.05) * 0.3) }
            try AudioFile.write(AudioClip(samples: tone, sampleRate: 16000), to: path)
            try (heard + "\n").write(toFile: path + ".txt", atomically: true, encoding: .utf8)
            return path
        }

        /// The Whisper example's startup argv over the stand-in package (environment through `env`,
        /// as a job spec would give it).
        func whisperArgv(modelDir: String? = nil, standin: Bool = true) -> [String] {
            ["/usr/bin/env", "PYTHONPATH=\(standin ? Self.standin : dir.path)", "STANDIN_LOADS=\(loadsFile)", "STANDIN_CALLS=\(callsFile)",
             python, Self.script, "--model-dir", modelDir ?? self.modelDir, "--device", "cpu", "--compute-type", "int8", "--beam-size", "5"]
        }

        var serverArgv: [String] { ["/usr/bin/env", "ASR_STANDIN_STARTS=\(startsFile)", python, Self.server] }

        func configuration(_ argv: [String], timeout: Double = 30, maxRestarts: Int = 2) -> PersistentASR.Configuration {
            var c = PersistentASR.Configuration(argv: argv, utteranceTimeout: .milliseconds(Int64(timeout * 1000)),
                                                startupTimeout: .seconds(60), maxRestarts: maxRestarts)
            c.exitGrace = .seconds(3)
            c.terminationGrace = .seconds(2)
            return c
        }

        var loads: [Int32] { PersistentSynthesizerTests.Fixture.lines(loadsFile).compactMap { $0.split(separator: " ").first.flatMap { Int32($0) } } }
        var calls: [String] { PersistentSynthesizerTests.Fixture.lines(callsFile) }
        var starts: [Int32] { PersistentSynthesizerTests.Fixture.lines(startsFile).compactMap { Int32($0) } }

        func cleanUp() { try? FileManager.default.removeItem(at: dir) }
    }

    // MARK: Through the eval executor (the Whisper example over the stand-in)

    /// A shard of `heard.count` utterances: utterance i's reference audio "says" `heard[i]` and
    /// its synthesized audio (a copy made by a command synthesizer) "says" its text, `texts[i]`.
    static func payload(_ f: Fixture, texts: [String], heard: [String], asr: [String], timeout: Double = 30, maxRestarts: Int? = nil) throws -> EvalPayload {
        var utterances: [EvalUtterance] = []
        for i in texts.indices {
            utterances.append(EvalUtterance(id: "utt-\(i)", text: texts[i], referenceAudio: try f.audio("r\(i)", heard: heard[i]), promptAudio: nil))
        }
        // The "model" copies the reference audio and says its text: the ASR reads OUTPUT.txt.
        let synth = SynthesizerSpec(kind: "command", command: ["/bin/sh", "-c", #"cp "$0" "$1" && printf '%s\n' "$2" > "$1.txt""#,
                                                               f.dir.path + "/ref/r0.wav", "{output}", "{text}"], timeoutSeconds: 30)
        return EvalPayload(evalId: 3, checkpoint: "/ckpt/model.pth", utterances: utterances, synthesizer: synth,
                           asr: "persistent", asrCommand: asr, asrTimeoutSeconds: timeout, asrStartupTimeoutSeconds: 60, asrMaxRestarts: maxRestarts,
                           outputDir: f.dir.appendingPathComponent("out").path, withFloor: true)
    }

    static func run(_ payload: EvalPayload) async throws -> (ShardReport, [EvalUtteranceResult]) {
        let a = ShardAssignment(shard: ShardRef(shardId: 1, leaseEpoch: 1), jobId: 1, kind: EvalPayload.shardKind(asr: payload.asr), attempt: 1,
                                payload: try JSONCoding.encode(payload))
        let report = try await EvalExecutor(kind: "eval-command", voskLibrary: nil, voskModel: nil).run(a, context: ShardContext(assignment: a, progress: { _, _ in }))
        let results = (try? JSONCoding.decode(EvalShardOutput.self, from: report.output).utterances) ?? []
        return (report, results)
    }

    @Test("one ASR process serves a whole shard: N utterances and their floors, 2N files, one model load, each transcript back on its own utterance")
    func oneLoadPerShard() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let texts = ["안녕하세요", "반갑습니다", "오늘 날씨가 좋네요", "감사합니다", "또 만나요"]
        let heard = (0..<texts.count).map { "바닥 \($0)번" }
        let (report, results) = try await Self.run(try Self.payload(f, texts: texts, heard: heard, asr: f.whisperArgv()))
        #expect(report.outcome == .succeeded, "\(report.message)")
        #expect(report.message.contains("evaluated 5 utterance(s); the ASR loaded 1 time(s)"), "\(report.message)")
        #expect(results.map(\.id) == (0..<5).map { "utt-\($0)" })
        for (i, r) in results.enumerated() {
            #expect(r.error == nil && r.floorError == nil, "\(r)")
            #expect(r.hypothesis == texts[i], "the synthesized audio's transcript: \(r)")
            #expect(r.floorHypothesis == heard[i], "the floor's transcript: \(r)")
        }
        #expect(f.loads.count == 1, "one model load for the shard: \(f.loads)")
        let calls = f.calls
        #expect(calls.count == 10, "\(calls)")
        #expect(Set(calls.map { $0.split(separator: " ")[0] }) == [Substring(String(f.loads[0]))], "every file went to the one process")
        #expect(calls.allSatisfy { $0.hasSuffix(" ko 5") }, "language ko, beam size 5: \(calls)")
        #expect(PersistentSynthesizerTests.isGone(f.loads[0]), "the ASR exits at the end of the shard")
    }

    @Test("a crash mid-shard is that file's error with the exit status and stderr; the ASR restarts for the next file and the shard succeeds")
    func crashRestarts() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let texts = ["하나", "둘 CRASH", "셋"]
        let (report, results) = try await Self.run(try Self.payload(f, texts: texts, heard: ["바닥 하나", "바닥 둘", "바닥 셋"], asr: f.whisperArgv()))
        #expect(report.outcome == .succeeded, "\(report.message)")
        #expect(report.message.contains("1 with errors; the ASR loaded 2 time(s)"), "\(report.message)")
        #expect(results[0].error == nil && results[0].hypothesis == "하나")
        let crash = try #require(results[1].error)
        #expect(crash.contains("the ASR exited with status 3 while transcribing utt-1") && crash.contains("stand-in crashing"), "\(crash)")
        #expect(results[1].hypothesis == nil)
        #expect(results[1].floorHypothesis == "바닥 둘", "the restarted ASR reads the floor of the same utterance: \(results[1])")
        #expect(results[2].error == nil && results[2].hypothesis == "셋" && results[2].floorHypothesis == "바닥 셋")
        let loads = f.loads
        #expect(loads.count == 2 && loads[0] != loads[1], "\(loads)")
        #expect(loads.allSatisfy(PersistentSynthesizerTests.isGone))
    }

    @Test("an error reply is that file's error and the same process goes on")
    func errorReplyContinues() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let (report, results) = try await Self.run(try Self.payload(f, texts: ["하나", "FAIL 둘", "셋"], heard: ["가", "나", "다"], asr: f.whisperArgv()))
        #expect(report.outcome == .succeeded)
        let failure = try #require(results[1].error)
        #expect(failure.contains("the ASR failed on utt-1") && failure.contains("RuntimeError: stand-in failure"), "\(failure)")
        #expect(results[1].floorHypothesis == "나")
        #expect(results[0].hypothesis == "하나" && results[2].hypothesis == "셋")
        #expect(f.loads.count == 1)
    }

    @Test("missing weights or a missing faster-whisper package fail the shard at start, saying which and what to do")
    func startupFailures() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let (noWeights, _) = try await Self.run(try Self.payload(f, texts: ["하나"], heard: ["가"], asr: f.whisperArgv(modelDir: f.dir.path + "/nowhere")))
        #expect(noWeights.outcome == .failed)
        #expect(noWeights.message.contains("the persistent ASR reported that it cannot start: FileNotFoundError: no Whisper large-v3 weights at")
                && noWeights.message.contains("--model-dir DIR or set WHISPER_MODEL_DIR"), "\(noWeights.message)")
        let (noPackage, _) = try await Self.run(try Self.payload(f, texts: ["하나"], heard: ["가"], asr: f.whisperArgv(standin: false)))
        #expect(noPackage.outcome == .failed)
        #expect(noPackage.message.contains("faster-whisper is not installed") && noPackage.message.contains("pip install faster-whisper"), "\(noPackage.message)")
    }

    // MARK: Protocol (the minimal server)

    /// Transcribes the files as u0, u1, …; each one's text or problem.
    static func transcribe(_ asr: PersistentASR, _ files: [String]) async -> [(text: String?, problem: String?)] {
        var out: [(String?, String?)] = []
        for (i, file) in files.enumerated() {
            let r = await asr.transcribe(id: "u\(i)", audio: file, language: "ko")
            out.append((r.text, r.problem))
        }
        return out
    }

    @Test("a malformed reply names the line; a reply for another id or without text or error is a protocol error; each restarts the process for the next file")
    func protocolBreaks() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let files = try ["가", "MALFORMED", "나", "WRONGID", "다", "NOTEXT", "라", "ERROR"].enumerated().map { try f.audio("p\($0.offset)", heard: $0.element) }
        let asr = PersistentASR(f.configuration(f.serverArgv, maxRestarts: 5))
        let r = await Self.transcribe(asr, files)
        #expect(r[0].text == "가" && r[2].text == "나" && r[4].text == "다" && r[6].text == "라", "\(r)")
        #expect(r[1].problem?.contains(#"protocol error while transcribing u1: a protocol line with fields of the wrong type: {"id": "u1", "text": 42}"#) == true,
                "\(String(describing: r[1].problem))")
        #expect(r[3].problem?.contains("protocol error: the ASR sent a reply for 'someone-else' while u3 was asked") == true, "\(String(describing: r[3].problem))")
        #expect(r[5].problem?.contains("protocol error: the ASR sent a reply for 'u5' without text or error while u5 was asked") == true, "\(String(describing: r[5].problem))")
        #expect(r[7].problem?.contains("the ASR failed on u7") == true && r[7].problem?.contains("cannot read") == true, "\(String(describing: r[7].problem))")
        #expect(f.starts.count == 4, "one start and three restarts (an error reply is no protocol break): \(f.starts)")
        #expect(await asr.starts == 4)
        await asr.shutdown()
        #expect(f.starts.allSatisfy(PersistentSynthesizerTests.isGone))
    }

    @Test("a file that takes longer than timeout_seconds is that file's error; the process group is killed and a new one reads the next file")
    func timeoutIsEnforced() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let files = try ["가", "HANG", "나"].enumerated().map { try f.audio("t\($0.offset)", heard: $0.element) }
        let asr = PersistentASR(f.configuration(f.serverArgv, timeout: 2))
        let clock = ContinuousClock()
        let began = clock.now
        let r = await Self.transcribe(asr, files)
        #expect(clock.now - began < .seconds(20))
        #expect(r[0].text == "가" && r[2].text == "나", "\(r)")
        #expect(r[1].problem?.contains("the ASR did not answer for u1 within 2 s (timeout_seconds)") == true, "\(String(describing: r[1].problem))")
        let starts = f.starts
        #expect(starts.count == 2)
        #expect(PersistentSynthesizerTests.isGone(starts[0]), "the hung process must be gone")
        await asr.shutdown()
        #expect(await asr.lastExit == .success)
    }

    @Test("restarts are bounded per shard: past max_restarts the remaining files fail at once, saying why")
    func restartsAreBounded() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let files = try ["CRASH", "CRASH", "가"].enumerated().map { try f.audio("b\($0.offset)", heard: $0.element) }
        let asr = PersistentASR(f.configuration(f.serverArgv, maxRestarts: 1))
        let r = await Self.transcribe(asr, files)
        #expect(r[0].problem?.contains("exited with status 5 while transcribing u0") == true && r[0].problem?.contains("asr stand-in crashing on u0") == true,
                "\(String(describing: r[0].problem))")
        #expect(r[2].problem?.contains("the persistent ASR is not available: it was restarted 1 time(s) in this shard") == true, "\(String(describing: r[2].problem))")
        #expect(f.starts.count == 2)
        await asr.shutdown()
    }
}
