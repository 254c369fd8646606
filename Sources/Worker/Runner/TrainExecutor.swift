import Foundation
import Shared

/// `train`: runs an existing trainer command (IndexTTS-2's `trainers/train_gpt_v2.py` or anything
/// that prints the same `[Train]`/`[Val]` lines) for one training shard. Its payload is a
/// ``TrainPayload`` (the coordinator renders the argv from the job spec).
///
/// While the trainer runs (``CommandRunner``, own process group, `CUDA_VISIBLE_DEVICES`):
/// - every stdout/stderr line is spooled as a `log` event (data `{"stream": "stdout"|"stderr"}`),
///   at most 100 per spool entry and at most 200 ms late;
/// - metrics come from the stdout lines (``TrainerLogParser``) and from the TensorBoard event files
///   under `log_dir` (polled every second), merged by ``MetricDeduplicator`` so each
///   `(key, step)` is spooled once; nothing at or below `metrics_floor` (default `resume_step`);
/// - progress is the highest step seen, of `max_steps`;
/// - `output_dir` is scanned every 2 s for checkpoints, each new one a `checkpoint_saved` event
///   (data: `step`, `path`, `size`, `sha256`, `kind`, and `best: true` for `best_model*.pth`).
/// After the trainer exits, TensorBoard and checkpoints are read once more, so nothing written at
/// the end is missed.
///
/// The report's `output` (a JSON object) always holds `final_step`, `last_checkpoint`,
/// `last_checkpoint_step`, `last_checkpoint_sha256` (null when none; without a checkpoint of its
/// own the shard names the one it resumed from, without hash), `batch_size` and `grad_accum` (as
/// given), and:
/// - success: outcome `succeeded`, `"exit": "success"`, `reached_max_steps`;
/// - CUDA out of memory: outcome `outOfMemory`, `"oom": true`, `"error"` (the stderr line), plus an
///   `oom` event — the coordinator retries from `last_checkpoint` with a smaller micro-batch;
/// - other failures: outcome `failed`, `"exit": "failed"` with `exit_code`, or `"exit": "killed"`
///   with `signal`; the last 20 output lines in `logTail`.
/// Cancellation: SIGTERM to the trainer's group, SIGKILL after `grace_seconds` (default 10), the
/// final reads, then `CancellationError`.
public struct TrainExecutor: ShardExecutor {
    public let kind = "train"
    /// A drain stops the trainer; the run resumes from its last checkpoint on another worker.
    public var stopsOnDrain: Bool { true }
    /// A drain or worker shutdown waits for the trainer's next full-state checkpoint (at most the
    /// job's `stop_grace`), then stops it: the run resumes elsewhere with its optimizer state.
    public var stopsAtCheckpoint: Bool { true }

    /// How often the files are looked at and how output is batched (tests shorten them).
    public struct Timing: Sendable {
        public var tensorBoardEvery: Duration
        public var checkpointsEvery: Duration
        public var logFlushEvery: Duration
        public var logLinesPerEntry: Int

        public init(tensorBoardEvery: Duration = .seconds(1), checkpointsEvery: Duration = .seconds(1),
                    logFlushEvery: Duration = .milliseconds(200), logLinesPerEntry: Int = 100) {
            self.tensorBoardEvery = tensorBoardEvery
            self.checkpointsEvery = checkpointsEvery
            self.logFlushEvery = logFlushEvery
            self.logLinesPerEntry = max(1, logLinesPerEntry)
        }
    }

    /// How many output lines a failed report carries.
    public static let logTailLines = 20

    let spool: MetricSpool
    let timing: Timing
    let workerEnvironment: [String: String]
    /// Free bytes of a checkpoint volume (statvfs; tests give a stand-in for a nearly full disk).
    let freeSpace: @Sendable (String) -> Int64?
    /// The interface a gang rank's collectives use (``WorkerConfiguration/collectiveInterface``).
    let collectiveInterface: String?

    /// - Parameters:
    ///   - spool: where metrics and events go.
    ///   - workerEnvironment: what the trainer's environment starts from (default: the worker's).
    ///   - collectiveInterface: for a gang's rank, `GLOO_SOCKET_IFNAME` / `NCCL_SOCKET_IFNAME`
    ///     unless the job sets them (nil: torch's own choice).
    public init(spool: MetricSpool, timing: Timing = Timing(),
                workerEnvironment: [String: String] = ProcessInfo.processInfo.environment, collectiveInterface: String? = nil) {
        self.spool = spool
        self.timing = timing
        self.workerEnvironment = workerEnvironment
        self.freeSpace = CheckpointPinner.statvfsFreeBytes
        self.collectiveInterface = collectiveInterface
    }

