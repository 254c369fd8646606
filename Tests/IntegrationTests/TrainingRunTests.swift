import Foundation
import Shared
import Testing
#if canImport(Glibc)
import Glibc
import ClusterAdmin
#endif

/// Issue 5 with real processes: a coordinator, workers that state A6000 and 4090 cards, and the
/// Python test trainer (Tests/Fixtures/trainer/fake_trainer.py) started by the command runner.
@Suite("Training jobs (real processes)", .serialized)
struct TrainingRunTests {
    static let a6000 = ["--device-name", "NVIDIA RTX A6000", "--device-memory-gb", "48"]
    static let rtx4090 = ["--device-name", "NVIDIA GeForce RTX 4090", "--device-memory-gb", "24"]

    /// The fixture trainer's losses (see `losses()` in fake_trainer.py).
    static func textLoss(_ step: Int64) -> Double { 0.9 + 1.6 * exp(-Double(step) / 50) }

    /// A job spec running the fixture trainer, with the guide's A6000 and 4090 presets.
    static func spec(_ h: ClusterHarness, python: String, name: String, maxSteps: Int, stepSeconds: Double, checkpointEvery: Int,
                     trainerArgs: [String] = [], extra: String = "") -> String {
        let fixture = TrainerVenv.fixtures.appendingPathComponent("fake_trainer.py").path
        let args = trainerArgs.map { "\"\($0)\"" }.joined(separator: ", ")
        return """
            name: \(name)
            project: tts-it
            command: ["\(python)", "\(fixture)", --output-dir, "{output_dir}", --batch-size, "{batch_size}",
                      --grad-accum, "{grad_accum}", --lr, "{lr}", --max-steps, "{max_steps}",
                      --checkpoint-every, "{checkpoint_every}", --step-seconds, "{step_seconds}"\(args.isEmpty ? "" : ", " + args),
                      [--resume, "{resume_checkpoint}"]]
            hyperparameters: {lr: 1e-5, step_seconds: \(stepSeconds)}
            checkpoint_every: \(checkpointEvery)
            max_steps: \(maxSteps)
            max_retries: 2
            output_dir: "\(h.dir.path)/runs/{run_name}-{run_id}"
            presets:
              a6000: {match: {name: A6000, min_memory_gb: 40}, batch_size: 16, grad_accum: 1}
              "4090": {match: {name: "4090"}, batch_size: 8, grad_accum: 2}
            \(extra)
            """
    }

    func submit(_ h: ClusterHarness, _ text: String) throws -> SubmitReply {
        let file = h.dir.appendingPathComponent("job-\(UUID().uuidString.prefix(6)).yaml").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return try h.cliJSON(["submit", file], as: SubmitReply.self)
    }

