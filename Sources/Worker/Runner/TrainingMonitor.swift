import Foundation
import Shared
import Synchronization

/// What ``TrainExecutor`` watches while a trainer runs, and what it sends through the spool:
/// the trainer's output lines as batched `log` events, its metrics from stdout and TensorBoard
/// through one ``MetricDeduplicator``, and its checkpoints as `checkpoint_saved` events.
///
/// Line handling runs on the caller (cheap: a parse and a lock); TensorBoard polls and checkpoint
/// scans (file reads, SHA-256 of multi-gigabyte files) run on a dedicated serial queue, never on
/// the cooperative pool.
final class TrainingMonitor: Sendable {
    /// Batching of log lines and points into spool entries.
    struct Batching: Sendable {
        /// At most this many log events per spool entry.
        var maximumLines = 100
        /// Spool what is pending once the oldest pending item is this old.
        var maximumDelay = Duration.milliseconds(200)
        /// Spool at once when this many points are pending.
        var maximumPoints = 2_000
    }

    /// The newest checkpoint reported, and the newest one with a step in its name.
    struct Checkpoints: Sendable {
        var latest: CheckpointFile?
        var latestNumbered: CheckpointFile?
        var reported = 0

        /// The one to resume from: the newest `model_step{N}.pth` (kept by the trainer), else the
        /// newest of any kind.
        var resumable: CheckpointFile? { latestNumbered ?? latest }
    }

    private struct State: Sendable {
        var deduplicator: MetricDeduplicator
        var points: [MetricPoint] = []
        var events: [EventRequest] = []
        var pendingSince: ContinuousClock.Instant?
        var highestStep: Int64?
        var reportedStep: Int64?
        var checkpoints = Checkpoints()
    }

    private struct Sources: Sendable {
        var tensorBoard: TensorBoardScalarReader
        var checkpoints: CheckpointScanner
    }

    let run: String
    let shard: ShardRef?
    let maxSteps: Int64
    private let spool: MetricSpool
    private let context: ShardContext
    private let batching: Batching
    private let state: Mutex<State>
    private let sources: Mutex<Sources>
    private let io = DispatchQueue(label: "tts-train-io")

    init(run: String, shard: ShardRef?, payload: TrainPayload, spool: MetricSpool, context: ShardContext, batching: Batching) {
        self.run = run
        self.shard = shard
        self.maxSteps = payload.maxSteps
        self.spool = spool
        self.context = context
        self.batching = batching
        state = Mutex(State(deduplicator: MetricDeduplicator(floor: payload.metricsFloor ?? payload.resumeStep,
                                                                      deliveredThrough: payload.metricsFloors)))
        sources = Mutex(Sources(tensorBoard: TensorBoardScalarReader(directory: payload.logDir),
                                checkpoints: CheckpointScanner(directory: payload.outputDir)))
    }

    /// The highest step the trainer reported so far.
    var highestStep: Int64? { state.withLock { $0.highestStep } }
    /// The checkpoints reported so far.
    var checkpoints: Checkpoints { state.withLock { $0.checkpoints } }

    // MARK: output lines

    /// One output line: a `log` event, and for stdout the metrics of a `[Train]`/`[Val]` line.
    func handle(_ line: CommandOutputLine) {
        let now = Date().timeIntervalSince1970
        let parsed = line.stream == .stdout ? TrainerLogParser.parse(line.text) : nil
        let event = EventRequest(kind: .log, shard: shard, message: line.text,
                                 data: Self.streamData[line.stream] ?? [], wallTime: now)
        let (due, progress) = state.withLock { s -> (SpoolBatch?, Int64?) in
            s.events.append(event)
            if let parsed {
                let admitted = s.deduplicator.admit(parsed.metricPoints(runId: run, wallTime: now), from: .stdout)
                s.points += admitted
                s.highestStep = max(s.highestStep ?? parsed.step, parsed.step)
            }
            if s.pendingSince == nil { s.pendingSince = .now }
            let full = s.events.count >= batching.maximumLines || s.points.count >= batching.maximumPoints
            return (full ? Self.take(&s) : nil, Self.progressToReport(&s))
        }
        if let progress { context.progress(step: progress, of: maxSteps) }
        if let due { append(due) }
    }

    /// Spools what is pending if the oldest pending item has waited ``Batching/maximumDelay``.
    func flushIfDue() {
        let due = state.withLock { s -> SpoolBatch? in
            guard let since = s.pendingSince, ContinuousClock.now - since >= batching.maximumDelay else { return nil }
            return Self.take(&s)
        }
        if let due { append(due) }
    }

    /// Spools everything pending.
    func flush() {
        if let due = state.withLock({ Self.take(&$0) }) { append(due) }
    }