    /// With a stand-in for the checkpoint volume's free space (tests).
    init(spool: MetricSpool, timing: Timing, workerEnvironment: [String: String] = ProcessInfo.processInfo.environment,
         freeSpace: @escaping @Sendable (String) -> Int64?) {
        self.spool = spool
        self.timing = timing
        self.workerEnvironment = workerEnvironment
        self.freeSpace = freeSpace
        self.collectiveInterface = nil
    }

    public func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport {
        var parsed: TrainPayload
        do { parsed = try TrainPayload.parse(assignment.payload, runId: assignment.runId) } catch {
            return ShardReport(outcome: .failed, message: error.description)
        }
        try Task.checkCancellation()
        var note: String?
        if let checkpoint = parsed.resumeCheckpoint, !FileManager.default.isReadableFile(atPath: checkpoint),
           let newer = ResumeCheckpoint.newest(in: [(checkpoint as NSString).deletingLastPathComponent, parsed.pinDirectory],
                                               atLeast: parsed.resumeStep, fullState: parsed.resumeFullState ?? false) {
            // The named checkpoint was rotated away by a trainer that kept going (a partitioned
            // worker's): resume from the newest one beside it.
            parsed.argv = parsed.argv.map { $0 == checkpoint ? newer.path : $0 }
            parsed.resumeCheckpoint = newer.path
            parsed.resumeStep = newer.step
            note = "[resume] \(checkpoint) is gone (rotated by a trainer that kept running); resuming from the newest checkpoint beside it, \(newer.path) (step \(newer.step))"
        }
        let payload = parsed
        if let checkpoint = payload.resumeCheckpoint, !FileManager.default.isReadableFile(atPath: checkpoint) {
            // Starting over instead would silently throw the run's progress away.
            return ShardReport(outcome: .failed, message: "train: the checkpoint to resume from, \(checkpoint), is not readable on this worker. Checkpoints must be on storage every worker can read (a shared filesystem: see --checkpoint-root / the job's output_dir)")
        }
        try? FileManager.default.createDirectory(atPath: payload.outputDir, withIntermediateDirectories: true)
        var environment = payload.env
        // A gang's rank: torchrun's variables (the coordinator puts them in env too; these win).
        if let placement = payload.placement {
            environment.merge(placement.environment) { $1 }
            if let collectiveInterface, placement.worldSize > 1 {
                for name in ["GLOO_SOCKET_IFNAME", "NCCL_SOCKET_IFNAME"] where environment[name] == nil && workerEnvironment[name] == nil {
                    environment[name] = collectiveInterface
                }
            }
        }
        let python = TrainerPython.prepare(argv: payload.argv, configured: payload.python, environment: environment,
                                           workerEnvironment: workerEnvironment, workingDirectory: payload.workdir,
                                           directory: (spool.directory as NSString).standardizingPath + "-python")
        if let path = python.path { environment["PATH"] = path }
        defer { python.cleanUp() }
        let spec = CommandSpec(argv: payload.argv, workingDirectory: payload.workdir, environment: environment,
                               cudaVisibleDevices: payload.gpu)
        let runner: CommandRunner
        do { runner = try CommandRunner(spec, tailLines: Self.logTailLines, workerEnvironment: workerEnvironment) } catch {
            return ShardReport(outcome: .failed, message: "train: \(error)")
        }
        let monitor = TrainingMonitor(run: payload.run, shard: assignment.shard, payload: payload, spool: spool, context: context,
                                      batching: .init(maximumLines: timing.logLinesPerEntry, maximumDelay: timing.logFlushEvery),
                                      freeSpace: freeSpace)
        if let note { monitor.record(EventRequest(kind: .log, shard: assignment.shard, message: note, data: [], wallTime: Date().timeIntervalSince1970)) }
        if let warning = python.warning {
            monitor.record(EventRequest(kind: .warning, shard: assignment.shard, message: warning, wallTime: Date().timeIntervalSince1970))
        }
        if let checkpoint = payload.resumeCheckpoint {
            let what = payload.resumeFullState == false
                ? "model weights only: AdamW state and the LR schedule position are lost (the warm-up restarts)"
                : "full state: model, optimizer and LR schedule"
            monitor.record(EventRequest(kind: .log, shard: assignment.shard,
                                        message: "[resume] starting the trainer from \(checkpoint) at step \(payload.resumeStep.map(String.init) ?? "?") (\(what))",
                                        wallTime: Date().timeIntervalSince1970))
        }
        // Unstructured on purpose: they must not stop when this task is cancelled (the lines the
        // trainer prints while it stops, the checkpoint it writes on SIGTERM, still count).
        let consumer = Task { for await line in runner.lines { monitor.handle(line) } }
        let poller = Task { await Self.poll(monitor, timing: timing) }
        let stopper = Task { await Self.watchStops(runner: runner, monitor: monitor, context: context, payload: payload) }

        let exit = await withTaskCancellationHandler {
            await runner.wait()
        } onCancel: {
            runner.terminate(grace: payload.grace)
        }
        await consumer.value
        poller.cancel()
        await poller.value
        stopper.cancel()
        let stop = await stopper.value
        await monitor.pollFiles(tensorBoard: true, checkpoints: true, final: exit == .success, exited: true)
        monitor.flush()
        if Task.isCancelled { throw CancellationError() }
        if let mismatch = monitor.resumeMismatch {
            return ShardReport(outcome: .failed, message: mismatch, output: Self.encode(baseOutput(payload: payload, monitor: monitor)))
        }
        if let stop, exit != .success {
            // A planned stop: not a failure; the run resumes elsewhere from the pinned checkpoint.
            var output = baseOutput(payload: payload, monitor: monitor)
            output["exit"] = .string("stopped")
            output["planned_stop"] = .string(stop)
            return ShardReport(outcome: .cancelled, message: stop, output: Self.encode(output))
        }
        return report(exit, payload: payload, monitor: monitor)
    }