    func runs(_ h: ClusterHarness) throws -> [RunSummary] { try h.cliJSON(["runs"], as: [RunSummary].self) }
    func run(_ h: ClusterHarness, _ id: String) throws -> RunSummary { try #require(try runs(h).first { $0.id == id }) }
    func series(_ h: ClusterHarness, _ run: String, _ key: String) throws -> [MetricsReport.Point] {
        try h.cliJSON(["metrics", run, "--key", key], as: MetricsReport.self).series ?? []
    }
    func logs(_ h: ClusterHarness, _ run: String) throws -> [String] {
        let r = try h.cli(["logs", run])
        guard r.status == 0 else { throw HarnessError("logs \(run) failed: \(r.err)") }
        return r.out.split(separator: "\n").map(String.init)
    }

    @Test("a 2 × 2 sweep on an A6000 and a 4090: four runs named after their values in one group, each with its card's preset and the same effective batch, every metric stored once from stdout and TensorBoard")
    func presetsSweepAndExactlyOnce() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("a6000", Self.a6000)
        try h.startWorker("4090", Self.rtx4090)
        try await h.waitUntil("both workers are live", timeout: 20) { try h.workers().count == 2 }
        let reply = try submit(h, Self.spec(h, python: python, name: "ko-sweep", maxSteps: 40, stepSeconds: 0.01, checkpointEvery: 20,
                                            extra: "sweep: {grid: {lr: [1e-5, 2e-5], step_seconds: [0.01, 0.02]}}"))
        #expect(reply.runs.map(\.name) == ["lr1e-5_step_seconds0.01", "lr1e-5_step_seconds0.02", "lr2e-5_step_seconds0.01", "lr2e-5_step_seconds0.02"])
        #expect(reply.runs.map(\.sweepValues) == [["lr=1e-5", "step_seconds=0.01"], ["lr=1e-5", "step_seconds=0.02"],
                                                  ["lr=2e-5", "step_seconds=0.01"], ["lr=2e-5", "step_seconds=0.02"]])
        try await h.waitUntil("every run succeeded", timeout: 120) {
            try runs(h).filter { $0.jobId == reply.jobId }.allSatisfy { $0.state == "succeeded" }
        }
        let shards = try h.shards()
        var cards: Set<String> = []
        for r in reply.runs {
            let summary = try run(h, r.id)
            #expect(summary.group == "ko-sweep")
            let worker = try #require(shards.first { $0.id == r.shardId }?.history.last?.workerName)
            cards.insert(worker)
            // Each run got its card's preset; the effective batch is 16 on both.
            #expect(summary.preset == worker)
            let batch = try #require(summary.batchSize), accum = try #require(summary.gradAccum)
            #expect(batch * accum == 16)
            #expect(worker == "a6000" ? (batch, accum) == (16, 1) : (batch, accum) == (8, 2))
            let lines = try logs(h, r.id)
            #expect(lines.contains { $0.hasPrefix("[Info] fake trainer") && $0.contains("batch_size=\(batch) grad_accum=\(accum)") })
            #expect(lines.contains { $0.hasPrefix("[Train] epoch=1 step=40 ") })
            // Every step once, from whichever source delivered it first, with the trainer's values.
            let loss = try series(h, r.id, "train/text_loss")
            #expect(loss.map(\.step) == Array(1...40))
            #expect(loss.allSatisfy { abs(($0.value ?? .nan) - Self.textLoss($0.step)) < 1e-3 })
            #expect(try series(h, r.id, "train/samples_per_sec").map(\.step) == Array(1...40), "TensorBoard-only scalar, once per step")
            #expect(try series(h, r.id, "val/text_loss").map(\.step) == [20, 40])
            #expect(try series(h, r.id, "train/lr").count == 40)
        }
        #expect(cards == ["a6000", "4090"], "both cards trained")
    }

    @Test("a worker killed mid-run: the run resumes on the other worker from its last checkpoint, same run, steps continue once each; the dead worker's trainer tree is gone")
    func resumesElsewhereAfterWorkerLoss() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator(["--lost-after-ms", "3000", "--heartbeat-ms", "500"])
        try h.startWorker("a6000", Self.a6000)
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try submit(h, Self.spec(h, python: python, name: "ko-resume", maxSteps: 240, stepSeconds: 0.04, checkpointEvery: 30,
                                            trainerArgs: ["--spawn-children", "2"]))
        let runId = try #require(reply.runs.first?.id)
        try await h.waitUntil("the run passed step 100 with a checkpoint", timeout: 60) {
            let r = try run(h, runId)
            return (r.step ?? 0) >= 100 && (r.checkpointStep ?? 0) >= 60
        }
        let outputDir = "\(h.dir.path)/runs/ko-resume-\(runId)"
        let trainerPid = try #require(try logs(h, runId).compactMap { $0.firstMatch(of: /fake trainer pid=(\d+)/).flatMap { Int32($0.1) } }.first)
        let children = ((try? String(contentsOfFile: outputDir + "/children.pids", encoding: .utf8)) ?? "").split(separator: "\n").compactMap { Int32($0) }
        #expect(children.count == 2)
        let tree = [trainerPid] + children
        #expect(tree.allSatisfy(Self.isRunning))
        h.kill9("a6000")
        // The dead worker's trainer and its children die with it (the process-group guard).
        try await h.waitUntil("the dead worker's trainer tree is gone", timeout: 5) { tree.allSatisfy { !Self.isRunning($0) } }
        try h.startWorker("4090", Self.rtx4090)
        try await h.waitUntil("the run succeeded on the other worker", timeout: 120) { try run(h, runId).state == "succeeded" }

        let summary = try run(h, runId)
        #expect(summary.preset == "4090")
        #expect((summary.batchSize, summary.gradAccum) == (8, 2))
        let shard = try #require(try h.shards().first { $0.id == reply.runs[0].shardId })
        #expect(shard.history.map(\.state) == ["lost", "succeeded"])
        #expect(shard.history.map(\.workerName) == ["a6000", "4090"])
        let lines = try logs(h, runId)
        // The newest full-state checkpoint, pinned (model_step{N}.pth hard-linked as pins/step-N.pth).
        let resumeNote = try #require(lines.first { $0.hasPrefix("[resume] resuming from \(outputDir)/pins/step-") })
        let step = try #require(resumeNote.firstMatch(of: /pins\/step-(\d+)\.pth/).flatMap { Int($0.1) })
        #expect(step >= 60 && step % 30 == 0)
        #expect(resumeNote.contains("with full state"))
        #expect(lines.contains { $0 == "[Info] Resumed from \(outputDir)/pins/step-\(step).pth at step \(step)" })
        // The step sequence continues: every step exactly once, none lost, none doubled.
        let loss = try series(h, runId, "train/text_loss")
        #expect(loss.map(\.step) == Array(1...240))
        #expect(try series(h, runId, "train/samples_per_sec").map(\.step) == Array(1...240))
        // One W&B run for the whole life of the run (offline here), named by its id.
        let wandbRuns = try FileManager.default.contentsOfDirectory(atPath: h.dir.appendingPathComponent("wandb").path).filter { $0.hasSuffix("-\(runId)") }
        #expect(wandbRuns.count == 1, "one W&B run: \(wandbRuns)")
    }

    @Test("CUDA OOM at batch 16: the run continues at 8 × 2 from its last checkpoint; an oom alert and a downshift note are recorded")
    func outOfMemoryDownshift() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"])
        try h.startWorker("a6000", Self.a6000)
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try submit(h, Self.spec(h, python: python, name: "ko-oom", maxSteps: 90, stepSeconds: 0.01, checkpointEvery: 20,
                                            trainerArgs: ["--oom-at-batch", "16", "--oom-at-step", "50"]))
        let runId = try #require(reply.runs.first?.id)
        try await h.waitUntil("the run succeeded", timeout: 90) { try run(h, runId).state == "succeeded" }
        let summary = try run(h, runId)
        #expect(summary.downshifts == 1)
        #expect((summary.batchSize, summary.gradAccum) == (8, 2))
        let shard = try #require(try h.shards().first { $0.id == reply.runs[0].shardId })
        #expect(shard.history.map(\.state) == ["oom", "succeeded"])
        #expect(shard.failures == 0)
        let lines = try logs(h, runId)
        #expect(lines.contains { $0.hasPrefix("[downshift] OOM downshift: CUDA ran out of memory at batch 16 × accumulation 1 (effective 16)") && $0.contains("batch 8 × accumulation 2") })
        #expect(lines.contains { $0.hasPrefix("! torch.OutOfMemoryError: CUDA out of memory") })
        #expect(lines.contains { $0.contains("batch_size=8 grad_accum=2") })
        #expect(lines.contains { $0.hasSuffix("pins/step-40.pth at step 40") && $0.hasPrefix("[Info] Resumed from") })
        let alerts = try h.cliJSON(["alerts"], as: [AlertSummary].self)
        #expect(alerts.contains { $0.rule == "oom" && $0.runId == runId })
        #expect(try series(h, runId, "train/text_loss").map(\.step) == Array(1...90))
    }

    @Test("cancel stops the whole trainer process tree (a trainer with children): none survive, the run is cancelled")
    func cancelKillsTheTree() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb", "--heartbeat-ms", "500"])
        try h.startWorker("a6000", Self.a6000)
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try submit(h, Self.spec(h, python: python, name: "ko-cancel", maxSteps: 100_000, stepSeconds: 0.05, checkpointEvery: 1000,
                                            trainerArgs: ["--spawn-children", "3"]))
        let runId = try #require(reply.runs.first?.id)
        let outputDir = "\(h.dir.path)/runs/ko-cancel-\(runId)"
        try await h.waitUntil("the trainer runs with its children", timeout: 60) {
            (try run(h, runId).step ?? 0) >= 5 && FileManager.default.fileExists(atPath: outputDir + "/children.pids")
        }
        let trainerPid = try #require(try logs(h, runId).compactMap { $0.firstMatch(of: /fake trainer pid=(\d+)/).flatMap { Int32($0.1) } }.first)
        let children = try String(contentsOfFile: outputDir + "/children.pids", encoding: .utf8).split(separator: "\n").compactMap { Int32($0) }
        #expect(children.count == 3)
        let cancel = try h.cli(["cancel", runId])
        #expect(cancel.status == 0, "\(cancel.err)")
        #expect(cancel.out.contains("1 running shard(s) told to stop"))
        try await h.waitUntil("the run is cancelled", timeout: 30) { try run(h, runId).state == "cancelled" }
        let tree = [trainerPid] + children
        #expect(tree.allSatisfy { !Self.isRunning($0) }, "no process of the trainer's tree survives")
        #expect(try h.shards().first { $0.id == reply.runs[0].shardId }?.state == "cancelled")
    }

    @Test("draining a worker stops its trainer (not waiting days for it); the run resumes from its checkpoint on another worker without using a retry")
    func drainStopsTrainingAndItResumesElsewhere() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb", "--heartbeat-ms", "500"])
        let first = try h.startWorker("a6000", Self.a6000)
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try submit(h, Self.spec(h, python: python, name: "ko-drain", maxSteps: 150, stepSeconds: 0.03, checkpointEvery: 25))
        let runId = try #require(reply.runs.first?.id)
        try await h.waitUntil("the run has a checkpoint", timeout: 60) { (try run(h, runId).checkpointStep ?? 0) >= 50 }
        let drain = try h.cli(["drain", "a6000"])
        #expect(drain.status == 0, "\(drain.err)")
        try await h.waitUntil("the drained worker exits", timeout: 30) { !first.isRunning }
        #expect(first.terminationStatus == 0)
        try h.startWorker("4090", Self.rtx4090)
        try await h.waitUntil("the run succeeded on the other worker", timeout: 90) { try run(h, runId).state == "succeeded" }
        let shard = try #require(try h.shards().first { $0.id == reply.runs[0].shardId })
        #expect(shard.history.map(\.state) == ["cancelled", "succeeded"])
        #expect(shard.failures == 0, "a drain is not a failure")
        #expect(try logs(h, runId).contains { $0.hasPrefix("[Info] Resumed from") && $0.contains("/pins/step-") })
        #expect(try logs(h, runId).contains { $0.contains("[stop] full-state checkpoint at step") }, "the drain waited for the next checkpoint")
        #expect(try series(h, runId, "train/text_loss").map(\.step) == Array(1...150))
    }

    @Test("a bad job spec is refused before anything is created, naming the field and its line")
    func badSpecIsRefused() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"])
        let file = h.dir.appendingPathComponent("bad.yaml").path
        try "name: x\nproject: p\ncommand: [python, t.py]\nmax_step: 100\n".write(toFile: file, atomically: true, encoding: .utf8)
        let r = try h.cli(["submit", file])
        #expect(r.status == 1)
        #expect(r.err.contains("max_step") && r.err.contains("line 4"), "\(r.err)")
        let missing = try h.cli(["submit", h.dir.appendingPathComponent("nope.yaml").path])
        #expect(missing.status == 1 && missing.err.contains("cannot read the job spec"))
        #expect(try runs(h).isEmpty)
    }

    static func isRunning(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
        // The state is the field after the command name's closing parenthesis; Z is a zombie.
        guard let close = stat.lastIndex(of: ")") else { return false }
        let state = stat[stat.index(after: close)...].trimmingCharacters(in: .whitespaces).first
        return state != "Z" && state != "X"
    }
}