    /// Adds an event (spooled with the next batch, or at once with `now`).
    func record(_ event: EventRequest, now: Bool = true) {
        state.withLock { s in
            s.events.append(event)
            if s.pendingSince == nil { s.pendingSince = .now }
        }
        if now { flush() }
    }

    // MARK: files (on the I/O queue)

    /// Reads new TensorBoard scalars and scans for new checkpoints, off the cooperative pool.
    func pollFiles(tensorBoard: Bool, checkpoints: Bool) async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            io.async { [self] in
                if tensorBoard { pollTensorBoard() }
                if checkpoints { scanCheckpoints() }
                c.resume()
            }
        }
    }

    private func pollTensorBoard() {
        let poll = sources.withLock { $0.tensorBoard.poll() }
        let now = Date().timeIntervalSince1970
        let warnings = poll.warnings.map {
            EventRequest(kind: .warning, shard: shard, message: $0, wallTime: now)
        }
        guard !poll.scalars.isEmpty || !warnings.isEmpty else { return }
        let progress = state.withLock { s -> Int64? in
            let admitted = s.deduplicator.admit(poll.scalars.map { $0.metricPoint(runId: run) }, from: .tensorboard)
            s.points += admitted
            if let top = admitted.map(\.step).max() { s.highestStep = max(s.highestStep ?? top, top) }
            s.events += warnings
            if s.pendingSince == nil { s.pendingSince = .now }
            return Self.progressToReport(&s)
        }
        if let progress { context.progress(step: progress, of: maxSteps) }
        flush()
    }

    private func scanCheckpoints() {
        let step = highestStep
        let found: [CheckpointFile]
        do {
            found = try sources.withLock { (s) throws(CheckpointScanError) -> [CheckpointFile] in try s.checkpoints.scan(currentStep: step) }
        } catch {
            record(EventRequest(kind: .warning, shard: shard, message: "\(error)", wallTime: Date().timeIntervalSince1970))
            return
        }
        guard !found.isEmpty else { return }
        let events = found.map { file in
            EventRequest(kind: .checkpointSaved, shard: shard,
                         message: "checkpoint \(file.name)\(file.step.map { " at step \($0)" } ?? "")",
                         data: Self.checkpointData(file), wallTime: Date().timeIntervalSince1970)
        }
        state.withLock { s in
            for file in found {
                s.checkpoints.reported += 1
                s.checkpoints.latest = Self.newer(s.checkpoints.latest, file)
                if file.kind == .step { s.checkpoints.latestNumbered = Self.newer(s.checkpoints.latestNumbered, file) }
            }
            s.events += events
            if s.pendingSince == nil { s.pendingSince = .now }
        }
        flush()
    }

    // MARK: helpers

    private struct SpoolBatch {
        var points: [MetricPoint]
        var events: [EventRequest]
    }

    private static func take(_ s: inout State) -> SpoolBatch? {
        s.pendingSince = nil
        guard !s.points.isEmpty || !s.events.isEmpty else { return nil }
        defer {
            s.points = []
            s.events = []
        }
        return SpoolBatch(points: s.points, events: s.events)
    }

    private func append(_ batch: SpoolBatch) {
        // One entry per ≤ maximumLines events (a burst of output can exceed it between two takes).
        var events = batch.events[...]
        var points = batch.points
        repeat {
            let chunk = Array(events.prefix(batching.maximumLines))
            events = events.dropFirst(chunk.count)
            spool.append(points: points, events: chunk)
            points = []
        } while !events.isEmpty
    }

    private static func progressToReport(_ s: inout State) -> Int64? {
        guard let h = s.highestStep, h != s.reportedStep else { return nil }
        s.reportedStep = h
        return h
    }

    private static func newer(_ a: CheckpointFile?, _ b: CheckpointFile) -> CheckpointFile {
        guard let a else { return b }
        switch (a.step, b.step) {
        case let (x?, y?) where x != y: return y > x ? b : a
        default: return b.modified >= a.modified ? b : a
        }
    }

    /// `{"stream": "stdout"}` / `{"stream": "stderr"}`, encoded once.
    private static let streamData: [CommandOutputLine.Stream: [UInt8]] = [
        .stdout: Array(#"{"stream":"stdout"}"#.utf8), .stderr: Array(#"{"stream":"stderr"}"#.utf8),
    ]

    /// The data of a `checkpoint_saved` event: step (null if unknown), path, size, sha256, kind,
    /// and `best: true` for the best-validation checkpoint.
    static func checkpointData(_ file: CheckpointFile) -> [UInt8] {
        var o: [String: JSONValue] = [
            "step": file.step.map { .number(Double($0)) } ?? .null,
            "path": .string(file.path), "size": .number(Double(file.size)), "sha256": .string(file.sha256),
            "kind": .string(file.kind.rawValue),
        ]
        if file.kind == .best { o["best"] = .bool(true) }
        return (try? JSONCoding.encode(o)) ?? []
    }
}
