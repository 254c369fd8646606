import Foundation
import Logging
import Shared
import WandB

/// Delivers every run's metrics, system metrics, console lines and checkpoints to W&B exactly
/// once, from the store.
///
/// The store is the outbox: points are stored once (spool dedup), and each run keeps a durable
/// cursor (`wandb_state`). A pass reads what is after the cursor, builds history rows
/// (``HistoryBuilder``), hands everything to the run's sink, and only once the sink has it
/// durably records the new cursor:
/// - **offline**: the `.wandb` file is fsync'd and its size recorded with the cursor; after a
///   crash the file is cut back to that size and the same records are written again.
/// - **online**: one `file_stream` request (line offsets from the durable counters) is in flight
///   per run; after a crash the same lines are sent at the same offsets, which the server
///   overwrites. A rejected key (401/403) is reported once, loudly, and the data stays queued.
public actor WandbOutbox {
    /// Its store reads and writes block (SQLite with fsync, reads of many batches): they run on
    /// a thread of its own, never on a thread of the cooperative pool.
    private let executor = DedicatedThreadExecutor(name: "wandb-outbox")
    public nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// The one W&B mode enum (`WANDB_MODE`): online, offline or disabled.
    public typealias Mode = WandbSettings.Mode

    let store: Store
    let mode: Mode
    /// `WANDB_DIR`: offline runs go to `<root>/wandb/offline-run-…`.
    let root: String
    let logger: Logger
    let host: String
    let batchPoints: Int
    /// Checkpoints become artifact versions every this many steps (and whenever one is the best).
    let artifactEvery: Int64
    /// Online: least time between two `file_stream` requests of a run (W&B's cadence is 15 s).
    let streamInterval: Duration
    let api: WandbAPI?
    private var writers: [String: OfflineRunWriter] = [:]
    private var lastStreamed: [String: ContinuousClock.Instant] = [:]
    private var failing: Set<String> = []
    private var keyRejected = false
    /// After W&B rejects the key, delivery pauses until then (the data waits in the store).
    private var pausedUntil: ContinuousClock.Instant?
    let unauthorizedPause: Duration
    /// New data or a finished run: deliver now rather than at the next interval.
    private nonisolated let wakeups: AsyncStream<Void>.Continuation
    private let wakeupStream: AsyncStream<Void>

    public init(store: Store, mode: Mode, root: String, logger: Logger, api: WandbAPI? = nil, batchPoints: Int = 50_000,
                artifactEvery: Int64 = 1_000, streamIntervalMs: Int = 15_000, unauthorizedPause: Duration = .seconds(60)) {
        self.unauthorizedPause = unauthorizedPause
        self.store = store
        self.mode = api == nil && mode == .online ? .offline : mode
        self.root = root
        self.logger = logger
        self.api = api
        self.batchPoints = batchPoints
        self.artifactEvery = artifactEvery
        streamInterval = .milliseconds(streamIntervalMs)
        host = ProcessInfo.processInfo.hostName
        (wakeupStream, wakeups) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Asks for a delivery pass as soon as the current one ends (cheap; callable from anywhere).
    public nonisolated func wake() { wakeups.yield() }

    /// Delivers until cancelled: a pass whenever ``wake()`` is called (new data stored, a run
    /// settled) and at least every `intervalMs` (retries, online cadence, heartbeats).
    public func run(intervalMs: Int = 500) async {
        guard mode != .disabled else { return }
        let ticker = Task { [wakeups] in
            while !Task.isCancelled {
                try? await Task.sleep(for: .milliseconds(intervalMs))
                wakeups.yield()
            }
        }
        await deliverPending()
        for await _ in wakeupStream {
            if Task.isCancelled { break }
            await deliverPending()
        }
        ticker.cancel()
        for w in writers.values { w.close() }
        writers = [:]
    }

    /// One pass over every run with undelivered data.
    public func deliverPending() async {
        guard mode != .disabled else { return }
        if let until = pausedUntil {
            guard ContinuousClock.now >= until else { return }
            pausedUntil = nil
        }
        let runs: [WandbPendingRun]
        do {
            runs = try store.wandbPendingRuns(host: host, defaultEntity: api?.settings.entity)
        } catch {
            logger.error("W&B outbox: cannot read pending runs: \(error)")
            return
        }
        for run in runs {
            do {
                while try await deliver(run) {}
                if failing.remove(run.info.runId) != nil { logger.notice("W&B: run \(run.info.runId) delivers again") }
                if keyRejected {
                    keyRejected = false
                    logger.notice("W&B accepts the API key again; queued data is being delivered")
                }
            } catch let e as WandbAPIError {
                if case .unauthorized = e {
                    if !keyRejected {
                        keyRejected = true
                        // WandbAPI has already said so loudly (once); say what happens to the data.
                        logger.warning("W&B delivery paused: nothing is lost, every run's data stays queued in the coordinator and delivery is retried every \(unauthorizedPause) (fix WANDB_API_KEY and restart the coordinator)")
                    }
                    pausedUntil = .now + unauthorizedPause
                    return
                } else if failing.insert(run.info.runId).inserted {
                    logger.error("W&B: delivery of run \(run.info.runId) failed: \(e); the data stays queued and is retried")
                }
            } catch {
                if failing.insert(run.info.runId).inserted {
                    logger.error("W&B: delivery of run \(run.info.runId) failed: \(error); the data stays queued and is retried")
                }
                writers[run.info.runId]?.close()
                writers[run.info.runId] = nil
            }
        }
    }

    /// What one pass delivers for a run.
    struct Batch {
        var rows: [WandbHistoryRow] = []
        var stats: [WandbStatsSample] = []
        var artifacts: [WandbArtifactUpload] = []
        /// Media files the rows refer to (uploaded / copied before the rows are written).
        var media: [WandbRunFile] = []
        var output: [(line: String, stderr: Bool, time: Date)] = []
        var cursor: Int64?
        var lastStep: Int64?
        var eventCursor: Int64?
        /// The run is over and everything of it is in this batch.
        var final = false
        var more = false
        var isEmpty: Bool { cursor == nil && eventCursor == nil && !final }
    }

    /// Delivers one batch; returns true when more may be pending.
    private func deliver(_ pending: WandbPendingRun) async throws -> Bool {
        let info = pending.info
        var state = try store.wandbState(runId: info.runId) ?? WandbDeliveryState(
            runId: info.runId, mode: mode.rawValue, cursor: 0, lastStep: nil, historyLines: 0, summary: [:],
            offlineDirectory: nil, offlineSize: 0, offlineRecords: 0, finished: false)
        if state.finished { return false }
        if mode == .online, let last = lastStreamed[info.runId], ContinuousClock.now - last < streamInterval, pending.exitCode == nil {
            return false
        }
        let batch = try makeBatch(pending, state)
        if batch.isEmpty {
            if mode == .online, let api, let handle = handle(state), let last = lastStreamed[info.runId],
               ContinuousClock.now - last > .seconds(30) {
                _ = try await api.heartbeat(handle)
                lastStreamed[info.runId] = .now
            }
            return false
        }
        for row in batch.rows {
            for (k, v) in row.values { state.summary[k] = v.jsonText }
            state.summary["_step"] = String(row.step)
            state.summary["_runtime"] = String(row.runtime)
            state.summary["_timestamp"] = String(row.timestamp)
            updateBest(row, &state)
        }
        let runtime = (pending.finishedAt ?? Date()).timeIntervalSince(info.startTime)
        switch mode {
        case .offline:
            try await deliverOffline(info, batch, &state, exitCode: pending.exitCode ?? 0, runtime: runtime)
        case .online:
            try await deliverOnline(info, batch, &state, exitCode: pending.exitCode ?? 0)
        case .disabled:
            return false
        }
        if let c = batch.cursor { state.cursor = c }
        state.lastStep = batch.lastStep
        if let e = batch.eventCursor { state.eventCursor = e }
        state.historyLines += batch.rows.count
        state.finished = batch.final
        try store.saveWandbState(state)
        if batch.final {
            logger.info("W&B: run \(info.runId) complete (\(mode.rawValue), \(state.historyLines) history rows)\(mode == .offline ? " in \(state.offlineDirectory ?? "?"); upload later with `wandb sync`" : "")")
        }
        return batch.more
    }

    /// Reads what is after the run's cursors and turns it into rows, stats, console lines and
    /// artifacts. Pure with respect to the store: the same state gives the same batch.
    private func makeBatch(_ pending: WandbPendingRun, _ state: WandbDeliveryState) throws -> Batch {
        let info = pending.info
        let start = info.startTime.timeIntervalSince1970
        let points = try store.pointsAfter(runId: info.runId, cursor: state.cursor, limit: batchPoints)
        let over = pending.exitCode != nil && points.count < batchPoints
        // System metrics (spooled by the worker as `system/…`) become stats; the rest history.
        let system = points.filter { $0.key.hasPrefix(MetricPoint.systemPrefix) }
        let history = points.filter { !$0.key.hasPrefix(MetricPoint.systemPrefix) }
        var out = HistoryBuilder.build(points: history, lastStep: state.lastStep, final: over, startTime: start)
        if over, let lastSeq = points.last?.seq { out.cursor = max(out.cursor ?? 0, lastSeq) }
        var batch = Batch(rows: out.rows, cursor: out.cursor, lastStep: out.lastStep)
        // Stats only for points the new cursor covers, so a replay never repeats them.
        let covered = out.cursor ?? state.cursor
        batch.stats = Self.statsSamples(system.filter { $0.seq <= covered }, startTime: start)
        let events = try store.runEvents(runId: info.runId, after: state.eventCursor,
                                         kinds: [EventRequest.Kind.checkpointSaved.rawValue, EventRequest.Kind.log.rawValue,
                                                 EventRequest.Kind.media.rawValue])
        var eventCursor: Int64?
        for e in events {
            if e.kind == EventRequest.Kind.log.rawValue {
                batch.output.append((e.message, e.data["stream"]?.stringValue == "stderr", Date(timeIntervalSince1970: e.wallTime)))
            } else if e.kind == EventRequest.Kind.media.rawValue {
                // A media value joins the first row of this batch at or after its step (late:
                // with its step recorded, like a late scalar). Its step's row not emitted yet:
                // it waits, and so do the events after it (the event cursor stops before it).
                guard placeMedia(info, e, &batch, final: over) else { break }
            } else if let artifact = checkpointArtifact(info, e) {
                batch.artifacts.append(artifact)
            }
            eventCursor = e.id
        }
        batch.eventCursor = eventCursor
        let eventsDone = eventCursor == events.last?.id
        batch.final = over
        // Events beyond this pass's limit, or a media sample still waiting: not over yet.
        let eventsPending = events.count >= 1_000 || !eventsDone
        batch.more = points.count >= batchPoints || (events.count >= 1_000 && eventsDone)
        if over && eventsPending {
            batch.final = false
            batch.more = eventsDone
        }
        return batch
    }

    /// Puts a media event's value into the batch's rows; false when it must wait for a later
    /// row. A sample whose file is gone is reported and skipped (true: nothing to wait for).
    private func placeMedia(_ info: WandbRunInfo, _ e: StoredRunEvent, _ batch: inout Batch, final: Bool) -> Bool {
        let isTable = e.data["type"]?.stringValue == "table"
        guard let key = e.data["key"]?.stringValue, let step = e.data["step"]?.doubleValue.map({ Int64($0) }),
              let path = isTable ? "" : e.data["path"]?.stringValue else {
            logger.warning("W&B: a media event of run \(info.runId) lacks key, step or path; skipped (\(e.message))")
            return true
        }
        var index = batch.rows.firstIndex { $0.step >= step }
        if index == nil, final {
            // The run is over and no later row comes: one more row after the last step.
            let next = (batch.rows.last?.step ?? batch.lastStep ?? step - 1) + 1
            let t = e.wallTime
            batch.rows.append(WandbHistoryRow(step: max(next, (batch.lastStep ?? -1) + 1), timestamp: t,
                                              runtime: max(0, t - info.startTime.timeIntervalSince1970), values: []))
            batch.lastStep = batch.rows.last!.step
            index = batch.rows.count - 1
        }
        guard let i = index else { return false }
        let sample: (value: WandbValue, file: WandbRunFile)
        if isTable {
            guard case .array(let cols)? = e.data["columns"], case .array(let rows)? = e.data["rows"] else {
                logger.warning("W&B: table \(key) of run \(info.runId) lacks columns or rows; skipped")
                return true
            }
            sample = WandbMedia.table(key: key, step: step, columns: cols.compactMap(\.stringValue),
                                      rows: rows.map { if case .array(let cells) = $0 { cells } else { [] } })
        } else {
            do {
                sample = try WandbMedia.audio(key: key, step: step, localPath: path, caption: e.data["caption"]?.stringValue)
            } catch {
                logger.warning("W&B: media \(key) at step \(step) of run \(info.runId) is not readable from the coordinator (\(error)); skipped (media must be on storage the coordinator can read)")
                return true
            }
        }
        batch.rows[i].values.append((key, sample.value))
        if batch.rows[i].step != step { batch.rows[i].values.append((HistoryBuilder.stepKey(for: key), .integer(step))) }
        batch.media.append(sample.file)
        return true
    }

    /// A checkpoint event as a `model` artifact version, when it falls on the cadence or is the best.
    private func checkpointArtifact(_ info: WandbRunInfo, _ e: StoredRunEvent) -> WandbArtifactUpload? {
        guard let step = e.data["step"]?.doubleValue.map({ Int64($0) }), let path = e.data["path"]?.stringValue else { return nil }
        let best = e.data["best"] == .bool(true)
        if let pinned = e.data["pinned"]?.boolValue {
            // The command runner's checkpoints: only pins are artifacts (the trainer overwrites
            // its own files), and not a pin kept only as a resume point.
            let roles = e.data["roles"]?.arrayValue?.compactMap(\.stringValue) ?? []
            guard pinned, roles.contains(where: { $0 != "resume" }) else { return nil }
        } else {
            guard best || step % artifactEvery == 0 else { return nil }
        }
        guard FileManager.default.fileExists(atPath: path) else {
            logger.warning("W&B: checkpoint \(path) of run \(info.runId) is not readable from the coordinator (checkpoints must be on storage the coordinator can read); not logged as an artifact")
            return nil
        }
        var metadata = e.data
        metadata["path"] = nil
        // Retention moving `best` to an older pin re-logs that pin (same files: the same version)
        // with `best` alone, so `latest` stays on the newest.
        let bestOnly = e.data["alias"] == .string("best")
        return WandbArtifactUpload(name: "model-\(info.runId)", type: "model",
                                   aliases: bestOnly ? ["best"] : best ? ["latest", "best"] : ["latest"],
                                   metadata: metadata, files: [WandbRunFile(runPath: (path as NSString).lastPathComponent, localPath: path)],
                                   historyStep: step, addsLatestAlias: !bestOnly)
    }

    // MARK: offline

    private func deliverOffline(_ info: WandbRunInfo, _ batch: Batch, _ state: inout WandbDeliveryState, exitCode: Int32, runtime: Double) async throws {
        let writer = try writerFor(info, &state)
        for f in batch.media { try writer.addMedia(f) }
        try writer.log(batch.rows)
        if !batch.rows.isEmpty { try writer.summary(bestValues(state)) }
        for s in batch.stats { try writer.stats(s) }
        for o in batch.output { try writer.output(lines: [o.line], stderr: o.stderr, timestamp: o.time) }
        for a in batch.artifacts {
            // A checkpoint is gigabytes: it is hashed off the cooperative pool while the actor
            // waits. (Passes do not overlap: the run loop awaits each before the next, so no other
            // delivery touches this writer in between.)
            let staged = try writer.stageArtifact(a)
            try writer.writeArtifact(staged, digests: try await FileHasher.md5(paths: staged.files.map(\.stagedPath)))
        }
        let durable = batch.final ? try writer.finish(exitCode: exitCode, runtime: runtime) : try writer.sync()
        state.offlineSize = durable.size
        state.offlineRecords = durable.records
        if batch.final {
            writer.close()
            writers[info.runId] = nil
        }
    }

    private func writerFor(_ info: WandbRunInfo, _ state: inout WandbDeliveryState) throws -> OfflineRunWriter {
        if let w = writers[info.runId] { return w }
        let w: OfflineRunWriter
        if let dir = state.offlineDirectory {
            // Continue after a restart: cut the file back to what the database knows is durable.
            w = try OfflineRunWriter.reopen(directory: dir, validSize: state.offlineSize)
        } else {
            let dir = OfflineRunWriter.directory(root: root, run: info)
            // A crash between creating the directory and recording it leaves only the header and
            // run records (rows are written after the directory is recorded): continue after them.
            w = FileManager.default.fileExists(atPath: dir)
                ? try OfflineRunWriter.reopen(directory: dir, validSize: nil)
                : try OfflineRunWriter(root: root, run: info)
            let durable = try w.sync()
            state.offlineDirectory = w.directory
            state.offlineSize = durable.size
            state.offlineRecords = durable.records
            try store.saveWandbState(state)
            logger.info("W&B: run \(info.runId) (\(info.displayName)) writing offline to \(w.directory)")
        }
        writers[info.runId] = w
        return w
    }

    // MARK: online

    private func handle(_ state: WandbDeliveryState) -> WandbRunHandle? {
        guard let storage = state.storageId, let entity = state.entity, let project = state.project else { return nil }
        return WandbRunHandle(runId: state.runId, entity: entity, project: project, storageId: storage, historyLineCount: state.historyLines)
    }

    private func deliverOnline(_ info: WandbRunInfo, _ batch: Batch, _ state: inout WandbDeliveryState, exitCode: Int32) async throws {
        guard let api else { return }
        var h = handle(state)
        if h == nil {
            let created = try await api.upsertRun(info)
            state.storageId = created.storageId
            state.entity = created.entity
            state.project = created.project
            try store.saveWandbState(state)
            logger.info("W&B: run \(info.runId) (\(info.displayName)) streaming to \(created.entity)/\(created.project)")
            h = created
        }
        guard let handle = h else { return }
        var files: [String: FileStreamChunk] = [:]
        if !batch.rows.isEmpty {
            files[FileStreamRequest.historyFile] = FileStreamChunk(offset: state.historyLines, lines: batch.rows.map(FileStreamLines.history))
            files[FileStreamRequest.summaryFile] = FileStreamChunk(offset: 0, lines: [Self.summaryLine(state.summary)])
        }
        if !batch.stats.isEmpty {
            files[FileStreamRequest.eventsFile] = FileStreamChunk(offset: state.eventsLines, lines: batch.stats.map(FileStreamLines.events))
        }
        if !batch.output.isEmpty {
            files[FileStreamRequest.outputFile] = FileStreamChunk(offset: state.outputLines, lines: batch.output.map {
                FileStreamLines.output($0.line, stream: $0.stderr ? .stderr : .stdout, at: $0.time)
            })
        }
        if !batch.media.isEmpty { _ = try await api.uploadRunFiles(handle, batch.media) }
        for a in batch.artifacts { _ = try await api.logArtifact(handle, a) }
        let request = batch.final
            ? FileStreamRequest.final(summaryLine: Self.summaryLine(state.summary), uploaded: [], exitCode: exitCode,
                                      otherFiles: files.filter { $0.key != FileStreamRequest.summaryFile })
            : FileStreamRequest(files: files)
        if !request.files.isEmpty || batch.final {
            _ = try await api.fileStream(handle, request)
            lastStreamed[info.runId] = .now
        }
        state.eventsLines += batch.stats.count
        state.outputLines += batch.output.count
    }

    /// The whole summary as one JSON object line (keys sorted).
    static func summaryLine(_ summary: [String: String]) -> String {
        "{" + summary.sorted { $0.key < $1.key }.map { "\(WandbValue.quote($0.key)):\($0.value)" }.joined(separator: ",") + "}"
    }

    // MARK: shared helpers

    /// Groups system points by sample time into stats records (keys without the prefix).
    static func statsSamples(_ points: [HistoryBuilder.Point], startTime: Double) -> [WandbStatsSample] {
        var out: [WandbStatsSample] = []
        for p in points {
            let key = String(p.key.dropFirst(MetricPoint.systemPrefix.count))
            if let last = out.last, last.timestamp == p.wallTime {
                out[out.count - 1].values.append((key, p.value))
            } else {
                out.append(WandbStatsSample(timestamp: p.wallTime, runtime: max(0, p.wallTime - startTime), values: [(key, p.value)]))
            }
        }
        return out
    }

    /// Tracks `val/best_text_loss` with `val/best_step`, and the best (lowest) `eval/cer` of the
    /// evaluations whose ASR can read the test set (`eval/asr_unreadable` not 1). An unreadable
    /// set puts the words in `eval/note`.
    private func updateBest(_ row: WandbHistoryRow, _ state: inout WandbDeliveryState) {
        let unreadable = row.values.contains { $0.key == "eval/asr_unreadable" && ($0.value == .number(1) || $0.value == .integer(1)) }
        if row.values.contains(where: { $0.key == "eval/asr_unreadable" }) {
            state.summary["eval/note"] = unreadable ? WandbValue.text(EvalAggregator.unreadableNote).jsonText : "null"
        }
        for (k, v) in row.values {
            if unreadable && k == "eval/cer" { continue }
            guard case .number(let x) = v, x.isFinite else { continue }
            let bestKey: String
            switch k {
            case "val/text_loss": bestKey = "val/best_text_loss"
            case "eval/cer": bestKey = "eval/best_cer"
            default: continue
            }
            if let old = state.summary[bestKey].flatMap(Double.init), old <= x { continue }
            state.summary[bestKey] = WandbValue.number(x).jsonText
            state.summary[k == "val/text_loss" ? "val/best_step" : "eval/best_step"] = String(row.step)
        }
    }

    private func bestValues(_ state: WandbDeliveryState) -> [String: WandbValue] {
        var out: [String: WandbValue] = [:]
        for k in ["val/best_text_loss", "val/best_step", "eval/best_cer", "eval/best_step", "eval/note"] {
            if let raw = state.summary[k] { out[k] = .json(raw) }
        }
        return out
    }
}
