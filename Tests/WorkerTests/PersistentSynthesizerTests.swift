import Foundation
import Shared
import Testing
@testable import Worker
#if canImport(Glibc)
import Glibc
#endif

/// The `persistent` synthesizer contract (docs/SYNTHESIZER.md), with the real
/// examples/synthesizers/indextts2_synth.py over a stand-in `indextts` package
/// (Tests/Fixtures/eval/indextts_standin) that loads nothing, writes sine WAVs, counts its loads
/// and fails, hangs or crashes on request; plus small scripted synthesizers for protocol breaks.
/// A missing python3 makes these tests fail saying so; they never skip.
@Suite(.timeLimit(.minutes(3))) struct PersistentSynthesizerTests {
    // MARK: Fixture

    struct Fixture {
        static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        static let script = root.appendingPathComponent("examples/synthesizers/indextts2_synth.py").path
        static let standin = root.appendingPathComponent("Tests/Fixtures/eval/indextts_standin").path

        let dir: URL
        let python: String
        let prompt: String
        let checkpoint: String
        let modelDir: String
        var loadsFile: String { dir.appendingPathComponent("loads.txt").path }
        var callsFile: String { dir.appendingPathComponent("calls.txt").path }
        var childPidsFile: String { dir.appendingPathComponent("children.txt").path }

        init() throws {
            python = try Self.findPython()
            dir = FileManager.default.temporaryDirectory.appendingPathComponent("persistent-synth-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("model"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: dir.appendingPathComponent("audio"), withIntermediateDirectories: true)
            modelDir = dir.appendingPathComponent("model").path
            try Data("gpt: {}\n".utf8).write(to: URL(fileURLWithPath: modelDir + "/config.yaml"))
            checkpoint = dir.appendingPathComponent("model_step100.pth").path
            try Data("not really a checkpoint".utf8).write(to: URL(fileURLWithPath: checkpoint))
            prompt = dir.appendingPathComponent("prompt.wav").path
            let tone = (0..<8000).map { Float(sin(Double($0) * 0.05) * 0.3) }
            try AudioFile.write(AudioClip(samples: tone, sampleRate: 16000), to: prompt)
        }

        /// The real interpreter behind `python3` on PATH (not a pyenv shim).
        static func findPython() throws -> String {
            let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
            let candidates: [String] = path.split(separator: ":").map { String($0) + "/python3" }
            guard let shim = candidates.first(where: { access($0, X_OK) == 0 }) else {
                Issue.record("python3 is not on PATH (\(path)); these tests run the real examples/synthesizers/indextts2_synth.py and need it: install python3")
                throw FixtureMissing()
            }
            let p = Process()
            p.executableURL = URL(fileURLWithPath: shim)
            p.arguments = ["-c", "import sys; print(sys.executable)"]
            let out = Pipe()
            p.standardOutput = out
            try p.run()
            let data = out.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            let exe = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard p.terminationStatus == 0, !exe.isEmpty else {
                Issue.record("\(shim) does not run (status \(p.terminationStatus)); these tests need a working python3")
                throw FixtureMissing()
            }
            return exe
        }

        struct FixtureMissing: Error {}

        var environment: [String: String] {
            var env = ProcessInfo.processInfo.environment
            env["PYTHONPATH"] = Self.standin
            env["STANDIN_LOADS"] = loadsFile
            env["STANDIN_CALLS"] = callsFile
            env["PYTHONUNBUFFERED"] = "1"
            return env
        }

        /// The IndexTTS-2 synthesizer's startup argv for this fixture.
        func argv(checkpoint: String? = nil) -> [String] {
            [python, Self.script, "--checkpoint", checkpoint ?? self.checkpoint, "--model-dir", modelDir]
        }

        func configuration(argv: [String]? = nil, timeout: Double = 30, startup: Double = 60, maxRestarts: Int = 2,
                           env extra: [String: String] = [:]) -> PersistentSynthesizer.Configuration {
            var c = PersistentSynthesizer.Configuration(argv: argv ?? self.argv(), utteranceTimeout: .milliseconds(Int64(timeout * 1000)),
                                                        startupTimeout: .milliseconds(Int64(startup * 1000)), maxRestarts: maxRestarts)
            c.environment = environment.merging(extra) { _, new in new }
            c.exitGrace = .seconds(3)
            c.terminationGrace = .seconds(2)
            return c
        }

        /// A small Python synthesizer written for one test.
        func script(_ name: String, _ source: String) throws -> [String] {
            let path = dir.appendingPathComponent(name).path
            try source.write(toFile: path, atomically: true, encoding: .utf8)
            return [python, path]
        }

        func output(_ id: String) -> String { dir.appendingPathComponent("audio/\(id).wav").path }

        /// The pids of the model loads, in order.
        var loads: [Int32] { Self.lines(loadsFile).compactMap { $0.split(separator: " ").first.flatMap { Int32($0) } } }
        var calls: [String] { Self.lines(callsFile) }
        var childPids: [Int32] { Self.lines(childPidsFile).compactMap { Int32($0) } }

        static func lines(_ path: String) -> [String] {
            ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }

        func cleanUp() { try? FileManager.default.removeItem(at: dir) }
    }

    static func isRunning(_ pid: Int32) -> Bool { kill(pid, 0) == 0 && (ProcessStat.read(pid: pid)?.isRunning ?? false) }

    /// Neither the process nor anything of its group runs any more.
    static func isGone(_ pid: Int32) -> Bool { !isRunning(pid) && !ProcessGroup(id: pid).hasLiveMembers }

    static func eventually(within seconds: Double, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    /// Synthesizes `texts` as utterances u0, u1, … and returns each one's problem (nil: success).
    static func run(_ synth: PersistentSynthesizer, _ f: Fixture, _ texts: [String]) async -> [String?] {
        var problems: [String?] = []
        for (i, t) in texts.enumerated() {
            problems.append(await synth.synthesize(id: "u\(i)", text: t, promptAudio: f.prompt, output: f.output("u\(i)")).problem)
        }
        return problems
    }

    // MARK: The IndexTTS-2 synthesizer over the stand-in

    @Test("one model load serves every utterance of a shard; the audio is 22050 Hz WAV; the process exits 0 by itself when stdin closes")
    func oneLoadServesEveryUtterance() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration())
        try await synth.start()
        let ready = try #require(await synth.ready)
        #expect(ready.sampleRate == 22050 && ready.version == 1 && ready.name == "indextts2")
        let texts = ["안녕하세요.", "반갑습니다.", "오늘 날씨가 좋네요.", "감사합니다.", "또 만나요."]
        let problems = await Self.run(synth, f, texts)
        #expect(problems == Array(repeating: nil, count: texts.count))
        for i in texts.indices {
            let clip = try AudioFile.read(f.output("u\(i)"))
            #expect(clip.sampleRate == 22050 && clip.duration > 0.4)
        }
        #expect(f.loads.count == 1, "the model must load once for the shard: \(f.loads)")
        #expect(Fixture.lines(f.loadsFile).first?.hasSuffix(" \(f.checkpoint)") == true, "the checkpoint is the gpt_ckpt_override")
        #expect(f.calls.count == texts.count && Set(f.calls.map { $0.split(separator: " ")[0] }).count == 1)
        let pid = try #require(await synth.pid)
        await synth.shutdown()
        #expect(await synth.lastExit == .success)
        #expect(Self.isGone(pid))
        #expect(await synth.starts == 1)
        #expect(await synth.restarts == 0)
    }

    @Test("a failing utterance is that utterance's error, the same process goes on with the next")
    func failingUtteranceContinues() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration())
        let problems = await Self.run(synth, f, ["하나", "둘 FAIL", "셋"])
        #expect(problems[0] == nil && problems[2] == nil)
        #expect(problems[1]?.contains("RuntimeError: stand-in failure") == true, "\(String(describing: problems[1]))")
        #expect(!FileManager.default.fileExists(atPath: f.output("u1")))
        #expect(f.loads.count == 1)
        #expect(await synth.restarts == 0)
        await synth.shutdown()
    }

    @Test("a hang times out that utterance only; the process group is killed, a new process serves the next utterance")
    func hangTimesOutAndRestarts() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration(timeout: 3))
        let clock = ContinuousClock()
        let began = clock.now
        let problems = await Self.run(synth, f, ["하나", "HANG", "셋", "넷"])
        #expect(clock.now - began < .seconds(30))
        #expect(problems[0] == nil && problems[2] == nil && problems[3] == nil, "\(problems)")
        #expect(problems[1]?.contains("did not answer for u1 within 3 s") == true, "\(String(describing: problems[1]))")
        let loads = f.loads
        #expect(loads.count == 2 && loads[0] != loads[1], "one restart: \(loads)")
        #expect(Self.isGone(loads[0]), "the hung process must be gone")
        #expect(await synth.restarts == 1)
        await synth.shutdown()
        #expect(Self.isGone(loads[1]))
    }

    @Test("a crash is that utterance's error with the exit status and stderr; the next utterance restarts it")
    func crashRestarts() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration())
        let problems = await Self.run(synth, f, ["하나", "CRASH", "셋"])
        #expect(problems[0] == nil && problems[2] == nil, "\(problems)")
        let crash = try #require(problems[1])
        #expect(crash.contains("exited with status 3 while synthesizing u1") && crash.contains("stand-in crashing"), "\(crash)")
        #expect(f.loads.count == 2)
        await synth.shutdown()
    }

    @Test("restarts are bounded per shard: past max_restarts the remaining utterances fail at once, saying why")
    func restartsAreBounded() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration(maxRestarts: 1))
        let problems = await Self.run(synth, f, ["CRASH", "CRASH", "셋", "넷"])
        #expect(problems[0]?.contains("exited with status 3") == true && problems[1]?.contains("exited with status 3") == true)
        #expect(problems[2]?.contains("not available: it was restarted 1 time(s) in this shard") == true, "\(String(describing: problems[2]))")
        #expect(problems[3] == problems[2])
        #expect(f.loads.count == 2)
        #expect(await synth.pid == nil)
        await synth.shutdown()
    }

    @Test("library prints on stdout (from Python and from C on fd 1) never reach the protocol stream")
    func chatterStaysOffStdout() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        // Run the script by hand: every stdout line must be a protocol line.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: f.python)
        p.arguments = Array(f.argv().dropFirst())
        p.environment = f.environment
        let input = Pipe(), output = Pipe()
        p.standardInput = input
        p.standardOutput = output
        p.standardError = FileHandle.nullDevice
        try p.run()
        let request = #"{"id": "a", "text": "안녕", "prompt_audio": "\#(f.prompt)", "output": "\#(f.output("a"))"}"# + "\n"
        input.fileHandleForWriting.write(Data(request.utf8))
        try input.fileHandleForWriting.close()
        let lines = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
        #expect(lines.count == 2, "\(lines)")
        #expect(lines.allSatisfy { SynthesizerMessage.parse(Array($0.utf8)[...]) != .noise }, "\(lines)")
    }

    // MARK: Protocol breaks (scripted synthesizers)

    static let scripted = """
    import json, os, sys
    print("loading the model...", flush=True)
    print("{'not': 'json'}", flush=True)
    print("[1, 2, 3]", flush=True)
    print('{"progress": 0.5}', flush=True)
    print(json.dumps({"ready": True, "sample_rate": 16000, "name": "scripted", "version": 1}), flush=True)
    for line in sys.stdin:
        r = json.loads(line)
        t = r["text"]
        print("chatter before the reply", flush=True)
        if t == "WRONGID":
            print(json.dumps({"id": "someone-else", "ok": True}), flush=True)
        elif t == "HUGE":
            sys.stdout.write("x" * (2 << 20) + "\\n")
            sys.stdout.flush()
        elif t == "BADTYPE":
            print(json.dumps({"id": r["id"], "ok": "yes"}), flush=True)
        elif t == "NOFILE":
            print(json.dumps({"id": r["id"], "ok": True}), flush=True)
        else:
            with open(r["output"], "wb") as f:
                f.write(b"RIFF")
            print(json.dumps({"id": r["id"], "ok": True, "output": r["output"], "seconds": 0.01}), flush=True)
    """

    @Test("non-JSON stdout lines are ignored; a reply for another id, a line over 1 MiB and a malformed reply are protocol errors that restart the process")
    func protocolBreaks() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration(argv: try f.script("scripted.py", Self.scripted), maxRestarts: 5))
        let problems = await Self.run(synth, f, ["a", "WRONGID", "b", "HUGE", "c", "BADTYPE", "d", "NOFILE", "e"])
        #expect(problems[0] == nil && problems[2] == nil && problems[4] == nil && problems[6] == nil && problems[8] == nil, "\(problems)")
        #expect(problems[1]?.contains("protocol error: the synthesizer sent a reply for 'someone-else' while u1 was asked") == true, "\(String(describing: problems[1]))")
        #expect(problems[3]?.contains("a stdout line longer than 1 MiB") == true, "\(String(describing: problems[3]))")
        #expect(problems[5]?.contains("fields of the wrong type") == true, "\(String(describing: problems[5]))")
        #expect(problems[7]?.contains("answered ok for u7 but wrote no") == true, "\(String(describing: problems[7]))")
        #expect(await synth.starts == 4, "one start and three restarts (NOFILE is no protocol break)")
        await synth.shutdown()
    }

    @Test("a line cut anywhere, a \\r\\n ending and several lines in one read are split right; an overflow drops exactly the long line")
    func boundedLineSplitting() {
        var splitter = BoundedLine(limit: 8)
        var lines: [String] = []
        var overflows = 0
        for chunk in ["ab", "c\nde", "f\r\ng\nh", "0123456789", "xyz\nok\n", "tail"] {
            splitter.append(Array(chunk.utf8)[...], onLine: { lines.append(String(decoding: $0, as: UTF8.self)) }, onOverflow: { overflows += 1 })
        }
        #expect(lines == ["abc", "def\r", "g", "ok"])
        #expect(overflows == 1)
        #expect(splitter.remainder.map { String(decoding: $0, as: UTF8.self) } == "tail")
    }

    // MARK: Start and end

    @Test("a startup that takes longer than startup_timeout_seconds fails saying so, and leaves nothing running")
    func startupTimeout() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration(startup: 1.5, env: ["STANDIN_LOAD_SECONDS": "120"]))
        let clock = ContinuousClock()
        let began = clock.now
        let error = await #expect(throws: ShardFailure.self) { try await synth.start() }
        #expect(error?.message.contains("was not ready within 1.5 s (startup_timeout_seconds)") == true, "\(String(describing: error))")
        #expect(clock.now - began < .seconds(15))
        let pid = try #require(f.loads.first)
        #expect(Self.isGone(pid))
    }

    @Test("a synthesizer that cannot start says why: ready:false, an exit before ready, a missing program, another protocol version")
    func startupFailures() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        func failure(_ c: PersistentSynthesizer.Configuration) async -> String {
            do {
                try await PersistentSynthesizer(c).start()
                return "started"
            } catch { return "\(error)" }
        }
        let missing = await failure(f.configuration(argv: f.argv(checkpoint: f.dir.path + "/nope.pth")))
        #expect(missing.contains("reported that it cannot start: FileNotFoundError: checkpoint not found: ") && missing.contains("nope.pth"), "\(missing)")
        let exits = await failure(f.configuration(argv: [f.python, "-c", "import sys; sys.stderr.write('boom\\n'); sys.exit(4)"]))
        #expect(exits.contains("exited with status 4 before it was ready") && exits.contains("boom"), "\(exits)")
        let absent = await failure(f.configuration(argv: [f.dir.path + "/no-such-synth"]))
        #expect(absent.contains("cannot start the synthesizer"), "\(absent)")
        let version = await failure(f.configuration(argv: try f.script("v2.py", "import json\nprint(json.dumps({'ready': True, 'version': 2}), flush=True)\ninput()\n")))
        #expect(version.contains("speaks protocol version 2"), "\(version)")
    }

    @Test("after the shard the whole process group is gone, children included; one that ignores stdin's end and SIGTERM is killed")
    func processGroupGoneAfterShard() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration(env: ["STANDIN_CHILD_PIDS": f.childPidsFile]))
        #expect(await Self.run(synth, f, ["하나"]) == [nil])
        let pid = try #require(await synth.pid)
        let child = try #require(f.childPids.first)
        #expect(Self.isRunning(child))
        await synth.shutdown()
        #expect(await synth.lastExit == .success)
        #expect(Self.isGone(pid) && !Self.isRunning(child), "the leader and its sleep 300 child must be gone")

        let stubborn = """
        import json, signal, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print(json.dumps({"ready": True, "version": 1}), flush=True)
        for line in sys.stdin:
            pass
        time.sleep(3600)
        """
        var c = f.configuration(argv: try f.script("stubborn.py", stubborn))
        c.exitGrace = .milliseconds(300)
        c.terminationGrace = .milliseconds(300)
        let s2 = PersistentSynthesizer(c)
        try await s2.start()
        let pid2 = try #require(await s2.pid)
        await s2.shutdown()
        #expect(await s2.lastExit == .killed(signal: SIGKILL, lastLines: []))
        #expect(Self.isGone(pid2))
    }

    @Test("cancelling the task during an utterance kills the process group at once")
    func cancellationKills() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let synth = PersistentSynthesizer(f.configuration(timeout: 120, env: ["STANDIN_CHILD_PIDS": f.childPidsFile]))
        try await synth.start()
        let pid = try #require(await synth.pid)
        let task = Task { await synth.synthesize(id: "h", text: "HANG", promptAudio: f.prompt, output: f.output("h")).problem }
        #expect(await Self.eventually(within: 20) { f.calls.contains { $0.hasSuffix(" HANG") } })
        let clock = ContinuousClock()
        let began = clock.now
        task.cancel()
        #expect(await task.value == "cancelled")
        #expect(clock.now - began < .seconds(10))
        #expect(Self.isGone(pid))
        if let child = f.childPids.first { #expect(!Self.isRunning(child)) }
        await synth.shutdown()
    }

    // MARK: Through the eval executor

    static func payload(_ f: Fixture, texts: [String], checkpoint: String? = nil, startup: Double = 60) -> EvalPayload {
        let env = f.environment
        let command = ["/usr/bin/env", "PYTHONPATH=\(env["PYTHONPATH"]!)", "STANDIN_LOADS=\(f.loadsFile)", "STANDIN_CALLS=\(f.callsFile)",
                       f.python, Fixture.script, "--checkpoint", "{checkpoint}", "--model-dir", f.modelDir]
        let utterances = texts.enumerated().map { EvalUtterance(id: "utt-\($0.offset)", text: $0.element, referenceAudio: nil, promptAudio: f.prompt) }
        return EvalPayload(evalId: 7, checkpoint: checkpoint ?? f.checkpoint, utterances: utterances,
                           synthesizer: SynthesizerSpec(kind: "persistent", command: command, timeoutSeconds: 30, startupTimeoutSeconds: startup),
                           asr: "command", asrCommand: ["/bin/sh", "-c", "echo 들었습니다"], asrTimeoutSeconds: 30,
                           outputDir: f.dir.appendingPathComponent("out").path, withFloor: false)
    }

    static func assignment(_ payload: EvalPayload) throws -> ShardAssignment {
        ShardAssignment(shard: ShardRef(shardId: 1, leaseEpoch: 1), jobId: 1, kind: "eval-command", attempt: 1, payload: try JSONCoding.encode(payload))
    }

    @Test("an eval shard with kind: persistent loads the synthesizer once, transcribes its audio, and keeps a failed utterance as that utterance's error")
    func evalShardEndToEnd() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let payload = Self.payload(f, texts: ["안녕하세요", "반갑습니다", "FAIL 이것은", "감사합니다"])
        let a = try Self.assignment(payload)
        let report = try await EvalExecutor(kind: "eval-command", voskLibrary: nil, voskModel: nil).run(a, context: ShardContext(assignment: a, progress: { _, _ in }))
        #expect(report.outcome == .succeeded, "\(report.message)")
        #expect(report.message.contains("evaluated 4 utterance(s), 1 with errors; the synthesizer loaded 1 time(s)"), "\(report.message)")
        let results = try JSONCoding.decode(EvalShardOutput.self, from: report.output).utterances
        #expect(results.map(\.id) == ["utt-0", "utt-1", "utt-2", "utt-3"])
        for r in results where r.id != "utt-2" {
            #expect(r.error == nil && r.hypothesis == "들었습니다", "\(r)")
            #expect(r.audioPath == payload.outputDir + "/audio/\(r.id).wav" && (r.audioSeconds ?? 0) > 0.4)
            #expect(r.synthesisSeconds < 10)
        }
        #expect(results[2].error?.contains("stand-in failure") == true && results[2].hypothesis == nil)
        #expect(f.loads.count == 1)
        #expect(Self.isGone(try #require(f.loads.first)))
    }

    @Test("an eval shard whose persistent synthesizer never becomes ready fails, saying why")
    func evalShardStartupFailure() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let a = try Self.assignment(Self.payload(f, texts: ["안녕하세요"], checkpoint: f.dir.path + "/missing.pth"))
        let report = try await EvalExecutor(kind: "eval-command", voskLibrary: nil, voskModel: nil).run(a, context: ShardContext(assignment: a, progress: { _, _ in }))
        #expect(report.outcome == .failed)
        #expect(report.message.contains("the persistent synthesizer reported that it cannot start") && report.message.contains("missing.pth"), "\(report.message)")
    }

    @Test("cancelling an eval shard mid-utterance throws and leaves no synthesizer running")
    func evalShardCancellation() async throws {
        let f = try Fixture()
        defer { f.cleanUp() }
        let a = try Self.assignment(Self.payload(f, texts: ["하나", "HANG", "셋"]))
        let executor = EvalExecutor(kind: "eval-command", voskLibrary: nil, voskModel: nil)
        let task = Task { try await executor.run(a, context: ShardContext(assignment: a, progress: { _, _ in })) }
        #expect(await Self.eventually(within: 30) { f.calls.contains { $0.hasSuffix(" HANG") } })
        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        let pid = try #require(f.loads.first)
        #expect(await Self.eventually(within: 10) { Self.isGone(pid) })
    }
}