    /// Watches for a planned stop (drain, shutdown) and a resume mismatch while the trainer runs.
    /// A planned stop waits for the next full-state checkpoint, at most `stop_grace`, then stops
    /// the trainer; a mismatch stops it at once. Returns the planned stop's message, if any.
    private static func watchStops(runner: CommandRunner, monitor: TrainingMonitor, context: ShardContext,
                                   payload: TrainPayload) async -> String? {
        let clock = ContinuousClock()
        var deadline: ContinuousClock.Instant?
        var reason: String?
        while runner.exit == nil {
            if monitor.resumeMismatch != nil {
                runner.terminate(grace: payload.grace)
                return nil
            }
            if reason == nil, let asked = context.plannedStopReason {
                reason = asked
                deadline = clock.now + payload.stopGrace
                monitor.requestStop()
                monitor.record(EventRequest(kind: .log, shard: context.assignment.shard,
                                            message: "[stop] \(asked); waiting for the trainer's next full-state checkpoint (at most \(Int(payload.stopGrace.secondsValue)) s, stop_grace) so the resume loses no optimizer state",
                                            wallTime: Date().timeIntervalSince1970))
            }
            if let why = reason, let until = deadline {
                if monitor.fullCheckpointSinceStopRequest {
                    let step = monitor.checkpoints.newestFull.map { " at step \($0.step)" } ?? ""
                    monitor.record(EventRequest(kind: .log, shard: context.assignment.shard,
                                                message: "[stop] full-state checkpoint\(step) pinned; stopping the trainer",
                                                wallTime: Date().timeIntervalSince1970))
                    runner.terminate(grace: payload.grace)
                    return why
                }
                if clock.now >= until {
                    let last = monitor.checkpoints.newestFull.map { "step \($0.step)" } ?? "none"
                    monitor.record(EventRequest(kind: .warning, shard: context.assignment.shard,
                                                message: "[stop] no full-state checkpoint within stop_grace (\(Int(payload.stopGrace.secondsValue)) s); stopping the trainer anyway: the resume starts from the last one (\(last)) and repeats the steps since",
                                                wallTime: Date().timeIntervalSince1970))
                    runner.terminate(grace: payload.grace)
                    return why
                }
            }
            do { try await Task.sleep(for: .milliseconds(100)) } catch { return reason }
        }
        return reason
    }

    /// Flushes log batches when due, polls TensorBoard and checkpoints on their periods.
    private static func poll(_ monitor: TrainingMonitor, timing: Timing) async {
        let clock = ContinuousClock()
        var nextTensorBoard = clock.now + timing.tensorBoardEvery
        var nextCheckpoints = clock.now + timing.checkpointsEvery
        let tick = min(timing.logFlushEvery, timing.tensorBoardEvery, timing.checkpointsEvery)
        while !Task.isCancelled {
            do { try await Task.sleep(for: tick) } catch { return }
            monitor.flushIfDue()
            let now = clock.now
            let tensorBoard = now >= nextTensorBoard
            let checkpoints = now >= nextCheckpoints
            if tensorBoard { nextTensorBoard = now + timing.tensorBoardEvery }
            if checkpoints { nextCheckpoints = now + timing.checkpointsEvery }
            if tensorBoard || checkpoints { await monitor.pollFiles(tensorBoard: tensorBoard, checkpoints: checkpoints) }
        }
    }

