import Foundation
import Logging
import Shared

/// Delivers every run's metrics to W&B exactly once, from the store.
///
/// The store is the outbox: points are stored once (spool dedup), and each run keeps a durable
/// cursor (`wandb_state`). A pass reads the points after the cursor, builds history rows
/// (``HistoryBuilder``), hands them to the sink, makes the sink durable, and only then records the
/// new cursor. Offline, the `.wandb` file's durable size is recorded with the cursor; after a
/// crash the file is cut back to that size and the same rows are written again, so each row is
/// in the file exactly once.
public actor WandbOutbox {
    public enum Mode: String, Sendable { case offline, disabled }

    let store: Store
    let mode: Mode
    /// `WANDB_DIR`: runs go to `<root>/wandb/offline-run-…`.
    let root: String
    let logger: Logger
    let host: String
    let batchPoints: Int
    /// Checkpoints become artifact versions every this many steps (and whenever one is the best).
    let artifactEvery: Int64
    private var writers: [String: OfflineRunWriter] = [:]
    private var failing: Set<String> = []

    public init(store: Store, mode: Mode, root: String, logger: Logger, batchPoints: Int = 50_000, artifactEvery: Int64 = 1_000) {
        self.artifactEvery = artifactEvery
        self.store = store
        self.mode = mode
        self.root = root
        self.logger = logger
        self.batchPoints = batchPoints
        host = ProcessInfo.processInfo.hostName
    }

    /// Delivers until cancelled, a pass every `intervalMs`.
    public func run(intervalMs: Int = 500) async {
        guard mode != .disabled else { return }
        while !Task.isCancelled {
            await deliverPending()
            try? await Task.sleep(for: .milliseconds(intervalMs))
        }
        for w in writers.values { w.close() }
        writers = [:]
    }

    /// One pass over every run with undelivered data.
    public func deliverPending() async {
        guard mode != .disabled else { return }
        let runs: [WandbPendingRun]
        do {
            runs = try store.wandbPendingRuns(host: host)
        } catch {
            logger.error("W&B outbox: cannot read pending runs: \(error)")
            return
        }
        for run in runs {
            do {
                while try deliver(run) {}
                if failing.remove(run.info.runId) != nil { logger.notice("W&B: run \(run.info.runId) delivers again") }
            } catch {
                if failing.insert(run.info.runId).inserted {
                    logger.error("W&B: delivery of run \(run.info.runId) failed: \(error); the data stays queued and is retried")
                }
                writers[run.info.runId]?.close()
                writers[run.info.runId] = nil
            }
        }
    }

    /// Delivers one batch; returns true when more may be pending.
    private func deliver(_ pending: WandbPendingRun) throws -> Bool {
        let info = pending.info
        var state = try store.wandbState(runId: info.runId) ?? WandbDeliveryState(
            runId: info.runId, mode: mode.rawValue, cursor: 0, lastStep: nil, historyLines: 0, summary: [:],
            offlineDirectory: nil, offlineSize: 0, offlineRecords: 0, finished: false)
        if state.finished { return false }
        let writer = try writerFor(info, &state)
        let points = try store.pointsAfter(runId: info.runId, cursor: state.cursor, limit: batchPoints)
        let over = pending.exitCode != nil && points.count < batchPoints
        // System metrics (spooled by the worker as `system/…`) become stats records; the rest history.
        let system = points.filter { $0.key.hasPrefix(Self.systemPrefix) }
        let history = points.filter { !$0.key.hasPrefix(Self.systemPrefix) }
        var out = HistoryBuilder.build(points: history, lastStep: state.lastStep, final: over, startTime: info.startTime.timeIntervalSince1970)
        if over, let lastSeq = points.last?.seq { out.cursor = max(out.cursor ?? 0, lastSeq) }
        // Stats are written only for points the new cursor covers, so a replay never repeats them.
        let covered = out.cursor ?? state.cursor
        for sample in Self.statsSamples(system.filter { $0.seq <= covered }, startTime: info.startTime.timeIntervalSince1970) {
            try writer.stats(sample)
        }
        for row in out.rows {
            try writer.log(row)
            for (k, v) in row.values { state.summary[k] = v.jsonText }
            state.summary["_step"] = String(row.step)
            try updateBest(row, &state)
        }
        if !out.rows.isEmpty {
            try writer.summary(bestValues(state))
        }
        let artifacts = try deliverEvents(info, writer, &state)
        state.historyLines += out.rows.count
        if let c = out.cursor { state.cursor = c }
        state.lastStep = out.lastStep
        if over && (out.cursor != nil || points.isEmpty) {
            let runtime = (pending.finishedAt ?? Date()).timeIntervalSince(info.startTime)
            let durable = try writer.finish(exitCode: pending.exitCode ?? 0, runtime: runtime)
            state.offlineSize = durable.size
            state.offlineRecords = durable.records
            state.finished = true
            try store.saveWandbState(state)
            writer.close()
            writers[info.runId] = nil
            logger.info("W&B: run \(info.runId) complete offline in \(state.offlineDirectory ?? "?") (\(state.historyLines) history rows); upload later with `wandb sync`")
            return false
        }
        guard out.cursor != nil || artifacts else { return false }
        let durable = try writer.sync()
        state.offlineSize = durable.size
        state.offlineRecords = durable.records
        try store.saveWandbState(state)
        return points.count >= batchPoints
    }

    private func writerFor(_ info: WandbRunInfo, _ state: inout WandbDeliveryState) throws -> OfflineRunWriter {
        if let w = writers[info.runId] { return w }
        let w: OfflineRunWriter
        if let dir = state.offlineDirectory {
            // Continue after a restart: cut the file back to what the database knows is durable.
            w = try OfflineRunWriter.reopen(directory: dir, validSize: state.offlineSize)
        } else if FileManager.default.fileExists(atPath: OfflineRunWriter.directory(root: root, run: info)) {
            // A crash between creating the run's directory and recording it: only the header and
            // run records can be in the file (rows are written after the directory is recorded).
            w = try OfflineRunWriter.reopen(directory: OfflineRunWriter.directory(root: root, run: info), validSize: nil)
            let durable = try w.sync()
            state.offlineDirectory = w.directory
            state.offlineSize = durable.size
            state.offlineRecords = durable.records
            try store.saveWandbState(state)
        } else {
            w = try OfflineRunWriter(root: root, run: info)
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

    static let systemPrefix = "system/"

    /// Delivers the run's events in order: trainer console lines (`log` events: the message is
    /// the line; data `{"stream": "stderr"}` for stderr) go to `output.log`; checkpoints become `model` artifacts (aliases
    /// `latest`, and `best` for the best one) every `artifactEvery` steps. Returns whether any
    /// event was taken.
    private func deliverEvents(_ info: WandbRunInfo, _ writer: OfflineRunWriter, _ state: inout WandbDeliveryState) throws -> Bool {
        let events = try store.runEvents(runId: info.runId, after: state.eventCursor,
                                         kinds: [EventRequest.Kind.checkpointSaved.rawValue, EventRequest.Kind.log.rawValue])
        guard let last = events.last else { return false }
        for e in events {
            if e.kind == EventRequest.Kind.log.rawValue {
                try writer.output(lines: [e.message], stderr: e.data["stream"]?.stringValue == "stderr",
                                  timestamp: Date(timeIntervalSince1970: e.wallTime))
                continue
            }
            guard let step = e.data["step"]?.doubleValue.map({ Int64($0) }), let path = e.data["path"]?.stringValue else { continue }
            let best = e.data["best"] == .bool(true)
            guard best || step % artifactEvery == 0 else { continue }
            guard FileManager.default.fileExists(atPath: path) else {
                logger.warning("W&B: checkpoint \(path) of run \(info.runId) is not readable from the coordinator (checkpoints must be on storage the coordinator can read); not logged as an artifact")
                continue
            }
            var metadata = e.data
            metadata["path"] = nil
            try writer.artifact(WandbArtifactUpload(
                name: "model-\(info.runId)", type: "model", aliases: best ? ["latest", "best"] : ["latest"], metadata: metadata,
                files: [WandbRunFile(runPath: (path as NSString).lastPathComponent, localPath: path)], historyStep: step))
        }
        state.eventCursor = last.id
        return true
    }

    /// Groups system points by sample time into stats records (keys without the prefix).
    static func statsSamples(_ points: [HistoryBuilder.Point], startTime: Double) -> [WandbStatsSample] {
        var out: [WandbStatsSample] = []
        for p in points {
            let key = String(p.key.dropFirst(systemPrefix.count))
            if let last = out.last, last.timestamp == p.wallTime {
                out[out.count - 1].values.append((key, p.value))
            } else {
                out.append(WandbStatsSample(timestamp: p.wallTime, runtime: max(0, p.wallTime - startTime), values: [(key, p.value)]))
            }
        }
        return out
    }

    /// Tracks `val/best_text_loss` with `val/best_step`, and the best (lowest) `eval/cer`.
    private func updateBest(_ row: WandbHistoryRow, _ state: inout WandbDeliveryState) throws {
        for (k, v) in row.values {
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
        for k in ["val/best_text_loss", "val/best_step", "eval/best_cer", "eval/best_step"] {
            if let raw = state.summary[k] { out[k] = .json(raw) }
        }
        return out
    }
}
