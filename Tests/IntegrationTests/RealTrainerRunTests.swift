import Foundation
import Shared
import Testing
#if canImport(Glibc)
import Glibc
import JobSpecs
import ClusterAdmin
#endif

/// Issue 15 with real processes: a coordinator, workers, and the faithful fixture of the guide's
/// trainer (Tests/Fixtures/trainer/indextts-fixture/trainers/train_gpt_v2.py, mirroring
/// edu-ide/index-tts 7de3cca: latest.pth and latest_full.pth overwritten by rename, best_model.pth
/// in place, a light resume restarts the LR schedule) run exactly as a job for the real trainer
/// runs it: `python trainers/train_gpt_v2.py …` in the repository's directory.
@Suite("The real trainer's fixture under the cluster", .serialized)
struct RealTrainerRunTests {
    static let repository = TrainerVenv.fixtures.appendingPathComponent("indextts-fixture").path
    static let a6000 = TrainingRunTests.a6000

    /// The fixture's inputs (manifests, tokenizer, config, base checkpoint) as trainer arguments.
    static func inputs(_ h: ClusterHarness, python: String) throws -> [String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [TrainerVenv.fixtures.appendingPathComponent("make_fixture_manifests.py").path,
                       "--out", h.dir.appendingPathComponent("data").path, "--train", "64", "--val", "4"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw HarnessError("make_fixture_manifests.py failed") }
        return text.split(whereSeparator: \.isWhitespace).map(String.init)
    }

    /// A job for the real trainer: the flags it needs, the cluster's placeholders, the fixture's
    /// cadence knobs (latest.pth every `light`, latest_full.pth every `full` steps).
    static func spec(_ h: ClusterHarness, python: String, name: String, maxSteps: Int, evalEvery: Int, checkpointEvery: Int,
                     light: Int, full: Int, stepSeconds: Double, extra: String = "") throws -> String {
        let inputs = try inputs(h, python: python).map { "\"\($0)\"" }.joined(separator: ", ")
        return """
            name: \(name)
            project: tts-it
            workdir: "\(repository)"
            python: "\(python)"
            env:
              PYTHONUNBUFFERED: "1"
              TTS_FIXTURE_LIGHT_EVERY: "\(light)"
              TTS_FIXTURE_FULL_EVERY: "\(full)"
              TTS_FIXTURE_STEP_SECONDS: "\(stepSeconds)"
              TTS_FIXTURE_INFER_SECONDS: "0.1"
            command: [python, trainers/train_gpt_v2.py, \(inputs),
                      --output-dir, "{output_dir}", --batch-size, "{batch_size}", --grad-accumulation, "{grad_accum}",
                      --learning-rate, "{lr}", --warmup-steps, "{warmup}", --log-interval, "10", --val-interval, "{eval_every}",
                      --max-steps, "{max_steps}", --epochs, "999", --num-workers, "1", --scheduler, cosine, --no-aim,
                      --resume, "{resume_checkpoint}"]
            hyperparameters: {lr: 1e-4, warmup: 20}
            eval_every: \(evalEvery)
            checkpoint_every: \(checkpointEvery)
            max_steps: \(maxSteps)
            max_retries: 2
            output_dir: "\(h.dir.path)/runs/{run_name}-{run_id}"
            presets:
              a6000: {match: {name: A6000}, batch_size: 4, grad_accum: 1}
            \(extra)
            """
    }

    /// The LR the fixture's cosine schedule gives at `step` (transformers' get_cosine_schedule_with_warmup).
    static func cosineLR(_ step: Int64, base: Double = 1e-4, warmup: Double = 20, total: Double) -> Double {
        let s = Double(step)
        if s < warmup { return base * s / warmup }
        return base * 0.5 * (1 + cos(.pi * (s - warmup) / (total - warmup)))
    }

