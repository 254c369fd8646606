import Foundation
import Shared
import Synchronization
import Testing
@testable import Worker
#if canImport(Glibc)
import Glibc
#endif

/// The `train` executor against the fixture trainer and a real spool: what a training shard puts
/// in the spool (metrics once per key and step from stdout and TensorBoard, checkpoints with their
/// hashes, batched log lines), how it resumes, and how it reports OOM, failures and cancels.
@Suite(.timeLimit(.minutes(3))) struct TrainExecutorTests {
    typealias Support = RunnerTestSupport

    /// Short polling periods, so files are also read while the fixture runs (not only at the end).
    static let timing = TrainExecutor.Timing(tensorBoardEvery: .milliseconds(300), checkpointsEvery: .milliseconds(300))

    static let trainKeys = ["train/text_loss", "train/mel_loss", "train/mel_top1", "train/lr",
                            "train/steps_per_min", "train/eta_hours", "train/grad_norm", "train/gpu_memory_allocated_gb",
                            "train/samples_per_sec"]
    static let valKeys = ["val/text_loss", "val/mel_loss", "val/mel_top1", "val/time_minutes"]

    /// Every `(key, step)` the fixture logs for `steps` with validation every `valEvery`.
    static func expectedKeys(steps: ClosedRange<Int64>, valEvery: Int64) -> Set<String> {
        var out: Set<String> = []
        for step in steps {
            for k in trainKeys { out.insert("\(k)@\(step)") }
            if step % valEvery == 0 { for k in valKeys { out.insert("\(k)@\(step)") } }
        }
        return out
    }

    /// The fixture's text loss at `step` (fake_trainer.py `losses`).
    static func textLoss(_ step: Int64) -> Double { 0.9 + 1.6 * exp(-Double(step) / 50) }

    /// Records the progress the executor reports.
    final class ProgressLog: Sendable {
        private let values = Mutex<[(step: Int64, total: Int64)]>([])
        func record(_ step: Int64, _ total: Int64) { values.withLock { $0.append((step, total)) } }
        var last: (step: Int64, total: Int64)? { values.withLock { $0.last } }
    }

    struct Harness {
        let spool: MetricSpool
        let executor: TrainExecutor
        let progress = ProgressLog()

        init(timing: TrainExecutor.Timing = TrainExecutorTests.timing) throws {
            spool = try MetricSpool(directory: TrainerFixture.temporaryDirectory("train-spool"))
            executor = TrainExecutor(spool: spool, timing: timing)
        }

        func run(_ payload: TrainPayload) async throws -> ShardReport {
            let assignment = ShardAssignment(shard: ShardRef(shardId: 7, leaseEpoch: 1), jobId: 1, kind: "train", attempt: 1,
                                             payload: try JSONCoding.encode(payload.json), runId: payload.run)
            let progress = self.progress
            let context = ShardContext(assignment: assignment) { progress.record($0, $1) }
            return try await executor.run(assignment, context: context)
        }

        /// Everything spooled, in order.
        func entries() throws -> [SpoolEntry] {
            try spool.flush()
            var all: [SpoolEntry] = []
            var after: UInt64 = 0
            for _ in 0..<100_000 {
                let batch = try spool.entries(after: after)
                guard let last = batch.last else { break }
                all += batch
                after = last.sequence
            }
            return all
        }
    }

    static func keyStepCounts(_ entries: [SpoolEntry]) -> [String: Int] {
        var counts: [String: Int] = [:]
        for p in entries.flatMap(\.points) { counts["\(p.key)@\(p.step)", default: 0] += 1 }
        return counts
    }

    static func object(_ bytes: [UInt8]) -> [String: JSONValue] {
        (try? JSONCoding.decode([String: JSONValue].self, from: bytes)) ?? [:]
    }

    static func trainerPayload(run: String, output: String, maxSteps: Int64, extra: [String]) throws -> TrainPayload {
        TrainPayload(run: run, argv: try Support.trainerArgv(["--output-dir", output, "--max-steps", String(maxSteps)] + extra),
                     outputDir: output, logDir: output + "/logs", maxSteps: maxSteps, batchSize: 4, gradAccum: 1)
    }

    // MARK: a whole run

    @Test func everyMetricIsSpooledExactlyOncePerKeyAndStepFromBothSources() async throws {
        let output = TrainerFixture.temporaryDirectory("train-once")
        let harness = try Harness()
        let payload = try Self.trainerPayload(run: "run-once", output: output, maxSteps: 30,
                                              extra: ["--checkpoint-every", "10", "--step-seconds", "0.04"])
        let report = try await harness.run(payload)
        #expect(report.outcome == .succeeded, "\(report.message) \(report.logTail)")

        let entries = try harness.entries()
        let counts = Self.keyStepCounts(entries)
        #expect(Set(counts.keys) == Self.expectedKeys(steps: 1...30, valEvery: 10))
        let doubled = counts.filter { $0.value != 1 }
        #expect(doubled.isEmpty, "spooled more than once: \(doubled.keys.sorted())")
        // train/steps_per_min only comes from stdout and train/samples_per_sec only from TensorBoard,
        // so the set check above proves both sources were read.
        let points = entries.flatMap(\.points)
        #expect(points.allSatisfy { $0.runId == "run-once" })
        for p in points where p.key == "train/text_loss" || p.key == "val/text_loss" {
            let expected = Self.textLoss(p.step) + (p.key == "val/text_loss" ? 0.05 : 0)
            #expect(abs(p.value - expected) < 1e-3, "\(p.key) at step \(p.step) is \(p.value), expected \(expected)")
        }
        #expect(harness.progress.last! == (step: 30, total: 30))
    }

    @Test("every complete checkpoint is an event with the step inside it; those the run needs are pinned (hard links) with their size and SHA-256")
    func everyCheckpointIsAnEventWithItsStepAndPinsCarryTheirHash() async throws {
        let output = TrainerFixture.temporaryDirectory("train-ckpt")
        let harness = try Harness()
        var payload = try Self.trainerPayload(run: "run-ckpt", output: output, maxSteps: 30,
                                              extra: ["--checkpoint-every", "10", "--step-seconds", "0.03"])
        payload.checkpointEvery = 20
        let report = try await harness.run(payload)
        #expect(report.outcome == .succeeded, "\(report.message)")

        let events = try harness.entries().flatMap(\.events).filter { $0.kind == .checkpointSaved }
        let data = events.map { Self.object($0.data) }
        #expect(events.allSatisfy { $0.shard == ShardRef(shardId: 7, leaseEpoch: 1) })
        for step in [10, 20, 30] {
            let source = "\(output)/model_step\(step).pth"
            let reported = data.filter { $0["source"]?.stringValue == source }
            try #require(reported.count == 1, "model_step\(step).pth reported \(reported.count) times")
            let d = reported[0]
            #expect(d["step"]?.doubleValue == Double(step) && d["step_source"] == .string("file"))
            #expect(d["full_state"] == .bool(true), "the numbered profile saves optimizer state")
            // Every full-state checkpoint is a resume point; 20 is also on checkpoint_every, 30 is the end.
            let pin = "\(output)/pins/step-\(step).pth"
            #expect(d["pinned"] == .bool(true) && d["path"]?.stringValue == pin)
            let roles = Set(d["roles"]?.arrayValue?.compactMap(\.stringValue) ?? [])
            #expect(roles == (step == 20 ? ["checkpoint", "resume"] : step == 30 ? ["final", "resume"] : ["resume"]))
            #expect(d["sha256"]?.stringValue == (try CheckpointScanner.sha256(pin)))
            #expect(d["size"]?.doubleValue == (try FileManager.default.attributesOfItem(atPath: pin)[.size] as? NSNumber)?.doubleValue)
            #expect(d["copied"] == .bool(false), "a hard link to the trainer's file (model_step\(step).pth or latest.pth of that step)")
            #expect(try TorchCheckpointReader.inspect(path: pin).step == Int64(step))
        }
        let best = try #require(data.last { $0["source"]?.stringValue == "\(output)/best_model.pth" }, "best_model.pth never reported")
        #expect(best["best"] == .bool(true) && best["step"] == .number(30))
        let out = Self.object(report.output)
        #expect(out["last_checkpoint"]?.stringValue == "\(output)/pins/step-30.pth")
        #expect(out["last_checkpoint_step"]?.doubleValue == 30)
        #expect(out["last_checkpoint_sha256"]?.stringValue == (try CheckpointScanner.sha256("\(output)/pins/step-30.pth")))
        #expect(out["final_step"]?.doubleValue == 30)
        #expect(out["exit"]?.stringValue == "success")
        #expect(out["reached_max_steps"] == .bool(true))
    }

    @Test func outputLinesAreLogEventsInOrderBatchedIntoFewEntries() async throws {
        let output = TrainerFixture.temporaryDirectory("train-logs")
        let harness = try Harness()
        let script = "i=1; while [ $i -le 1000 ]; do echo \"line $i\"; i=$((i+1)); done; echo 'warning: late' >&2"
        let report = try await harness.run(TrainPayload(run: "run-logs", argv: ["/bin/sh", "-c", script], outputDir: output, maxSteps: 1))
        #expect(report.outcome == .succeeded)

        let entries = try harness.entries()
        let logEntries = entries.filter { $0.events.contains { $0.kind == .log } }
        let logs = logEntries.flatMap(\.events).filter { $0.kind == .log }
        #expect(logs.filter { Self.object($0.data)["stream"] == .string("stdout") }.map(\.message) == (1...1000).map { "line \($0)" })
        #expect(logs.filter { Self.object($0.data)["stream"] == .string("stderr") }.map(\.message) == ["warning: late"])
        #expect(logEntries.allSatisfy { $0.events.count <= 100 })
        #expect(logEntries.count >= 11 && logEntries.count <= 200, "1001 lines in \(logEntries.count) entries")
    }

    // MARK: resume

    @Test func aResumedRunSpoolsNothingAtOrBelowItsCheckpointStep() async throws {
        let output = TrainerFixture.temporaryDirectory("train-resume")
        let first = try Harness()
        let report1 = try await first.run(try Self.trainerPayload(run: "run-resume", output: output, maxSteps: 20,
                                                                   extra: ["--checkpoint-every", "10"]))
        #expect(report1.outcome == .succeeded, "\(report1.message)")
        #expect(Set(Self.keyStepCounts(try first.entries()).keys) == Self.expectedKeys(steps: 1...20, valEvery: 10))

        // The run moves: a new shard resumes from step 10 (steps 11–20 are trained again; the
        // first attempt's TensorBoard file, with steps 1–20, is still in the log directory).
        let checkpoint = "\(output)/model_step10.pth"
        let second = try Harness()
        var payload = try Self.trainerPayload(run: "run-resume", output: output, maxSteps: 30,
                                              extra: ["--checkpoint-every", "10", "--resume", checkpoint])
        payload.resumeCheckpoint = checkpoint
        payload.resumeStep = 10
        let report2 = try await second.run(payload)
        #expect(report2.outcome == .succeeded, "\(report2.message)")

        let entries = try second.entries()
        let counts = Self.keyStepCounts(entries)
        let early = entries.flatMap(\.points).filter { $0.step <= 10 }
        #expect(early.isEmpty, "spooled again at or below the checkpoint: \(early.prefix(5))")
        #expect(Set(counts.keys) == Self.expectedKeys(steps: 11...30, valEvery: 10))
        #expect(counts.values.allSatisfy { $0 == 1 })
        #expect(entries.flatMap(\.events).contains { $0.kind == .log && $0.message.contains("Resumed from \(checkpoint) at step 10") })
        #expect(Self.object(report2.output)["last_checkpoint"]?.stringValue == "\(output)/pins/step-30.pth")
    }

    // MARK: failures

    @Test func cudaOutOfMemoryIsReportedForADownshift() async throws {
        let output = TrainerFixture.temporaryDirectory("train-oom")
        let harness = try Harness()
        // The checkpoint the shard resumes from (the worker checks it can read it before starting).
        try #"{"step": 1000}"#.write(toFile: output + "/model_step1000.pth", atomically: true, encoding: .utf8)
        var payload = TrainPayload(run: "run-oom", argv: try Support.trainerArgv(["--output-dir", output, "--batch-size", "16", "--oom-at-batch", "16"]),
                                   outputDir: output, resumeCheckpoint: output + "/model_step1000.pth", resumeStep: 1000,
                                   maxSteps: 2000, batchSize: 16, gradAccum: 1)
        payload.gpu = "1"
        let report = try await harness.run(payload)

        #expect(report.outcome == .outOfMemory)
        #expect(report.message.hasPrefix("CUDA out of memory at batch 16 × accumulation 1"))
        let out = Self.object(report.output)
        #expect(out["oom"] == .bool(true))
        #expect(out["batch_size"]?.doubleValue == 16)
        #expect(out["grad_accum"]?.doubleValue == 1)
        #expect(out["last_checkpoint"]?.stringValue == output + "/model_step1000.pth")
        #expect(out["last_checkpoint_step"]?.doubleValue == 1000)
        #expect(out["error"]?.stringValue?.hasPrefix("torch.OutOfMemoryError") == true)
        #expect(report.logTail.last?.hasPrefix("torch.OutOfMemoryError") == true)

        let events = try harness.entries().flatMap(\.events)
        let oom = try #require(events.first { $0.kind == .outOfMemory })
        #expect(oom.message.contains("CUDA out of memory"))
        #expect(Self.object(oom.data)["batch_size"]?.doubleValue == 16)
        #expect(events.contains { $0.kind == .log && Self.object($0.data)["stream"] == .string("stderr") && $0.message == oom.message })
    }

    @Test func aFailingTrainerIsFailedWithItsStatusAndLastTwentyLines() async throws {
        let output = TrainerFixture.temporaryDirectory("train-fail")
        let harness = try Harness()
        let script = """
        echo '[Train] epoch=1 step=5 text_loss=1.5 mel_loss=4.0 mel_top1=0.1 lr=1e-05'
        for i in $(seq 1 30); do echo "line $i"; done; echo 'ValueError: bad manifest' >&2; exit 3
        """
        let report = try await harness.run(TrainPayload(run: "run-fail", argv: ["/bin/sh", "-c", script], outputDir: output, maxSteps: 100))
        #expect(report.outcome == .failed)
        #expect(report.message == "the trainer exited with status 3 at step 5: ValueError: bad manifest")
        #expect(report.logTail == (12...30).map { "line \($0)" } + ["ValueError: bad manifest"])
        let out = Self.object(report.output)
        #expect(out["exit"] == .string("failed"))
        #expect(out["exit_code"]?.doubleValue == 3)
        #expect(out["final_step"]?.doubleValue == 5)
        #expect(out["last_checkpoint"] == .null)
        let points = try harness.entries().flatMap(\.points)
        #expect(Set(points.map(\.key)) == ["train/text_loss", "train/mel_loss", "train/mel_top1", "train/lr"])
    }

    @Test func aTrainerThatCannotStartIsAFailureNamingTheProgram() async throws {
        let harness = try Harness()
        let report = try await harness.run(TrainPayload(run: "r", argv: ["no-such-trainer-xyz"],
                                                        outputDir: TrainerFixture.temporaryDirectory("train-nostart"), maxSteps: 1))
        #expect(report.outcome == .failed)
        #expect(report.message.contains("cannot start no-such-trainer-xyz"))
    }

    @Test func aBadPayloadIsAFailureNamingTheField() async throws {
        let harness = try Harness()
        let assignment = ShardAssignment(shard: ShardRef(shardId: 1, leaseEpoch: 1), jobId: 1, kind: "train", attempt: 1,
                                         payload: Array(#"{"run":"r","argv":[],"output_dir":"/tmp/x","max_steps":10}"#.utf8))
        let report = try await harness.executor.run(assignment, context: ShardContext(assignment: assignment) { _, _ in })
        #expect(report.outcome == .failed)
        #expect(report.message.contains("field \"argv\""))
    }

    @Test func aResumeCheckpointThisWorkerCannotReadIsAFailureThatSaysWhy() async throws {
        let harness = try Harness()
        let payload = TrainPayload(run: "r", argv: ["/bin/true"], outputDir: TrainerFixture.temporaryDirectory("train-nockpt"),
                                   resumeCheckpoint: "/nonexistent/shared/model_step100.pth", resumeStep: 100, maxSteps: 200)
        let assignment = ShardAssignment(shard: ShardRef(shardId: 1, leaseEpoch: 1), jobId: 1, kind: "train", attempt: 2,
                                         payload: try JSONCoding.encode(payload.json), runId: "r")
        let report = try await harness.executor.run(assignment, context: ShardContext(assignment: assignment) { _, _ in })
        #expect(report.outcome == .failed)
        #expect(report.message.contains("/nonexistent/shared/model_step100.pth") && report.message.contains("shared filesystem"))
    }

    // MARK: cancel

    @Test func cancelStopsTheWholeTreeAndStillReportsTheLastCheckpoint() async throws {
        let output = TrainerFixture.temporaryDirectory("train-cancel")
        let harness = try Harness()
        var payload = try Self.trainerPayload(run: "run-cancel", output: output, maxSteps: 100,
                                              extra: ["--checkpoint-every", "2", "--spawn-children", "2", "--hang-at-step", "3"])
        payload.grace = .seconds(5)
        let task = Task { try await harness.run(payload) }
        let progress = harness.progress
        try #require(await Support.eventually(within: 60) { (progress.last?.step ?? 0) >= 3 }, "the fixture never reached step 3")
        let children = Support.childPids(in: output)
        try #require(children.count == 2)
        let trainer = try #require(ProcessStat.read(pid: children[0])?.parent)
        #expect(Support.isRunning(trainer))

        task.cancel()
        await #expect(throws: CancellationError.self) { _ = try await task.value }
        let survivors = (children + [trainer]).filter(Support.isRunning)
        #expect(survivors.isEmpty, "still running after cancel: \(survivors)")
        let events = try harness.entries().flatMap(\.events)
        #expect(events.contains { $0.kind == .checkpointSaved && Self.object($0.data)["source"]?.stringValue == "\(output)/model_step2.pth"
            && Self.object($0.data)["path"]?.stringValue == "\(output)/pins/step-2.pth" }, "the checkpoint written before the cancel is pinned and reported")
    }

    // MARK: payload

    @Test func thePayloadRoundTripsThroughJSON() throws {
        let payload = TrainPayload(run: "r1", argv: ["python", "train.py", "--lr", "1e-5"], workdir: "/srv/tts",
                                   env: ["WANDB_MODE": "disabled"], outputDir: "/shared/r1", logDir: "/shared/r1/logs",
                                   resumeCheckpoint: "/shared/r1/model_step20.pth", resumeStep: 20, metricsFloor: 25,
                                   metricsFloors: ["train/text_loss": 30, "train/samples_per_sec": 27], maxSteps: 100, batchSize: 8, gradAccum: 2, gpu: "1", grace: .seconds(3))
        #expect(try TrainPayload.parse(JSONCoding.encode(payload.json), runId: nil) == payload)
    }

    @Test func payloadDefaultsAndErrors() throws {
        let minimal = try TrainPayload.parse(Array(#"{"argv":["t"],"output_dir":"/o","max_steps":5,"resume_step":null}"#.utf8), runId: "from-assignment")
        #expect(minimal == TrainPayload(run: "from-assignment", argv: ["t"], outputDir: "/o", logDir: "/o", maxSteps: 5))
        func field(_ json: String) -> String? {
            do { _ = try TrainPayload.parse(Array(json.utf8), runId: "r"); return "accepted" } catch { return error.field }
        }
        #expect(field(#"{"output_dir":"/o","max_steps":5}"#) == "argv")
        #expect(field(#"{"argv":["t",3],"output_dir":"/o","max_steps":5}"#) == "argv[1]")
        #expect(field(#"{"argv":["t"],"output_dir":"/o","max_steps":5,"metrics_floors":{"k":1.5}}"#) == "metrics_floors.k")
        #expect(field(#"{"argv":["t"],"max_steps":5}"#) == "output_dir")
        #expect(field(#"{"argv":["t"],"output_dir":"/o"}"#) == "max_steps")
        #expect(field(#"{"argv":["t"],"output_dir":"/o","max_steps":5,"resume_step":2.5}"#) == "resume_step")
        #expect(field(#"{"argv":["t"],"output_dir":"/o","max_steps":5,"env":{"A":[1]}}"#) == "env.A")
        #expect(field(#"[1,2]"#) == nil)
    }
}
