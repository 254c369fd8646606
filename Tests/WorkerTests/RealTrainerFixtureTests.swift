import Foundation
import Shared
import Synchronization
import Testing
@testable import Worker
#if canImport(Glibc)
import Glibc
#endif

/// The `train` executor against the faithful fixture of the real trainer
/// (Tests/Fixtures/trainer/indextts-fixture/trainers/train_gpt_v2.py, mirroring edu-ide/index-tts
/// 7de3cca): its checkpoints are pinned at the run's cadences with the step read from inside them,
/// a truncated `best_model.pth` is never reported, a planned stop waits for the next full-state
/// checkpoint, a resume that lands elsewhere than asked fails, and the trainer's children find
/// `python`.
@Suite(.timeLimit(.minutes(4))) struct RealTrainerFixtureTests {
    typealias Harness = TrainExecutorTests.Harness

    static let repository = TrainerFixture.fixtures.appendingPathComponent("indextts-fixture").path

    /// Manifests, tokenizer, config and base checkpoint for the fixture, and the arguments naming them.
    static func inputs() throws -> [String] {
        let dir = TrainerFixture.temporaryDirectory("fixture-inputs")
        let r = try TrainerFixture.run(try TrainerFixture.python(),
                                       [TrainerFixture.fixtures.appendingPathComponent("make_fixture_manifests.py").path, "--out", dir, "--train", "64", "--val", "4"])
        try #require(r.status == 0, "make_fixture_manifests.py failed: \(r.stderr)")
        return r.stdout.split(whereSeparator: \.isWhitespace).map(String.init)
    }

    /// A payload running the fixture as a job for the real trainer would: `python
    /// trainers/train_gpt_v2.py …` in the repository's directory.
    static func payload(run: String, output: String, maxSteps: Int64, evalEvery: Int64?, checkpointEvery: Int64?,
                        env: [String: String], resume: (path: String, step: Int64, full: Bool)? = nil,
                        extra: [String] = [], stopGrace: Duration = .seconds(60)) throws -> TrainPayload {
        var argv = [try TrainerFixture.python(), "trainers/train_gpt_v2.py"] + (try inputs()) + [
            "--output-dir", output, "--batch-size", "4", "--grad-accumulation", "1", "--learning-rate", "1e-4",
            "--warmup-steps", "20", "--log-interval", "10", "--max-steps", String(maxSteps), "--epochs", "999",
            "--num-workers", "1", "--scheduler", "cosine", "--no-aim",
        ] + extra
        if let evalEvery { argv += ["--val-interval", String(evalEvery)] }
        if let resume { argv += ["--resume", resume.path] }
        return TrainPayload(run: run, argv: argv, workdir: repository, env: ["PYTHONUNBUFFERED": "1"].merging(env) { $1 },
                            outputDir: output, logDir: output + "/logs", resumeCheckpoint: resume?.path, resumeStep: resume?.step,
                            maxSteps: maxSteps, batchSize: 4, gradAccum: 1, evalEvery: evalEvery, checkpointEvery: checkpointEvery,
                            stopGrace: stopGrace, resumeFullState: resume?.full)
    }

    /// Everything in a spool, in order.
    static func allEntries(_ spool: MetricSpool) throws -> [SpoolEntry] {
        try spool.flush()
        var all: [SpoolEntry] = []
        var after: UInt64 = 0
        while true {
            let batch = try spool.entries(after: after)
            guard let last = batch.last else { return all }
            all += batch
            after = last.sequence
        }
    }

    static func checkpointEvents(_ entries: [SpoolEntry]) -> [[String: JSONValue]] {
        entries.flatMap(\.events).filter { $0.kind == .checkpointSaved }.map { TrainExecutorTests.object($0.data) }
    }

    static func pins(_ events: [[String: JSONValue]]) -> [(step: Int64, name: String, roles: [String], full: Bool)] {
        events.filter { $0["pinned"] == .bool(true) }.map {
            (Int64($0["step"]?.doubleValue ?? -1), (($0["path"]?.stringValue ?? "") as NSString).lastPathComponent,
             $0["roles"]?.arrayValue?.compactMap(\.stringValue) ?? [], $0["full_state"] == .bool(true))
        }
    }

    @Test("pins: the eval_every and checkpoint_every checkpoints and the final one, linked under stable names with the step read from inside; the final pin holds step 125 though the last [Train] line is step 120")
    func pinsAtCadences() async throws {
        let output = TrainerFixture.temporaryDirectory("fixture-pins")
        let harness = try Harness()
        let payload = try Self.payload(run: "run-pins", output: output, maxSteps: 125, evalEvery: 50, checkpointEvery: 50,
                                       env: ["TTS_FIXTURE_LIGHT_EVERY": "10", "TTS_FIXTURE_FULL_EVERY": "50", "TTS_FIXTURE_STEP_SECONDS": "0.03"])
        let report = try await harness.run(payload)
        #expect(report.outcome == .succeeded, "\(report.message) \(report.logTail)")
        let entries = try harness.entries()
        let lines = entries.flatMap(\.events).filter { $0.kind == .log }.map(\.message)
        #expect(lines.contains { $0.hasPrefix("[Train] epoch=") && $0.contains(" step=120 ") })
        #expect(!lines.contains { $0.hasPrefix("[Train] ") && $0.contains(" step=125 ") }, "125 is never logged by the trainer")
        let pins = Self.pins(Self.checkpointEvents(entries))
        let byStep = Dictionary(grouping: pins, by: \.step)
        #expect(Set(byStep.keys) == [50, 100, 125], "\(pins)")
        #expect(byStep[50]?.contains { $0.full && $0.name == "step-50.pth" && Set($0.roles) == ["eval", "checkpoint", "resume"] } == true)
        #expect(byStep[125]?.contains { $0.full && $0.roles.contains("final") } == true)
        for pin in pins {
            let path = output + "/pins/" + pin.name
            let info = try TorchCheckpointReader.inspect(path: path)
            #expect(info.step == pin.step, "the step inside \(pin.name)")
        }
        // A pin is the trainer's inode at that step: the trainer renamed newer files over its names since.
        let latest = try TorchCheckpointReader.inspect(path: output + "/latest_full.pth")
        #expect(latest.step == 125)
        let output50 = try #require(TrainExecutorTests.object(report.output)["last_checkpoint_step"]?.doubleValue)
        #expect(output50 == 125)
        #expect(TrainExecutorTests.object(report.output)["final_step"] == .number(125))
        #expect(try FileManager.default.contentsOfDirectory(atPath: output + "/pins").allSatisfy { !$0.hasPrefix(".incoming") },
                "nothing held is left behind")
        // Light checkpoints off the cadences are reported (a resume may need one) but not pinned.
        #expect(Self.checkpointEvents(entries).contains {
            $0["pinned"] == .bool(false) && $0["full_state"] == .bool(false) && Int64($0["step"]?.doubleValue ?? 0) % 50 != 0
        })
    }

    @Test("which checkpoints are pinned, and why: eval_every, checkpoint_every, the end, optimizer state")
    func pinRoles() {
        let policy = CheckpointPinner.Policy(evalEvery: 1000, checkpointEvery: 5000, maxSteps: 240_000, directory: "/p")
        #expect(CheckpointPinner.roles(step: 1000, fullState: true, final: false, policy: policy) == [.eval, .resume])
        #expect(CheckpointPinner.roles(step: 5000, fullState: false, final: false, policy: policy) == [.eval, .checkpoint])
        #expect(CheckpointPinner.roles(step: 1100, fullState: false, final: false, policy: policy) == [], "a light latest.pth off the cadences")
        #expect(CheckpointPinner.roles(step: 1100, fullState: true, final: false, policy: policy) == [.resume])
        #expect(CheckpointPinner.roles(step: 240_000, fullState: false, final: false, policy: policy) == [.eval, .checkpoint, .final])
        #expect(CheckpointPinner.roles(step: 1234, fullState: false, final: true, policy: policy) == [.final])
        #expect(CheckpointPinner.roles(step: 0, fullState: true, final: true, policy: policy) == [])
        #expect(CheckpointPinner.pinName(step: 1000, fullState: true) == "step-1000.pth")
        #expect(CheckpointPinner.pinName(step: 1000, fullState: false) == "step-1000-model.pth")
        #expect(ResumeCheckpoint.pinStep("step-1000-model.pth") == 1000 && ResumeCheckpoint.pinStep("step-7.pth") == 7)
        #expect(ResumeCheckpoint.pinStep("best_model.pth") == nil)
    }

    @Test("a nearly full checkpoint volume: disk_low before a pin would leave no room for the next save, and no pin that would fill it")
    func diskLow() async throws {
        let output = TrainerFixture.temporaryDirectory("fixture-disk")
        let spool = try MetricSpool(directory: TrainerFixture.temporaryDirectory("fixture-disk-spool"))
        // 1.5 checkpoints of room at first, half a checkpoint after step 40.
        let size = Mutex<Int64>(0)
        let executor = TrainExecutor(spool: spool, timing: TrainExecutorTests.timing) { _ in
            let checkpoint = size.withLock { $0 }
            return checkpoint == 0 ? nil : checkpoint * 3 / 2
        }
        let payload = try Self.payload(run: "run-disk", output: output, maxSteps: 40, evalEvery: 20, checkpointEvery: nil,
                                       env: ["TTS_FIXTURE_LIGHT_EVERY": "10", "TTS_FIXTURE_FULL_EVERY": "20", "TTS_FIXTURE_SAVE_PAD_BYTES": "1000000"])
        // The size of one of the fixture's checkpoints, for the stand-in.
        let probe = TrainerFixture.temporaryDirectory("fixture-disk-probe")
        let seed = try Self.payload(run: "probe", output: probe, maxSteps: 10, evalEvery: nil, checkpointEvery: nil,
                                    env: ["TTS_FIXTURE_LIGHT_EVERY": "10", "TTS_FIXTURE_SAVE_PAD_BYTES": "1000000"])
        _ = try await Harness().run(seed)
        size.withLock { $0 = ((try? FileManager.default.attributesOfItem(atPath: probe + "/latest.pth")[.size] as? NSNumber)?.int64Value ?? 0) * 11 / 10 }
        let assignment = ShardAssignment(shard: ShardRef(shardId: 4, leaseEpoch: 1), jobId: 1, kind: "train", attempt: 1,
                                         payload: try JSONCoding.encode(payload.json), runId: payload.run)
        let report = try await executor.run(assignment, context: ShardContext(assignment: assignment) { _, _ in })
        #expect(report.outcome == .succeeded)
        let events = try Self.allEntries(spool).flatMap(\.events)
        let low = events.filter { $0.kind == .diskLow }
        #expect(!low.isEmpty, "disk_low raised")
        #expect(low.allSatisfy { $0.message.contains("disk low") && $0.message.contains("GB free") })
        #expect(!Self.pins(Self.checkpointEvents(try Self.allEntries(spool))).isEmpty, "with room for one more checkpoint, pins are still made")

        // Half a checkpoint of room: a pin would fill the volume, so none is made.
        let fullOutput = TrainerFixture.temporaryDirectory("fixture-disk-full")
        let fullSpool = try MetricSpool(directory: TrainerFixture.temporaryDirectory("fixture-disk-full-spool"))
        let checkpoint = size.withLock { $0 }
        let cramped = TrainExecutor(spool: fullSpool, timing: TrainExecutorTests.timing) { _ in checkpoint / 2 }
        let second = try Self.payload(run: "run-disk-full", output: fullOutput, maxSteps: 40, evalEvery: 20, checkpointEvery: nil,
                                      env: ["TTS_FIXTURE_LIGHT_EVERY": "10", "TTS_FIXTURE_FULL_EVERY": "20", "TTS_FIXTURE_SAVE_PAD_BYTES": "1000000"])
        let a2 = ShardAssignment(shard: ShardRef(shardId: 5, leaseEpoch: 1), jobId: 1, kind: "train", attempt: 1,
                                 payload: try JSONCoding.encode(second.json), runId: second.run)
        #expect(try await cramped.run(a2, context: ShardContext(assignment: a2) { _, _ in }).outcome == .succeeded)
        let crampedEvents = try Self.allEntries(fullSpool)
        #expect(Self.pins(Self.checkpointEvents(crampedEvents)).isEmpty, "no pin that would fill the volume")
        #expect(crampedEvents.flatMap(\.events).contains { $0.kind == .diskLow && $0.message.contains("not pinned") })
        #expect(((try? FileManager.default.contentsOfDirectory(atPath: fullOutput + "/pins")) ?? []).filter { $0.hasSuffix(".pth") }.isEmpty)
    }

    @Test("a best_model.pth cut short by a kill mid-write is refused: never reported, pinned or used for a resume")
    func truncatedBestIsRefused() async throws {
        let output = TrainerFixture.temporaryDirectory("fixture-trunc")
        let harness = try Harness()
        let payload = try Self.payload(run: "run-trunc", output: output, maxSteps: 400, evalEvery: 20, checkpointEvery: nil,
                                       env: ["TTS_FIXTURE_BEST_WRITE_SECONDS": "60", "TTS_FIXTURE_SAVE_PAD_BYTES": "200000"])
        let task = Task { try await harness.run(payload) }
        let best = output + "/best_model.pth"
        let started = await RunnerTestSupport.eventually(within: 60) {
            (try? FileManager.default.attributesOfItem(atPath: best)[.size] as? NSNumber)?.intValue ?? 0 > 0
        }
        #expect(started, "the fixture began writing best_model.pth")
        try await Task.sleep(for: .seconds(3)) // two scans see it unchanged: it is inspected
        task.cancel() // SIGTERM: the trainer dies mid-write (it has no handler)
        _ = try? await task.value
        #expect(!TorchCheckpointReader.isComplete(path: best), "the file is truncated")
        let entries = try harness.entries()
        #expect(!Self.checkpointEvents(entries).contains { $0["best"] == .bool(true) }, "a truncated best_model.pth is never reported")
        #expect(entries.flatMap(\.events).contains { $0.kind == .warning && $0.message.contains("best_model.pth is not a complete PyTorch checkpoint") })
        #expect(ResumeCheckpoint.newest(in: [output, output + "/pins"], atLeast: nil)?.path != best)
    }

    @Test("a planned stop waits for the trainer's next full-state checkpoint, then stops it: the report names that pin")
    func plannedStopWaitsForFullCheckpoint() async throws {
        let output = TrainerFixture.temporaryDirectory("fixture-stop")
        let spool = try MetricSpool(directory: TrainerFixture.temporaryDirectory("fixture-stop-spool"))
        let executor = TrainExecutor(spool: spool, timing: TrainExecutorTests.timing)
        let payload = try Self.payload(run: "run-stop", output: output, maxSteps: 1000, evalEvery: nil, checkpointEvery: nil,
                                       env: ["TTS_FIXTURE_LIGHT_EVERY": "10", "TTS_FIXTURE_FULL_EVERY": "60", "TTS_FIXTURE_STEP_SECONDS": "0.05"])
        let assignment = ShardAssignment(shard: ShardRef(shardId: 9, leaseEpoch: 1), jobId: 1, kind: "train", attempt: 1,
                                         payload: try JSONCoding.encode(payload.json), runId: payload.run)
        let step = Mutex<Int64>(0)
        let context = ShardContext(assignment: assignment) { s, _ in step.withLock { $0 = s } }
        let task = Task { try await executor.run(assignment, context: context) }
        let past70 = await RunnerTestSupport.eventually(within: 60) { step.withLock { $0 } >= 70 }
        #expect(past70)
        let askedAt = step.withLock { $0 }
        context.requestPlannedStop(reason: "worker draining (test)")
        let report = try await task.value
        #expect(report.outcome == .cancelled && report.message.contains("draining"))
        let output_ = TrainExecutorTests.object(report.output)
        let stoppedAt = try #require(output_["last_checkpoint_step"]?.doubleValue.map { Int64($0) })
        #expect(stoppedAt == 120, "the first full-state checkpoint after the stop was asked for at step \(askedAt)")
        #expect(output_["last_checkpoint_full_state"] == .bool(true))
        #expect(output_["last_checkpoint"]?.stringValue == output + "/pins/step-120.pth")
        let lines = try Self.allEntries(spool).flatMap(\.events).map(\.message)
        #expect(lines.contains { $0.contains("[stop] full-state checkpoint at step 120 pinned") })
        #expect(!lines.contains { $0.contains("[Train]") && $0.contains("step=200 ") }, "stopped soon after")
    }

    @Test("before the trainer's first latest_full.pth, a planned stop takes the best_model.pth pinned at an eval_every step as its full-state checkpoint")
    func plannedStopTakesAPinnedBest() async throws {
        let output = TrainerFixture.temporaryDirectory("fixture-stop-best")
        let spool = try MetricSpool(directory: TrainerFixture.temporaryDirectory("fixture-stop-best-spool"))
        let executor = TrainExecutor(spool: spool, timing: TrainExecutorTests.timing)
        let payload = try Self.payload(run: "run-stop-best", output: output, maxSteps: 1000, evalEvery: 50, checkpointEvery: nil,
                                       env: ["TTS_FIXTURE_LIGHT_EVERY": "10", "TTS_FIXTURE_STEP_SECONDS": "0.05"])
        let assignment = ShardAssignment(shard: ShardRef(shardId: 11, leaseEpoch: 1), jobId: 1, kind: "train", attempt: 1,
                                         payload: try JSONCoding.encode(payload.json), runId: payload.run)
        let step = Mutex<Int64>(0)
        let context = ShardContext(assignment: assignment) { s, _ in step.withLock { $0 = s } }
        let task = Task { try await executor.run(assignment, context: context) }
        #expect(await RunnerTestSupport.eventually(within: 60) { step.withLock { $0 } >= 60 })
        context.requestPlannedStop(reason: "worker draining (test)")
        let report = try await task.value
        let out = TrainExecutorTests.object(report.output)
        #expect(report.outcome == .cancelled)
        #expect(out["last_checkpoint"]?.stringValue == output + "/pins/step-100.pth", "the copy of best_model.pth at the eval_every step 100")
        #expect(out["last_checkpoint_full_state"] == .bool(true))
        let pins = Self.pins(Self.checkpointEvents(try Self.allEntries(spool)))
        #expect(pins.contains { $0.step == 100 && $0.full && $0.roles.contains("eval") })
    }

    @Test("a resume the trainer reports at another step than asked is an error: the trainer is stopped and the shard fails")
    func resumeMismatchFails() async throws {
        let output = TrainerFixture.temporaryDirectory("fixture-mismatch")
        let first = try Harness()
        let seed = try Self.payload(run: "run-mm", output: output, maxSteps: 40, evalEvery: nil, checkpointEvery: nil,
                                    env: ["TTS_FIXTURE_LIGHT_EVERY": "10", "TTS_FIXTURE_FULL_EVERY": "20"])
        #expect(try await first.run(seed).outcome == .succeeded)
        // The cluster believes it resumes from step 20, but the file the command names holds step 40.
        let second = try Harness()
        var payload = try Self.payload(run: "run-mm", output: output, maxSteps: 80, evalEvery: nil, checkpointEvery: nil,
                                       env: ["TTS_FIXTURE_STEP_SECONDS": "0.05"],
                                       resume: (path: output + "/latest_full.pth", step: 20, full: true))
        payload.resumeStep = 20
        let report = try await second.run(payload)
        #expect(report.outcome == .failed)
        #expect(report.message.contains("resume mismatch") && report.message.contains("step 20") && report.message.contains("step 40"))
        let events = try second.entries().flatMap(\.events)
        #expect(events.contains { $0.kind == .resumeMismatch })
        #expect(!events.contains { $0.kind == .log && $0.message.hasPrefix("[Train]") && $0.message.contains(" step=80 ") }, "stopped at once")
    }

    @Test("the trainer's sample-inference child finds `python`: the command's interpreter is put on its PATH; with none anywhere, the run is warned at its start")
    func pythonForTheTrainersChildren() async throws {
        let output = TrainerFixture.temporaryDirectory("fixture-python")
        let spool = try MetricSpool(directory: TrainerFixture.temporaryDirectory("fixture-python-spool"))
        // A PATH without any `python`: only the interpreter the command starts with can provide it.
        let executor = TrainExecutor(spool: spool, timing: TrainExecutorTests.timing,
                                     workerEnvironment: ["PATH": "/usr/bin:/bin", "HOME": NSTemporaryDirectory()])
        let payload = try Self.payload(run: "run-py", output: output, maxSteps: 30, evalEvery: 10, checkpointEvery: nil,
                                       env: ["TTS_FIXTURE_INFER_SECONDS": "0.1"])
        let assignment = ShardAssignment(shard: ShardRef(shardId: 3, leaseEpoch: 1), jobId: 1, kind: "train", attempt: 1,
                                         payload: try JSONCoding.encode(payload.json), runId: payload.run)
        let report = try await executor.run(assignment, context: ShardContext(assignment: assignment) { _, _ in })
        #expect(report.outcome == .succeeded, "with no python the real trainer dies at its first validation: \(report.message) \(report.logTail)")
        let lines = try Self.allEntries(spool).flatMap(\.events).map(\.message)
        #expect(lines.contains { $0.hasPrefix("[Info] Triggering CPU inference for sample:") })
        #expect(try await RunnerTestSupport.eventually(within: 10) {
            ((try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []).contains { $0.hasPrefix("best_val_") && $0.hasSuffix(".wav") }
        }, "the child ran and wrote its sample")

        // The same job started by `python3` from a PATH without `python`: told at the start.
        let warned = TrainerPython.prepare(argv: ["python3", "train.py"], configured: nil, environment: [:],
                                           workerEnvironment: ["PATH": "/nonexistent"], workingDirectory: nil)
        #expect(warned.path == nil && warned.warning?.contains("no `python` on the trainer's PATH") == true)
        let configured = TrainerPython.prepare(argv: ["bash", "run.sh"], configured: "/usr/bin/python3", environment: [:],
                                               workerEnvironment: ["PATH": "/nonexistent"], workingDirectory: nil)
        defer { configured.cleanUp() }
        let dir = try #require(configured.directory)
        #expect(configured.path == dir + ":/nonexistent" && configured.warning == nil)
        #expect(try String(contentsOfFile: dir + "/python", encoding: .utf8) == "#!/bin/sh\nexec '/usr/bin/python3' \"$@\"\n")
        #expect(FileManager.default.isExecutableFile(atPath: dir + "/python"))
    }
}