    @Test("`submit --dry-run` of each example shows every card's command, and the trainer's own argument parser (the fixture mirrors its flags, types and choices) accepts each one with --num-workers of at least 1")
    func examplesDryRun() throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        let examples = TrainerVenv.fixtures.deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("examples")
        let files = try FileManager.default.contentsOfDirectory(atPath: examples.path).filter { $0.hasSuffix(".yaml") }.sorted()
        #expect(files.count >= 2)
        let check = """
            import sys
            sys.path.insert(0, "trainers")
            import train_gpt_v2 as t
            sys.argv = ["train_gpt_v2.py"] + sys.argv[1:]
            a = t.parse_args()
            assert a.num_workers >= 1, "--num-workers %d: the real trainer crashes before step 1 with 0" % a.num_workers
            print("ok")
            """
        for file in files {
            let r = try h.cli(["submit", examples.appendingPathComponent(file).path, "--dry-run"], connect: false)
            #expect(r.status == 0, "\(file): \(r.err)")
            #expect(!r.out.contains("note:"), "\(file): \(r.out)")
            let commands = try r.out.split(separator: "\n").filter { $0.hasPrefix("  ") }.map { try CommandTemplate.split(String($0)) }
            #expect(commands.count >= 2, "\(file): \(r.out)")
            #expect(commands.contains { $0.contains("--resume") } && commands.contains { !$0.contains("--resume") })
            for argv in commands {
                #expect(argv.count > 2 && argv[1] == "trainers/train_gpt_v2.py" && !argv.contains(""), "\(file): \(argv)")
                let p = Process()
                p.executableURL = URL(fileURLWithPath: python)
                p.arguments = ["-c", check] + argv.dropFirst(2)
                p.currentDirectoryURL = URL(fileURLWithPath: Self.repository)
                let out = Pipe(), err = Pipe()
                p.standardOutput = out
                p.standardError = err
                try p.run()
                let o = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                let e = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                p.waitUntilExit()
                #expect(p.terminationStatus == 0 && o.contains("ok"), "\(file): the trainer's parser refused \(argv): \(e)")
            }
        }
    }

    @Test("eval_every evaluates each pin at its step; keep: {last: 1} leaves exactly the final pin, which holds the step inside it (125) though the trainer last logged step 120")
    func evaluationsAndRetentionOnPins() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("trainer", Self.a6000)
        try h.startWorker("evaluator", Self.a6000)
        try await h.waitUntil("both workers are live", timeout: 20) { try h.workers().count == 2 }
        let manifest = h.dir.appendingPathComponent("eval.jsonl").path
        try (#"{"id": "u1", "target_text": "안녕하세요"}"# + "\n" + #"{"id": "u2", "target_text": "감사합니다"}"# + "\n")
            .write(toFile: manifest, atomically: true, encoding: .utf8)
        let synth = "import sys, wave; w = wave.open(sys.argv[1], 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(bytes(range(256)) * 125); w.close()"
        let spec = try Self.spec(h, python: python, name: "ko-pins", maxSteps: 125, evalEvery: 50, checkpointEvery: 50, light: 10, full: 50,
                                 stepSeconds: 0.08, extra: """
            keep: {last: 1}
            eval:
              manifests: ["\(manifest)::ko"]
              shards: 1
              synthesizer: {command: ["\(python)", "-c", "\(synth)", "{output}"]}
              asr: {command: ["\(python)", "-c", "print('안녕하세요')", "{audio}"]}
            """)
        let reply = try h.submitJob(spec)
        let runId = try #require(reply.runs.first?.id)
        try await h.waitUntil("the run and its evaluations are done", timeout: 180) {
            let evals = try h.cliJSON(["evals"], as: [EvalSummary].self).filter { $0.runId == runId }
            return try h.runSummary(runId).state == "succeeded" && evals.count == 2 && evals.allSatisfy { $0.state != "running" }
        }
        let output = "\(h.dir.path)/runs/ko-pins-\(runId)"
        let evals = try h.cliJSON(["evals"], as: [EvalSummary].self).filter { $0.runId == runId }.sorted { ($0.step ?? 0) < ($1.step ?? 0) }
        #expect(evals.map(\.step) == [50, 100], "one evaluation per eval_every pin")
        #expect(evals.allSatisfy { $0.state == "succeeded" && $0.checkpoint.hasPrefix(output + "/pins/step-") })
        let lines = try h.runLogLines(runId)
        #expect(lines.contains { $0.hasPrefix("[Train] ") && $0.contains(" step=120 ") })
        #expect(!lines.contains { $0.hasPrefix("[Train] ") && $0.contains(" step=125 ") })
        let summary = try h.runSummary(runId)
        #expect(summary.checkpointStep == 125, "the final pin carries the step inside the file, not the last logged step")
        #expect(summary.checkpoint == output + "/pins/step-125.pth")
        let left = try FileManager.default.contentsOfDirectory(atPath: output + "/pins").filter { $0.hasSuffix(".pth") }.sorted()
        #expect(left.contains("step-125.pth") && left.allSatisfy { $0.hasPrefix("step-125") }, "keep: {last: 1} after both evaluations are done: \(left)")
        #expect(lines.filter { $0.hasPrefix("[retention] deleted pin") }.count >= 2)
        #expect(lines.contains { $0.hasPrefix("[retention] deleted pin \(output)/pins/step-50") })
    }

    @Test("kill -9 of the worker: the run resumes on another worker from the newest full-state pin, the LR curve continues (no warm-up restart), every logged step once")
    func killResumesFromFullState() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator(["--lost-after-ms", "3000", "--heartbeat-ms", "500"])
        try h.startWorker("first", Self.a6000)
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try h.submitJob(try Self.spec(h, python: python, name: "ko-kill", maxSteps: 200, evalEvery: 1000, checkpointEvery: 1000,
                                                light: 10, full: 50, stepSeconds: 0.08))
        let runId = try #require(reply.runs.first?.id)
        try await h.waitUntil("a full-state pin at step 100 and training past 120", timeout: 90) {
            let r = try h.runSummary(runId)
            return (r.checkpointStep ?? 0) >= 100 && (r.step ?? 0) >= 120
        }
        let fullStep = try #require(try h.runSummary(runId).checkpointStep)
        h.kill9("first")
        try h.startWorker("second", Self.a6000)
        try await h.waitUntil("the run succeeded on the second worker", timeout: 120) { try h.runSummary(runId).state == "succeeded" }
        let output = "\(h.dir.path)/runs/ko-kill-\(runId)"
        let lines = try h.runLogLines(runId)
        #expect(lines.contains { $0.hasPrefix("[lost] worker first lost") }, "the run's log says why its trainer stopped")
        let note = try #require(lines.first { $0.hasPrefix("[resume] resuming from \(output)/pins/step-") })
        #expect(note.contains("with full state"), "\(note)")
        let resumedAt = try #require(note.firstMatch(of: /pins\/step-(\d+)\.pth at step (\d+)/).flatMap { Int64($0.2) })
        #expect(resumedAt >= fullStep && resumedAt % 50 == 0)
        #expect(lines.contains { $0.hasPrefix("[Info] Resumed from \(output)/pins/step-\(resumedAt).pth at epoch ") && $0.hasSuffix(", step \(resumedAt).") })
        #expect(!lines.contains { $0.contains("resume mismatch") })
        // The LR follows one schedule across the kill: from full state the warm-up does not restart.
        let lr = try h.series(runId, "train/lr")
        #expect(lr.map(\.step) == Array(stride(from: 10, through: 200, by: 10)), "every logged step once")
        for p in lr {
            let expected = Self.cosineLR(p.step, total: 200)
            #expect(abs((p.value ?? .nan) - expected) < 3e-6, "lr at step \(p.step): \(p.value ?? .nan) vs \(expected)")
        }
        let shard = try #require(try h.shards().first { $0.id == reply.runs[0].shardId })
        #expect(shard.history.map(\.state) == ["lost", "succeeded"])
    }

    @Test("drain: the worker waits for the trainer's next full-state checkpoint before stopping it; the run resumes from that checkpoint on another worker and loses no optimizer state")
    func drainWaitsForFullCheckpoint() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("first", Self.a6000)
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try h.submitJob(try Self.spec(h, python: python, name: "ko-drain", maxSteps: 260, evalEvery: 1000, checkpointEvery: 1000,
                                                light: 10, full: 80, stepSeconds: 0.06))
        let runId = try #require(reply.runs.first?.id)
        try await h.waitUntil("training past step 90", timeout: 90) { (try h.runSummary(runId).step ?? 0) >= 90 }
        let drained = try h.cli(["drain", "first"])
        #expect(drained.status == 0, "\(drained.err)")
        let askedAt = try #require(try h.runSummary(runId).step)
        try await h.waitUntil("the first worker stopped", timeout: 60) { !(h.process("first")?.isRunning ?? false) }
        try h.startWorker("second", Self.a6000)
        try await h.waitUntil("the run succeeded on the second worker", timeout: 120) { try h.runSummary(runId).state == "succeeded" }
        let output = "\(h.dir.path)/runs/ko-drain-\(runId)"
        let lines = try h.runLogLines(runId)
        #expect(lines.contains { $0.contains("[stop]") && $0.contains("waiting for the trainer's next full-state checkpoint") })
        let stopped = try #require(lines.first { $0.contains("[stop] full-state checkpoint at step") })
        let stopStep = try #require(stopped.firstMatch(of: /at step (\d+)/).flatMap { Int64($0.1) })
        #expect(stopStep >= askedAt && stopStep == 160, "the first latest_full.pth after the drain (every 80 steps), asked at \(askedAt)")
        let note = try #require(lines.first { $0.hasPrefix("[resume] resuming from \(output)/pins/step-") })
        #expect(note.contains("pins/step-\(stopStep).pth at step \(stopStep)") && note.contains("with full state"), "\(note)")
        let shard = try #require(try h.shards().first { $0.id == reply.runs[0].shardId })
        #expect(shard.history.map(\.state) == ["cancelled", "succeeded"])
        #expect(shard.failures == 0, "a planned stop is not a failure")
        let lr = try h.series(runId, "train/lr")
        #expect(lr.map(\.step) == Array(stride(from: 10, through: 260, by: 10)))
        #expect(lr.allSatisfy { abs(($0.value ?? .nan) - Self.cosineLR($0.step, total: 260)) < 3e-6 })
    }
}