    /// What every report's output holds: the step reached (the highest logged step or the step
    /// inside the newest checkpoint, whichever is higher: the real trainer's final save may hold a
    /// step it never logged) and the checkpoint to resume from.
    private func baseOutput(payload: TrainPayload, monitor: TrainingMonitor) -> [String: JSONValue] {
        let checkpoint = monitor.checkpoints.resumable
        let newestStep = monitor.checkpoints.newest?.step
        let finalStep: Int64? = switch (monitor.highestStep, newestStep) {
        case let (a?, b?): max(a, b)
        case let (a, b): a ?? b
        }
        // Without a checkpoint of its own, the shard's last checkpoint is the one it resumed from.
        return [
            "final_step": finalStep.map { .number(Double($0)) } ?? .null,
            "last_checkpoint": checkpoint.map { .string($0.path) } ?? payload.resumeCheckpoint.map(JSONValue.string) ?? .null,
            "last_checkpoint_step": (checkpoint.map { $0.step } ?? payload.resumeStep).map { .number(Double($0)) } ?? .null,
            "last_checkpoint_sha256": checkpoint?.sha256.map(JSONValue.string) ?? .null,
            "last_checkpoint_full_state": checkpoint.map { .bool($0.fullState) } ?? .null,
            "batch_size": payload.batchSize.map { .number(Double($0)) } ?? .null,
            "grad_accum": payload.gradAccum.map { .number(Double($0)) } ?? .null,
        ]
    }

    private func report(_ exit: CommandExit, payload: TrainPayload, monitor: TrainingMonitor) -> ShardReport {
        var output = baseOutput(payload: payload, monitor: monitor)
        let finalStep = output["final_step"]?.doubleValue.map { Int64($0) }
        let stepText = finalStep.map { "step \($0)" } ?? "no step"
        switch exit {
        case .success:
            output["exit"] = .string("success")
            output["reached_max_steps"] = .bool((finalStep ?? 0) >= payload.maxSteps)
            return ShardReport(outcome: .succeeded, message: "trained run \(payload.run) to \(stepText) of \(payload.maxSteps)",
                               output: Self.encode(output))
        case .outOfMemory(let line, let lastLines):
            output["oom"] = .bool(true)
            output["error"] = .string(line)
            let data: [String: JSONValue] = [
                "batch_size": output["batch_size"] ?? .null, "grad_accum": output["grad_accum"] ?? .null,
                "step": output["final_step"] ?? .null, "last_checkpoint": output["last_checkpoint"] ?? .null,
            ]
            monitor.record(EventRequest(kind: .outOfMemory, shard: monitor.shard, message: line,
                                        data: Self.encode(data), wallTime: Date().timeIntervalSince1970))
            let batch = payload.batchSize.map { "at batch \($0)\(payload.gradAccum.map { " × accumulation \($0)" } ?? "")" } ?? "(batch size not given)"
            return ShardReport(outcome: .outOfMemory, message: "CUDA out of memory \(batch) at \(stepText): \(line)",
                               output: Self.encode(output), logTail: lastLines)
        case .killed(let signal, let lastLines):
            output["exit"] = .string("killed")
            output["signal"] = .number(Double(signal))
            let hint = signal == 9 ? " (SIGKILL from outside the worker: often the kernel's out-of-memory killer; see dmesg)" : ""
            return ShardReport(outcome: .failed, message: "the trainer \(exit.summary) at \(stepText)\(hint)",
                               output: Self.encode(output), logTail: lastLines)
        case .failed(let code, let lastLines):
            output["exit"] = .string("failed")
            output["exit_code"] = .number(Double(code))
            let last = lastLines.last.map { ": \($0)" } ?? ""
            return ShardReport(outcome: .failed, message: "the trainer \(exit.summary) at \(stepText)\(last)",
                               output: Self.encode(output), logTail: lastLines)
        }
    }

    private static func encode(_ o: [String: JSONValue]) -> [UInt8] { (try? JSONCoding.encode(o)) ?? [] }
}
