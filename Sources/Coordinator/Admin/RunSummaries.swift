import ClusterAdmin
import Foundation
import Shared

/// `runs` as users see it: each stored run with its latest losses, its step, its training speed
/// over the last 200 stored steps and the time left to `max_steps` at that speed. Presentation:
/// the store keeps the rows and the points (``Store/runRecords(limit:)``,
/// ``Store/latestPoint(runId:key:)``, ``Store/metricSeries(runId:key:fromStep:toStep:)``).
public enum RunSummaries {
    /// Losses shown, when logged.
    static let losses = ["train/text_loss", "train/mel_loss", "train/mel_top1", "val/text_loss", "val/mel_loss", "eval/cer"]

    /// Every run, newest first (at most `limit`).
    public static func list(_ store: Store, limit: Int = 200) throws -> [RunSummary] {
        try store.runRecords(limit: limit).map { try summary($0, store: store) }
    }

    static func summary(_ run: StoredRun, store: Store) throws -> RunSummary {
        var losses: [String: Double] = [:]
        var step: Int64?
        var rate: Double?
        for key in Self.losses {
            guard let last = try store.latestPoint(runId: run.id, key: key) else { continue }
            losses[key] = last.value
            guard key.hasPrefix("train/") else { continue }
            step = max(step ?? last.step, last.step)
            if rate == nil {
                let recent = try store.metricSeries(runId: run.id, key: key, fromStep: max(0, last.step - 200), toStep: last.step)
                if let first = recent.first, last.step > first.step, last.wallTime > first.wallTime {
                    rate = Double(last.step - first.step) / (last.wallTime - first.wallTime)
                }
            }
        }
        var eta: Double?
        if run.state == .running, let rate, rate > 0, let maxSteps = run.maxSteps {
            eta = Double(max(0, maxSteps - (step ?? 0))) / rate
        }
        return RunSummary(
            id: run.id, name: run.name, jobId: run.jobId, project: run.project, group: run.group, state: RunSummary.State(rawValue: run.stateName),
            worker: run.worker, preset: run.preset, batchSize: run.batchSize, gradAccum: run.gradAccum, downshifts: run.downshifts,
            step: step, maxSteps: run.maxSteps, losses: losses, stepsPerSecond: rate, etaSeconds: eta,
            checkpoint: run.checkpoint, checkpointStep: run.checkpointStep,
            waitReason: run.state.isFinished ? nil : run.waitReason, createdAt: run.createdAt, finishedAt: run.finishedAt,
            worldSize: run.worldSize > 1 ? run.worldSize : nil)
    }
}

/// `logs` as users see it: the trainer's lines (stderr marked by the CLI, a gang's other ranks'
/// lines prefixed `[rank R]`) and the cluster's notes as `[kind] message`. Presentation over
/// ``Store/runLogEvents(run:after:limit:tail:)``.
public enum RunLogFormatter {
    public static func logs(_ store: Store, _ request: LogsRequest) throws -> RunLogs {
        let (state, events) = try store.runLogEvents(run: request.run, after: request.after, limit: request.limit, tail: request.tail)
        return RunLogs(lines: events.map(line), runState: RunSummary.State(rawValue: state))
    }

    static func line(_ e: StoredLogEvent) -> RunLogs.Line {
        guard e.kind == "log" else { return RunLogs.Line(id: e.id, wallTime: e.wallTime, stream: "cluster", text: "[\(e.kind)] \(e.message)") }
        let fields = jsonDecode([String: JSONValue].self, e.data)
        var text = e.message
        // A gang's ranks other than 0 (rank 0's lines are the run's own).
        if let rank = fields?["rank"]?.doubleValue, rank > 0 { text = "[rank \(Int(rank))] \(text)" }
        return RunLogs.Line(id: e.id, wallTime: e.wallTime, stream: fields?["stream"]?.stringValue ?? "stdout", text: text)
    }
}
