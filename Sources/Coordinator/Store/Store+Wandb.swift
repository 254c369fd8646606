import Foundation
import GRDB
import Shared
import WandB

/// A run's W&B delivery state (table `wandb_state`).
public struct WandbDeliveryState: Sendable, Equatable {
    public var runId: String
    public var mode: String
    public var cursor: Int64
    public var lastStep: Int64?
    public var historyLines: Int
    /// Raw JSON text per summary key.
    public var summary: [String: String]
    public var offlineDirectory: String?
    public var offlineSize: Int
    public var offlineRecords: Int
    public var finished: Bool
    /// Run events with `id <= eventCursor` are delivered (checkpoint artifacts).
    public var eventCursor: Int64 = 0
    /// Online: lines already sent of `wandb-events.jsonl` and `output.log`.
    public var eventsLines = 0
    public var outputLines = 0
    /// Online: the server's bucket id, entity and project, once the run is upserted.
    public var storageId: String?
    public var entity: String?
    public var project: String?
}

/// A stored run event (for W&B: checkpoints).
public struct StoredRunEvent: Sendable, Equatable {
    public var id: Int64
    public var kind: String
    public var message: String
    public var data: [String: JSONValue]
    public var wallTime: Double
}

/// A run that W&B delivery should look at.
public struct WandbPendingRun: Sendable {
    public var info: WandbRunInfo
    public var state: WandbDeliveryState?
    /// The run is over (every shard settled) with this exit code.
    public var exitCode: Int32?
    public var finishedAt: Date?
}

extension Store {
    /// Runs whose W&B delivery is not finished.
    public func wandbPendingRuns(host: String, defaultEntity: String? = nil) throws -> [WandbPendingRun] {
        try read { db in
            try Row.fetchAll(db, sql: """
                SELECT r.*, w.run_id AS w_run, w.mode, w.cursor, w.last_step, w.history_lines, w.summary, w.offline_dir,
                       w.offline_size, w.offline_records, w.finished AS w_finished, w.event_cursor,
                       w.events_lines, w.output_lines, w.storage_id, w.entity AS w_entity, w.project AS w_project
                FROM runs r LEFT JOIN wandb_state w ON w.run_id = r.id
                WHERE w.finished IS NULL OR w.finished = 0
                ORDER BY r.created_at
                """).map { row in
                let info = WandbRunInfo(
                    runId: row["id"], project: row["project"], entity: (row["entity"] as String?) ?? defaultEntity, displayName: row["name"],
                    group: row["group_name"], jobType: row["job_type"], tags: jsonDecode([String].self, row["tags"]) ?? [],
                    notes: row["notes"], host: host, config: jsonDecode([String: JSONValue].self, row["config"]) ?? [:],
                    startTime: Date(timeIntervalSince1970: row["created_at"]))
                var state: WandbDeliveryState?
                if (row["w_run"] as String?) != nil {
                    state = WandbDeliveryState(
                        runId: row["id"], mode: row["mode"], cursor: row["cursor"], lastStep: row["last_step"],
                        historyLines: row["history_lines"], summary: jsonDecode([String: String].self, row["summary"]) ?? [:],
                        offlineDirectory: row["offline_dir"], offlineSize: row["offline_size"], offlineRecords: row["offline_records"],
                        finished: row["w_finished"], eventCursor: row["event_cursor"], eventsLines: row["events_lines"],
                        outputLines: row["output_lines"], storageId: row["storage_id"], entity: row["w_entity"], project: row["w_project"])
                }
                let exit: Int64? = row["exit_code"]
                return WandbPendingRun(info: info, state: state, exitCode: exit.map { Int32($0) }, finishedAt: dateFrom(row["finished_at"]))
            }
        }
    }