/// The Python test trainer's virtual environment (Tests/Fixtures/trainer/trainer_env.sh). A venv
/// that cannot be made is a failure with the script's reason, never a skip.
enum TrainerVenv {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/trainer")

    static func python() throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [fixtures.appendingPathComponent("trainer_env.sh").path]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let path = String(decoding: o, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        try #require(p.terminationStatus == 0 && FileManager.default.isExecutableFile(atPath: path),
                     "the trainer venv could not be made (trainer_env.sh exited \(p.terminationStatus)): \(String(decoding: e, as: UTF8.self))")
        return path
    }
}

/// Issue 6 with real processes: `runner: torch` on two CPU workers through the libtorch shim.
@Suite("Torch runner (real processes)", .serialized)
struct TorchRunnerTests {
    static func fixture() throws -> [String: String] { try FixtureScript.values("torch/torch_env.sh") }

    /// A worker with the torch shim, live and advertising `torch` shards.
    static func startTorchWorker(_ h: ClusterHarness, _ name: String, shim: String) async throws {
        try h.startWorker(name, ["--torch-shim", shim])
        try await h.waitUntil("\(name) is live with torch", timeout: 30) {
            try h.workers().contains { $0.name == name && $0.capabilities.contains("shard:torch") }
        }
    }

    /// A 40-step torch run of the reference model with a checkpoint and an evaluation every 20
    /// steps: 2 test utterances on 1 shard, spoken by the torch synthesizer, transcribed by the
    /// command ASR `asr` (a YAML flow list).
    static func evaluatedSpec(_ h: ClusterHarness, name: String, model: String, dataset: String, maxCodes: Int, asr: String) -> String {
        """
        name: \(name)
        project: tts-it
        runner: torch
        model: "\(model)"
        train_manifests: ["\(dataset)/gpt_pairs_train.jsonl::ko"]
        hyperparameters: {lr: 3e-3, seed: 3, threads: 1}
        checkpoint_every: 20
        eval_every: 20
        eval:
          manifests: ["\(dataset)/gpt_pairs_val.jsonl::ko"]
          num_samples: 2
          shards: 1
          synthesizer: {kind: torch, max_codes: \(maxCodes)}
          asr: {command: \(asr)}
        max_steps: 40
        output_dir: "\(h.dir.path)/runs/{run_name}-{run_id}"
        presets:
          cpu: {match: {}, batch_size: 4, grad_accum: 1}
        """
    }

