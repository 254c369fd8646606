import Foundation
import Shared
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

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

    /// A complete checkpoint the monitor reported: where it is (a pin when pinned), the step
    /// inside it and whether it holds optimizer state.
    struct ReportedCheckpoint: Sendable, Equatable {
        var path: String
        var step: Int64
        var fullState: Bool
        var sha256: String?
        var pinned: Bool
    }

    /// The checkpoints reported so far.
    struct Checkpoints: Sendable {
        /// The newest checkpoint with optimizer state (pins preferred at equal steps).
        var newestFull: ReportedCheckpoint?
        /// The newest checkpoint of any kind.
        var newest: ReportedCheckpoint?
        /// Full-state checkpoints seen since a planned stop was asked for.
        var fullSinceStopRequest = 0
        var reported = 0
        var pins: [PinnedCheckpoint] = []

        /// The one to resume from: the newest with optimizer state, else the newest.
        var resumable: ReportedCheckpoint? { newestFull ?? newest }
    }

    private struct State: Sendable {
        var deduplicator: MetricDeduplicator
        var points: [MetricPoint] = []
        var events: [EventRequest] = []
        var pendingSince: ContinuousClock.Instant?
        var highestStep: Int64?
        var reportedStep: Int64?
        var checkpoints = Checkpoints()
        /// Set when a planned stop (drain, shutdown) waits for the next full-state checkpoint: the
        /// step the trainer had reached then (only a checkpoint past it counts).
        var stopRequestedAt: Int64?
        /// When the planned stop was asked for (wall clock; a gang's other ranks wait on rank 0's pins).
        var stopRequestedWall: Double?
        /// The trainer's `[Info] Resumed from … step N` did not match what was asked.
        var resumeMismatch: String?
        var sawResumeNotice = false
    }

    private struct Sources: Sendable {
        var tensorBoard: TensorBoardScalarReader
        var checkpoints: CheckpointScanner
        var pinner: CheckpointPinner
        /// Files already warned about (incomplete, unreadable), by name and inode.
        var warned: Set<String> = []
        var lastDiskWarning: ContinuousClock.Instant?
    }

    let run: String
    let shard: ShardRef?
    let maxSteps: Int64
    /// The step the trainer was asked to resume from (nil on a first start).
    let expectedResumeStep: Int64?
    let expectedResumeCheckpoint: String?
    /// The rank in a data-parallel gang (nil: a single-GPU run). Ranks other than 0 report only
    /// their log lines (tagged with the rank): the run's metrics, notices, checkpoints and pins
    /// are rank 0's.
    let rank: Int?
    private var reportsMetrics: Bool { (rank ?? 0) == 0 }
    /// Where rank 0 pins (shared by the gang).
    let pinDirectory: String
    private let spool: MetricSpool
    private let context: ShardContext
    private let batching: Batching
    private let state: Mutex<State>
    private let sources: Mutex<Sources>
    private let io = DispatchQueue(label: "tts-train-io")

    init(run: String, shard: ShardRef?, payload: TrainPayload, spool: MetricSpool, context: ShardContext, batching: Batching,
         freeSpace: @escaping @Sendable (String) -> Int64? = CheckpointPinner.statvfsFreeBytes) {
        self.run = run
        self.shard = shard
        self.maxSteps = payload.maxSteps
        self.expectedResumeStep = payload.resumeCheckpoint == nil ? nil : payload.resumeStep
        self.expectedResumeCheckpoint = payload.resumeCheckpoint
        self.rank = payload.placement?.rank
        self.pinDirectory = payload.pinDirectory
        self.spool = spool
        self.context = context
        self.batching = batching
        state = Mutex(State(deduplicator: MetricDeduplicator(floor: payload.metricsFloor ?? payload.resumeStep,
                                                                      deliveredThrough: payload.metricsFloors)))
        sources = Mutex(Sources(tensorBoard: TensorBoardScalarReader(directory: payload.logDir),
                                checkpoints: CheckpointScanner(directory: payload.outputDir),
                                pinner: CheckpointPinner(policy: .init(evalEvery: payload.evalEvery, checkpointEvery: payload.checkpointEvery,
                                                                       maxSteps: payload.maxSteps, directory: payload.pinDirectory),
                                                         freeSpace: freeSpace)))
    }

    /// Asks the monitor to count full-state checkpoints from now on (a planned stop waits for one).
    func requestStop() { state.withLock { s in
        s.stopRequestedAt = s.highestStep ?? 0
        s.stopRequestedWall = Date().timeIntervalSince1970
        s.checkpoints.fullSinceStopRequest = 0
    } }

    /// True once a full-state checkpoint at or past the step of ``requestStop()`` was pinned.
    /// A gang's other ranks pin nothing: for them, once rank 0's worker has pinned a full-state
    /// checkpoint (`<pin_dir>/step-N.pth`, linked) since the request, the gang can resume from it.
    var fullCheckpointSinceStopRequest: Bool {
        if reportsMetrics { return state.withLock { $0.checkpoints.fullSinceStopRequest > 0 } }
        guard let since = state.withLock({ $0.stopRequestedWall }) else { return false }
        return Self.fullPin(in: pinDirectory, since: since)
    }

    /// Whether `directory` has a full-state pin (`step-N.pth`) linked at or after `since`
    /// (its inode's change time: linking a pin changes it; the trainer's write does not come later).
    static func fullPin(in directory: String, since: Double) -> Bool {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return false }
        for name in names where name.hasPrefix("step-") && name.hasSuffix(".pth") && !name.hasSuffix("-model.pth") {
            var st = stat()
            guard stat(directory + "/" + name, &st) == 0 else { continue }
            let changed = Double(st.st_ctim.tv_sec) + Double(st.st_ctim.tv_nsec) / 1e9
            if changed >= since { return true }
        }
        return false
    }

    /// Set when the trainer said it resumed from another step than the one asked for.
    var resumeMismatch: String? { state.withLock { $0.resumeMismatch } }

    /// The highest step the trainer reported so far.
    var highestStep: Int64? { state.withLock { $0.highestStep } }
    /// The checkpoints reported so far.
    var checkpoints: Checkpoints { state.withLock { $0.checkpoints } }

    // MARK: output lines

    /// One output line: a `log` event, and for stdout the metrics of a `[Train]`/`[Val]` line.
    func handle(_ line: CommandOutputLine) {
        let now = Date().timeIntervalSince1970
        let parsed = line.stream == .stdout && reportsMetrics ? TrainerLogParser.parse(line.text) : nil
        let data = rank.map { Self.json(["stream": .string(line.stream == .stdout ? "stdout" : "stderr"), "rank": .number(Double($0))]) }
        let event = EventRequest(kind: .log, shard: shard, message: line.text,
                                 data: data ?? Self.streamData[line.stream] ?? [], wallTime: now)
        if parsed == nil, reportsMetrics, line.stream == .stdout, let notice = TrainerNotice.parse(line.text) { handle(notice, now: now) }
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

    /// A trainer notice: a run event (`trainer_resumed`, `new_best`, `trainer_complete`), and the
    /// check that a resume started where it was asked to.
    private func handle(_ notice: TrainerNotice, now: Double) {
        var extra: [EventRequest] = []
        switch notice {
        case .resumed(let checkpoint, let epoch, let step):
            let data = Self.json(["checkpoint": .string(checkpoint), "epoch": .number(Double(epoch)), "step": .number(Double(step))])
            extra.append(EventRequest(kind: .trainerResumed, shard: shard, message: "the trainer resumed from \(checkpoint) at step \(step)", data: data, wallTime: now))
            if let expected = expectedResumeStep, expected != step {
                let why = "resume mismatch: the cluster resumed this run from \(expectedResumeCheckpoint ?? "?") at step \(expected), but the trainer says it resumed from \(checkpoint) at step \(step); its steps would not line up with the run's stored history. Check that the command passes {resume_checkpoint} to --resume and nothing else (no --resume auto)"
                state.withLock { s in
                    if s.resumeMismatch == nil { s.resumeMismatch = why }
                }
                extra.append(EventRequest(kind: .resumeMismatch, shard: shard, message: why, data: data, wallTime: now))
            }
            state.withLock { $0.sawResumeNotice = true }
        case .newBest(let loss):
            extra.append(EventRequest(kind: .newBest, shard: shard, message: "new best validation text_loss \(loss)",
                                      data: Self.json(["val/text_loss": .number(loss), "step": highestStep.map { .number(Double($0)) } ?? .null]), wallTime: now))
        case .sampleInference:
            break
        case .complete:
            extra.append(EventRequest(kind: .trainerComplete, shard: shard, message: "the trainer finished its loop", wallTime: now))
        }
        for e in extra { record(e, now: false) }
    }

    /// True once the trainer printed its `[Info] Resumed from …` line.
    var sawResumeNotice: Bool { state.withLock { $0.sawResumeNotice } }

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
    /// `final`: the trainer has exited successfully; its newest checkpoint is the run's last.
    /// `exited`: the trainer is gone (files it wrote in place need not settle).
    func pollFiles(tensorBoard: Bool, checkpoints: Bool, final: Bool = false, exited: Bool = false) async {
        guard reportsMetrics else { return } // rank 0 of the gang reads the run's files
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            io.async { [self] in
                if tensorBoard { pollTensorBoard() }
                if checkpoints { scanCheckpoints(trainerExited: exited || final) }
                if final { pinFinal() }
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

    private func scanCheckpoints(trainerExited: Bool = false) {
        let step = highestStep
        let found: [CheckpointFile]
        do {
            found = try sources.withLock { (s) throws(CheckpointScanError) -> [CheckpointFile] in
                try s.checkpoints.scanWithoutHashing(currentStep: step, settleInPlace: !trainerExited)
            }
        } catch {
            record(EventRequest(kind: .warning, shard: shard, message: "\(error)", wallTime: Date().timeIntervalSince1970))
            return
        }
        // Full-state files first: at a step where both appear, the pin holds optimizer state.
        let ordered = found.sorted { a, b in
            (a.name.hasPrefix("latest_full") ? 0 : 1, a.step ?? -1) < (b.name.hasPrefix("latest_full") ? 0 : 1, b.step ?? -1)
        }
        for file in ordered { consider(file, final: false) }
        flush()
    }

    /// After a successful exit: pins the trainer's newest complete checkpoint as the run's last
    /// (its step read from inside it: the real trainer's final save may hold a step it never logged).
    private func pinFinal() {
        let dir = sources.withLock { $0.checkpoints.directory }
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
        var best: (file: CheckpointFile, info: TorchCheckpointInfo)?
        for name in names {
            guard let (kind, stepInName) = CheckpointScanner.classify(name), kind != .best else { continue }
            let path = dir + "/" + name
            guard let info = try? TorchCheckpointReader.inspect(path: path), let step = info.step ?? stepInName else { continue }
            let better = best.map { b in
                let bStep = b.info.step ?? b.file.step ?? -1
                return step > bStep || (step == bStep && info.hasOptimizerState && !b.info.hasOptimizerState)
            } ?? true
            if better {
                let inode = (try? FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
                best = (CheckpointFile(path: path, name: name, kind: kind, step: step, size: info.size, sha256: "", modified: 0, inode: inode), info)
            }
        }
        guard let best else { return }
        let step = best.info.step ?? best.file.step ?? -1
        let pinned = state.withLock { s in
            s.checkpoints.pins.contains { $0.step == step && $0.fullState == best.info.hasOptimizerState && $0.roles.contains(.final) }
        }
        guard !pinned else { return } // already pinned as the last one (it reached max_steps)
        consider(best.file, final: true)
        flush()
    }

    /// One new or changed checkpoint file: held under a temporary name at once, checked, and
    /// pinned when the run needs it; reported (`checkpoint_saved`) only when complete.
    private func consider(_ file: CheckpointFile, final: Bool) {
        let now = Date().timeIntervalSince1970
        let inPlace = CheckpointScanner.isWrittenInPlace(file.name)
        let warnKey = "\(file.name)#\(file.inode)#\(file.size)"
        // Files written in place are inspected where they are (they settled over two scans);
        // renamed-into-place files are linked first, so a rename over the name cannot swap them.
        let held: (path: String, copied: Bool)?
        if inPlace {
            held = nil
        } else {
            do { held = try sources.withLock { (s) throws(CheckpointPinError) in try s.pinner.hold(file.path, inode: file.inode, inPlace: false) } } catch {
                warnOnce(warnKey, "cannot hold checkpoint \(file.path) to check it: \(error)", now: now)
                return
            }
        }
        let inspected = held?.path ?? file.path
        let info: TorchCheckpointInfo
        do { info = try TorchCheckpointReader.inspect(path: inspected) } catch {
            if let held { sources.withLock { $0.pinner.discard(held.path) } }
            // The numbered profile's files and other formats are not zip checkpoints; a torch
            // one cut short (killed mid-write) must never be reported, pinned or resumed from.
            warnOnce(warnKey, "checkpoint \(file.path) is not a complete PyTorch checkpoint (\(error)); not reported, pinned or used for a resume", now: now)
            return
        }
        guard let step = info.step ?? file.step else {
            if let held { sources.withLock { $0.pinner.discard(held.path) } }
            warnOnce(warnKey, "checkpoint \(file.path) holds no step (top-level keys: \(info.keys.joined(separator: ", "))); not reported", now: now)
            return
        }
        let fullState = info.hasOptimizerState
        if !fullState, !final, !inPlace, FileManager.default.fileExists(atPath: (file.path as NSString).deletingLastPathComponent + "/latest_full.pth.tmp") {
            // The trainer is writing its full-state checkpoint of (most likely) the same step:
            // look again at the next scan, so that step's pin holds optimizer state.
            if let held { sources.withLock { $0.pinner.discard(held.path) } }
            sources.withLock { $0.checkpoints.forget(file.name) }
            return
        }
        let (policy, fullPinned) = sources.withLock { s in
            (s.pinner.policy, !fullState && s.pinner.pins.values.contains { $0.step == step && $0.fullState })
        }
        // A light checkpoint of a step already pinned with optimizer state adds nothing. A
        // best_model.pth is pinned (a copy) only on the run's cadences, never as a resume point
        // alone: latest_full.pth gives those by hard link, without copying gigabytes after every
        // improved validation.
        let roles = fullPinned ? [] : CheckpointPinner.roles(step: step, fullState: fullState && !inPlace, final: final, policy: policy)
        var pin: PinnedCheckpoint?
        if !roles.isEmpty {
            pin = pinIfRoom(file: file, held: held, inPlace: inPlace, step: step, fullState: fullState, roles: roles, size: info.size, now: now)
        } else if let held {
            sources.withLock { $0.pinner.discard(held.path) }
        }
        let reported = ReportedCheckpoint(path: pin?.path ?? file.path, step: step, fullState: fullState, sha256: pin?.sha256, pinned: pin != nil)
        var data: [String: JSONValue] = [
            "step": .number(Double(step)), "path": .string(reported.path), "source": .string(file.path),
            "size": .number(Double(pin?.size ?? info.size)), "kind": .string(pin != nil ? "pin" : file.kind.rawValue),
            "full_state": .bool(fullState), "pinned": .bool(pin != nil), "step_source": .string(info.step != nil ? "file" : "name"),
        ]
        if let pin {
            data["sha256"] = .string(pin.sha256)
            data["roles"] = .array(pin.roles.map { .string($0.rawValue) })
            data["copied"] = .bool(pin.copied)
        }
        if file.kind == .best { data["best"] = .bool(true) }
        let message = pin.map { "checkpoint \(file.name) at step \(step) pinned as \(($0.path as NSString).lastPathComponent) (\($0.roles.map(\.rawValue).joined(separator: ", ")))" }
            ?? "checkpoint \(file.name) at step \(step)\(fullState ? " (full state)" : " (model only)")"
        let event = EventRequest(kind: .checkpointSaved, shard: shard, message: message, data: Self.json(data), wallTime: now)
        state.withLock { s in
            s.checkpoints.reported += 1
            if let pin { s.checkpoints.pins.append(pin) }
            // A best_model.pth counts once it is pinned (a stable copy the resume can use).
            if file.kind != .best || pin != nil {
                if reported.step > (s.checkpoints.newest?.step ?? -1) || (reported.step == s.checkpoints.newest?.step && reported.pinned) {
                    s.checkpoints.newest = reported
                }
                if fullState {
                    if reported.step > (s.checkpoints.newestFull?.step ?? -1) || (reported.step == s.checkpoints.newestFull?.step && reported.pinned) {
                        s.checkpoints.newestFull = reported
                    }
                    if let asked = s.stopRequestedAt, reported.step >= asked, reported.pinned { s.checkpoints.fullSinceStopRequest += 1 }
                }
            }
            s.events.append(event)
            if s.pendingSince == nil { s.pendingSince = .now }
        }
    }

    /// Pins unless the volume is too full: a pin keeps a checkpoint's bytes alive, so one that
    /// would leave less than one more checkpoint's room (the trainer's next save) is refused and
    /// a `disk_low` event raised; less than two checkpoints' room pins but warns (`disk_low`).
    private func pinIfRoom(file: CheckpointFile, held: (path: String, copied: Bool)?, inPlace: Bool, step: Int64, fullState: Bool,
                           roles: [PinRole], size: Int64, now: Double) -> PinnedCheckpoint? {
        // Pinned already (by this attempt, or complete on disk from an earlier one): no new copy.
        if let existing = sources.withLock({ $0.pinner.adopt(step: step, fullState: fullState, roles: roles, source: file.path) }) {
            if let held { sources.withLock { $0.pinner.discard(held.path) } }
            return existing
        }
        let free = sources.withLock { $0.pinner.freeBytes() }
        if let free, free < 2 * size {
            let refuse = free < size
            let dueWarning = sources.withLock { s -> Bool in
                if !refuse, let last = s.lastDiskWarning, ContinuousClock.now - last < .seconds(600) { return false }
                s.lastDiskWarning = .now
                return true
            }
            if dueWarning {
                let gb = { (b: Int64) in String(format: "%.1f GB", Double(b) / 1e9) }
                let text = refuse
                    ? "disk low: \(gb(free)) free on the checkpoint volume of \(file.path), less than the \(gb(size)) checkpoint at step \(step); not pinned (\(roles.map(\.rawValue).joined(separator: ", "))). Free space (or lower keep:) before the trainer's next save fails"
                    : "disk low: \(gb(free)) free on the checkpoint volume of \(file.path); pinning the \(gb(size)) checkpoint at step \(step) leaves room for less than one more. Free space or lower keep:"
                record(EventRequest(kind: .diskLow, shard: shard, message: text,
                                    data: Self.json(["free_bytes": .number(Double(free)), "checkpoint_bytes": .number(Double(size)), "path": .string(file.path)]),
                                    wallTime: now), now: false)
            }
            if refuse {
                if let held { sources.withLock { $0.pinner.discard(held.path) } }
                return nil
            }
        }
        do {
            return try sources.withLock { (s) throws(CheckpointPinError) -> PinnedCheckpoint in
                let h: (path: String, copied: Bool)
                if let held { h = held } else { h = try s.pinner.hold(file.path, inode: file.inode, inPlace: inPlace) }
                if inPlace {
                    // The copy must be the file that was checked: unchanged since, and complete.
                    guard TorchCheckpointReader.isComplete(path: h.path) else {
                        s.pinner.discard(h.path)
                        throw CheckpointPinError(code: .io, path: file.path, message: "it changed while it was copied (the trainer is rewriting it); the next scan tries again")
                    }
                }
                return try s.pinner.keep(h, source: file.path, step: step, fullState: fullState, roles: roles, size: size)
            }
        } catch {
            record(EventRequest(kind: error.code == .diskFull ? .diskLow : .warning, shard: shard, message: "\(error)", wallTime: now), now: false)
            return nil
        }
    }

    private func warnOnce(_ key: String, _ message: String, now: Double) {
        let first = sources.withLock { $0.warned.insert(key).inserted }
        guard first else { return }
        record(EventRequest(kind: .warning, shard: shard, message: message, wallTime: now), now: false)
    }

    private static func json(_ o: [String: JSONValue]) -> [UInt8] { (try? JSONCoding.encode(o)) ?? [] }

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

    /// `{"stream": "stdout"}` / `{"stream": "stderr"}`, encoded once.
    private static let streamData: [CommandOutputLine.Stream: [UInt8]] = [
        .stdout: Array(#"{"stream":"stdout"}"#.utf8), .stderr: Array(#"{"stream":"stderr"}"#.utf8),
    ]
}