    /// Points of a run stored after `cursor` (ingest sequence), in arrival order, at most `limit`.
    public func pointsAfter(runId: String, cursor: Int64, limit: Int) throws -> [StoredPoint] {
        try read { db in
            // The batch that may hold the point right after the cursor, and every later one.
            let start = try Int64.fetchOne(db, sql: "SELECT MAX(first_seq) FROM metric_batches WHERE run_id = ? AND first_seq <= ?",
                                           arguments: [runId, cursor + 1]) ?? Int64.min
            let rows = try Row.fetchCursor(db, sql: "SELECT first_seq, id FROM metric_batches WHERE run_id = ? AND first_seq >= ? ORDER BY first_seq",
                                           arguments: [runId, start])
            let data = try db.cachedStatement(sql: "SELECT data FROM metric_batches WHERE id = ?")
            var out: [StoredPoint] = []
            while out.count < limit, let row = try rows.next() {
                let first: Int64 = row[0], id: Int64 = row[1]
                guard let batch = try recentBatches.batch(id: id, firstSeq: first, orLoad: {
                    try Data.fetchOne(data, arguments: [id]).map { try PointBatch(decoding: Array($0)) }
                }) else { continue }
                for i in 0..<batch.count {
                    let seq = first + Int64(i)
                    guard seq > cursor else { continue }
                    guard out.count < limit else { break }
                    out.append(StoredPoint(seq: seq, step: batch.steps[i], key: batch.keys[Int(batch.keyIndex[i])],
                                           value: batch.values[i], wallTime: batch.wallTimes[i]))
                }
            }
            return out
        }
    }

    /// Records delivery progress (one transaction, after the sink made it durable).
    public func saveWandbState(_ s: WandbDeliveryState, error: String? = nil) throws {
        try write { db in
            try db.execute(sql: """
                INSERT INTO wandb_state (run_id, mode, cursor, last_step, history_lines, summary, offline_dir, offline_size, offline_records, finished, last_error, event_cursor,
                    events_lines, output_lines, storage_id, entity, project)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(run_id) DO UPDATE SET mode = excluded.mode, cursor = excluded.cursor, last_step = excluded.last_step,
                    history_lines = excluded.history_lines, summary = excluded.summary, offline_dir = excluded.offline_dir,
                    offline_size = excluded.offline_size, offline_records = excluded.offline_records, finished = excluded.finished,
                    last_error = excluded.last_error, event_cursor = excluded.event_cursor, events_lines = excluded.events_lines,
                    output_lines = excluded.output_lines, storage_id = excluded.storage_id, entity = excluded.entity, project = excluded.project
                """, arguments: [s.runId, s.mode, s.cursor, s.lastStep, s.historyLines, jsonString(s.summary) ?? "{}", s.offlineDirectory,
                                 s.offlineSize, s.offlineRecords, s.finished, error, s.eventCursor, s.eventsLines, s.outputLines,
                                 s.storageId, s.entity, s.project])
        }
    }

    /// The delivery state of one run (nil before delivery starts).
    public func wandbState(runId: String) throws -> WandbDeliveryState? {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT * FROM wandb_state WHERE run_id = ?", arguments: [runId]) else { return nil }
            return WandbDeliveryState(
                runId: runId, mode: row["mode"], cursor: row["cursor"], lastStep: row["last_step"], historyLines: row["history_lines"],
                summary: jsonDecode([String: String].self, row["summary"]) ?? [:], offlineDirectory: row["offline_dir"],
                offlineSize: row["offline_size"], offlineRecords: row["offline_records"], finished: row["finished"],
                eventCursor: row["event_cursor"], eventsLines: row["events_lines"], outputLines: row["output_lines"],
                storageId: row["storage_id"], entity: row["entity"], project: row["project"])
        }
    }

    /// Events of a run after `cursor` (by id), of the given kinds.
    public func runEvents(runId: String, after cursor: Int64, kinds: [String], limit: Int = 1_000) throws -> [StoredRunEvent] {
        try read { db in
            let marks = Array(repeating: "?", count: kinds.count).joined(separator: ",")
            return try Row.fetchAll(db, sql: "SELECT id, kind, message, data, wall_time FROM events WHERE run_id = ? AND id > ? AND kind IN (\(marks)) ORDER BY id LIMIT ?",
                                    arguments: StatementArguments([runId, cursor] as [any DatabaseValueConvertible] + kinds + [limit])).map {
                StoredRunEvent(id: $0["id"], kind: $0["kind"], message: $0["message"], data: jsonDecode([String: JSONValue].self, $0["data"]) ?? [:], wallTime: $0["wall_time"])
            }
        }
    }
}