    /// Submits a spec; returns the reply and its (single) run id.
    static func submit(_ h: ClusterHarness, _ spec: String) throws -> (SubmitReply, String) {
        let file = h.dir.appendingPathComponent("job-\(UUID().uuidString.prefix(6)).yaml").path
        try spec.write(toFile: file, atomically: true, encoding: .utf8)
        let reply = try h.cliJSON(["submit", file], as: SubmitReply.self)
        return (reply, try #require(reply.runs.first?.id))
    }

    @Test("a torch run with eval_every and the torch synthesizer: each checkpoint at the cadence speaks the test sentences through the shim (16 kHz WAV files from that checkpoint) and is scored")
    func torchSynthesizerEvaluatesCheckpoints() async throws {
        let env = try Self.fixture()
        let shim = try #require(env["SHIM"]), model = try #require(env["MODEL"]), dataset = try #require(env["DATASET"])
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"])
        try await Self.startTorchWorker(h, "cpu-a", shim: shim)
        // The "ASR" prints the file's sample rate: the hypothesis proves a readable 16 kHz file.
        let spec = Self.evaluatedSpec(h, name: "ref-torch-eval", model: model, dataset: dataset, maxCodes: 30,
                                      asr: #"["/bin/sh", "-c", "soxi -r \"$0\"", "{audio}"]"#)
        let (_, runId) = try Self.submit(h, spec)
        try await h.waitUntil("the run and its evaluations are done", timeout: 240) {
            try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == runId }?.state == "succeeded"
        }
        let evals = try h.cliJSON(["evals"], as: [EvalSummary].self).filter { $0.runId == runId }.sorted { ($0.step ?? 0) < ($1.step ?? 0) }
        #expect(evals.compactMap(\.step) == [20, 40], "\(evals.map(\.message))")
        for e in evals {
            #expect(e.state == "succeeded" && e.utterances == 2 && e.failedUtterances == 0, "\(e.message)")
            let report = try JSONCoding.decode(JSONValue.self, from: Array(try Data(contentsOf: URL(fileURLWithPath: e.outputDir + "/report.json"))))
            guard case .object(let doc) = report, case .array(let utts)? = doc["utterances"] else { Issue.record("no utterances in \(e.outputDir)"); continue }
            for case .object(let u) in utts {
                #expect(u["hypothesis"]?.stringValue == "16000", "\(u)")
                let audio = try #require(u["audio_path"]?.stringValue)
                #expect(audio.hasPrefix(e.outputDir + "/audio/") && FileManager.default.fileExists(atPath: audio), "\(audio)")
                let seconds = try #require(u["audio_seconds"]?.doubleValue)
                #expect(seconds > 0 && seconds <= 30 * 0.04 + 1e-9, "at most max_codes frames of 40 ms: \(seconds)")
            }
        }
    }

    @Test("a torch job on two CPU workers trains and checkpoints, is killed and resumes elsewhere from its checkpoint; every step's metrics reach the store once and the W&B outbox")
    func trainsCheckpointsAndResumes() async throws {
        let env = try Self.fixture()
        let shim = try #require(env["SHIM"]), model = try #require(env["MODEL"]), dataset = try #require(env["DATASET"])
        let h = try ClusterHarness()
        try await h.startCoordinator(["--lost-after-ms", "3000", "--heartbeat-ms", "500"])
        try await Self.startTorchWorker(h, "cpu-a", shim: shim)
        let spec = """
            name: ref-torch
            project: tts-it
            runner: torch
            model: "\(model)"
            train_manifests: ["\(dataset)/gpt_pairs_train.jsonl::ko"]
            val_manifests: ["\(dataset)/gpt_pairs_val.jsonl::ko"]
            hyperparameters: {lr: 3e-3, warmup: 10, schedule: cosine, seed: 3, threads: 1, eval_batches: 2}
            checkpoint_every: 40
            eval_every: 40
            max_steps: 240
            output_dir: "\(h.dir.path)/runs/{run_name}-{run_id}"
            presets:
              cpu: {match: {}, batch_size: 4, grad_accum: 2}
            """
        let (reply, runId) = try Self.submit(h, spec)
        func run() throws -> RunSummary { try #require(try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == runId }) }
        try await h.waitUntil("the run has a checkpoint past step 80", timeout: 180) { (try run().checkpointStep ?? 0) >= 80 }
        h.kill9("cpu-a")
        try h.startWorker("cpu-b", ["--torch-shim", shim])
        try await h.waitUntil("the run succeeded on the other worker", timeout: 300) { try run().state == "succeeded" }
        let shard = try #require(try h.shards().first { $0.id == reply.runs[0].shardId })
        #expect(shard.history.map(\.state) == ["lost", "succeeded"])
        #expect(shard.history.map(\.workerName) == ["cpu-a", "cpu-b"])
        let loss = try h.cliJSON(["metrics", runId, "--key", "train/loss"], as: MetricsReport.self).series ?? []
        #expect(loss.map(\.step) == Array(1...240), "every step once")
        let first = loss.prefix(10).compactMap(\.value).reduce(0, +) / 10
        let last = loss.suffix(10).compactMap(\.value).reduce(0, +) / 10
        #expect(last < first, "the loss fell: \(first) → \(last)")
        #expect(try h.cliJSON(["metrics", runId, "--key", "val/loss"], as: MetricsReport.self).series?.map(\.step) == [40, 80, 120, 160, 200, 240])
        #expect(try h.cliJSON(["metrics", runId, "--key", "train/lr"], as: MetricsReport.self).series?.count == 240)
        let logs = try h.cli(["logs", runId]).out
        #expect(logs.contains("[resume] resuming from \(h.dir.path)/runs/ref-torch-\(runId)/model_step"))
        // The W&B outbox (offline) delivered the run: one offline run, finished.
        let wandbRuns = try FileManager.default.contentsOfDirectory(atPath: h.dir.appendingPathComponent("wandb").path).filter { $0.hasSuffix("-\(runId)") }
        #expect(wandbRuns.count == 1)
        let file2 = h.dir.appendingPathComponent("wandb/\(wandbRuns.first ?? "")/run-\(runId).wandb").path
        let size = (try? FileManager.default.attributesOfItem(atPath: file2)[.size] as? Int) ?? 0
        #expect((size ?? 0) > 10_000, "the .wandb file holds the run's history")
    }

    @Test("the shim's OOM stand-in at batch 8 goes through the worker to the coordinator's downshift: the run finishes at 4 × 4 (effective batch kept)")
    func outOfMemoryDownshift() async throws {
        let env = try Self.fixture()
        let shim = try #require(env["SHIM"]), model = try #require(env["MODEL"]), dataset = try #require(env["DATASET"])
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"])
        try await Self.startTorchWorker(h, "cpu-a", shim: shim)
        let spec = """
            name: ref-oom
            project: tts-it
            runner: torch
            model: "\(model)"
            train_manifests: ["\(dataset)/gpt_pairs_train.jsonl::ko"]
            hyperparameters: {lr: 1e-3, seed: 1, threads: 1, oom_at_batch: 8}
            checkpoint_every: 10
            max_steps: 30
            min_batch_size: 2
            output_dir: "\(h.dir.path)/runs/{run_name}-{run_id}"
            presets:
              cpu: {match: {}, batch_size: 8, grad_accum: 2}
            """
        let (reply, runId) = try Self.submit(h, spec)
        func run() throws -> RunSummary { try #require(try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == runId }) }
        try await h.waitUntil("the run succeeded", timeout: 180) { try run().state == "succeeded" }
        let r = try run()
        #expect(r.downshifts == 1)
        #expect((r.batchSize, r.gradAccum) == (4, 4), "half the micro-batch, twice the accumulation: effective 16 kept")
        let shard = try #require(try h.shards().first { $0.id == reply.runs[0].shardId })
        #expect(shard.history.map(\.state) == ["oom", "succeeded"])
        #expect(shard.failures == 0)
        let alerts = try h.cliJSON(["alerts"], as: [AlertSummary].self)
        #expect(alerts.contains { $0.rule == "oom" && $0.runId == runId })
        #expect(try h.cli(["logs", runId]).out.contains("[downshift] OOM downshift: CUDA ran out of memory at batch 8 × accumulation 2"))
        #expect(try h.cliJSON(["metrics", runId, "--key", "train/loss"], as: MetricsReport.self).series?.map(\.step) == Array(1...30))
    }

    /// Issue 18's stretch: the torch runner as a data-parallel gang (c10d gloo in the shim).
    static func gangSpec(_ h: ClusterHarness, name: String, model: String, dataset: String, world: Int) -> String {
        """
        name: \(name)
        project: tts-it
        runner: torch
        model: "\(model)"
        train_manifests: ["\(dataset)/gpt_pairs_train.jsonl::ko"]
        val_manifests: ["\(dataset)/gpt_pairs_val.jsonl::ko"]
        hyperparameters: {lr: 3e-3, warmup: 5, schedule: cosine, seed: 3, threads: 1, eval_batches: 2, collective_timeout: 60}
        checkpoint_every: 10
        eval_every: 10
        max_steps: 40
        max_retries: 3
        output_dir: "\(h.dir.path)/runs/{run_name}-{run_id}"
        presets:
          cpu: {match: {}, batch_size: 4, grad_accum: 2}
        world: {gpus: \(world)}
        """
    }

    @Test("a torch-runner gang of 2 (the shim's gloo group): each rank 4 × 1 takes the single process's 4 × 2 steps (losses and validation to 1e-4), rank 0 alone checkpoints; kill -9 of rank 1's worker restarts the gang from rank 0's checkpoint, every step once")
    func torchGangMatchesOneProcess() async throws {
        let env = try Self.fixture()
        let shim = try #require(env["SHIM"]), model = try #require(env["MODEL"]), dataset = try #require(env["DATASET"])
        let h = try ClusterHarness()
        try await h.startCoordinator(["--lost-after-ms", "3000", "--heartbeat-ms", "500", "--no-wandb"])
        for name in ["cpu-a", "cpu-b", "cpu-c"] { try await Self.startTorchWorker(h, name, shim: shim) }
        let (_, gang) = try Self.submit(h, Self.gangSpec(h, name: "ref-gang", model: model, dataset: dataset, world: 2))
        func run(_ id: String) throws -> RunSummary { try #require(try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == id }) }
        try await h.waitUntil("the gang has a checkpoint at step 10 and trains on", timeout: 180) {
            let r = try run(gang)
            return (r.checkpointStep ?? 0) >= 10 && (r.step ?? 0) >= 12
        }
        let rank1 = try #require(try h.shards().first { $0.runId == gang && $0.rank == 1 }?.history.last?.workerName)
        h.kill9(rank1)
        try await h.waitUntil("the gang's run succeeded after the restart", timeout: 300) { try run(gang).state == "succeeded" }
        let (_, single) = try Self.submit(h, Self.gangSpec(h, name: "ref-one", model: model, dataset: dataset, world: 1))
        try await h.waitUntil("the single-process run succeeded", timeout: 300) { try run(single).state == "succeeded" }

        #expect((try run(gang).batchSize, try run(gang).gradAccum) == (4, 1), "each rank: 4 × 1, effective 8")
        #expect((try run(single).batchSize, try run(single).gradAccum) == (4, 2))
        try h.expectSameSeries(gang, as: single, keys: ["train/loss", "train/grad_norm", "val/loss"])
        #expect(try h.series(gang, "train/loss").map(\.step) == Array(1...40))
        let shards = try h.shards().filter { $0.runId == gang }.sorted { ($0.rank ?? 0) < ($1.rank ?? 0) }
        #expect(shards.count == 2 && shards.allSatisfy { $0.state == "succeeded" && $0.history.count == 2 }, "\(shards.map { $0.history.map(\.state) })")
        let logs = try h.cli(["logs", gang]).out
        #expect(logs.contains("[resume] gang of 2: resuming from \(h.dir.path)/runs/ref-gang-\(gang)/model_step"), "\(logs.suffix(2_000))")
        let files = try FileManager.default.contentsOfDirectory(atPath: h.dir.appendingPathComponent("runs/ref-gang-\(gang)").path)
        #expect(files.filter { $0.hasSuffix(".pth") }.sorted() == ["model_step10.pth", "model_step20.pth", "model_step30.pth", "model_step40.pth"],
                "rank 0's checkpoints only, each once: \(files.sorted())")
    }
}
