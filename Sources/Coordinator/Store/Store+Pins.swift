import Foundation
import GRDB
import Shared

/// A pinned checkpoint of a run, as the store records it.
public struct PinRecord: Sendable, Equatable, Codable {
    public var runId: String
    public var step: Int64
    public var path: String
    public var source: String?
    public var fullState: Bool
    public var roles: [String]
    public var size: Int64?
    public var sha256: String?
    public var createdAt: Double
    public var deletedAt: Double?
    public var deletedReason: String?

    enum CodingKeys: String, CodingKey {
        case runId = "run_id", step, path, source, fullState = "full_state", roles, size, sha256
        case createdAt = "created_at", deletedAt = "deleted_at", deletedReason = "deleted_reason"
    }

    init(runId: String, step: Int64, path: String, source: String? = nil, fullState: Bool, roles: [String], size: Int64? = nil,
         sha256: String? = nil, createdAt: Double, deletedAt: Double? = nil, deletedReason: String? = nil) {
        self.runId = runId
        self.step = step
        self.path = path
        self.source = source
        self.fullState = fullState
        self.roles = roles
        self.size = size
        self.sha256 = sha256
        self.createdAt = createdAt
        self.deletedAt = deletedAt
        self.deletedReason = deletedReason
    }

    init(row: Row) {
        runId = row["run_id"]
        step = row["step"]
        path = row["path"]
        source = row["source"]
        fullState = (row["full_state"] as Int64? ?? 0) != 0
        roles = jsonDecode([String].self, row["roles"]) ?? []
        size = row["size"]
        sha256 = row["sha256"]
        createdAt = row["created_at"]
        deletedAt = row["deleted_at"]
        deletedReason = row["deleted_reason"]
    }
}

/// A run's pins as retention sees them (``Store/retentionSnapshot(_:runId:)``).
struct RetentionSnapshot: Sendable, Equatable {
    /// The pins not deleted, oldest step first.
    var live: [PinRecord]
    /// The run's job spec (YAML), if the run has a job.
    var specText: String?
    /// Paths never deleted: pins a running evaluation reads, the run's resume points.
    var protectedPaths: Set<String>
    /// The pin that has W&B's `best` alias now.
    var bestPin: String?
}

extension Store {
    // MARK: checkpoints

    /// Records a `checkpoint_saved` event of a training shard.
    ///
    /// - A **pin** (`pinned: true`, from the command runner) is stored in `pins`; one with the
    ///   `eval` role starts the run's evaluation at that step (once per run and step).
    /// - The run's resume points follow the newest checkpoint **with optimizer state**
    ///   (`checkpoint_path`, a pin preferred at equal steps) and the newest **without**
    ///   (`light_checkpoint_path`); dispatch picks between them by the spec's `resume:`.
    /// - `best_model.pth` (`best: true`) is not a resume point.
    /// - Events without `pinned` (the torch runner's own numbered checkpoints, which it never
    ///   overwrites, and older workers') start the evaluation at an `eval_every` step; without
    ///   `full_state` a numbered one counts as full state and `latest*.pth` as light.
    /// Then retention runs for the run (``StoreDecisions/pinsChanged(_:store:runId:now:)``).
    func recordCheckpoint(_ db: Database, shardId: Int64?, data: [UInt8]) throws {
        guard let shardId, let value = try? JSONCoding.decode(JSONValue.self, from: data), case .object(let o) = value,
              let path = o["path"]?.stringValue, let step = o["step"]?.doubleValue.map({ Int64($0) }),
              let runId = try String.fetchOne(db, sql: "SELECT run_id FROM shards WHERE id = ?", arguments: [shardId]) else { return }
        let kind = o["kind"]?.stringValue ?? ""
        let pinned = o["pinned"] == .bool(true)
        let fullState = o["full_state"]?.boolValue ?? (kind == "step")
        let now = Date()
        if pinned {
            let roles = o["roles"]?.arrayValue?.compactMap(\.stringValue) ?? []
            try db.execute(sql: """
                INSERT INTO pins (run_id, step, path, source, full_state, roles, size, sha256, created_at)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT(run_id, path) DO UPDATE SET roles = excluded.roles, deleted_at = NULL, deleted_reason = NULL
                """, arguments: [runId, step, path, o["source"]?.stringValue, fullState ? 1 : 0, jsonString(roles) ?? "[]",
                                 o["size"]?.doubleValue.map { Int64($0) }, o["sha256"]?.stringValue, now.unixSeconds])
            if roles.contains("eval") { try decisions.checkpointSaved(db, store: self, shardId: shardId, checkpoint: path, step: step, now: now) }
        } else if o["roles"] == nil, o["pinned"] == nil, kind == "step" {
            // The torch runner's own numbered checkpoints (never overwritten) and older workers'.
            try decisions.checkpointSaved(db, store: self, shardId: shardId, checkpoint: path, step: step, now: now)
        }
        guard o["best"] != .bool(true) || pinned else { return }
        if fullState {
            try db.execute(sql: """
                UPDATE runs SET checkpoint_path = ?, checkpoint_step = ?, checkpoint_kind = ?, checkpoint_full = 1
                WHERE id = ? AND (checkpoint_step IS NULL OR checkpoint_step < ? OR (checkpoint_step = ? AND (? OR checkpoint_kind != 'pin')))
                """, arguments: [path, step, kind, runId, step, step, pinned])
        } else {
            try db.execute(sql: """
                UPDATE runs SET light_checkpoint_path = ?, light_checkpoint_step = ?
                WHERE id = ? AND (light_checkpoint_step IS NULL OR light_checkpoint_step < ? OR (light_checkpoint_step = ? AND ?))
                """, arguments: [path, step, runId, step, step, pinned])
        }
        if pinned { try decisions.pinsChanged(db, store: self, runId: runId, now: now) }
    }

    /// The run's pins, oldest step first (deleted ones too, with `deletedAt`).
    public func pins(runId: String) throws -> [PinRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM pins WHERE run_id = ? ORDER BY step, id", arguments: [runId]).map(PinRecord.init(row:))
        }
    }

    // MARK: retention

    /// What retention decides from: the run's pins not yet deleted (oldest step first), its
    /// job spec, and the paths no policy may delete (a pin a running evaluation reads, the run's
    /// resume points).
    func retentionSnapshot(_ db: Database, runId: String) throws -> RetentionSnapshot {
        let live = try Row.fetchAll(db, sql: "SELECT * FROM pins WHERE run_id = ? AND deleted_at IS NULL ORDER BY step, id",
                                    arguments: [runId]).map(PinRecord.init(row:))
        let specText = try String.fetchOne(db, sql: "SELECT j.spec FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ?", arguments: [runId])
        var protected = Set(try String.fetchAll(db, sql: "SELECT checkpoint FROM evals WHERE run_id = ? AND state = ?",
                                                arguments: [runId, EvalState.running]))
        if let r = try Row.fetchOne(db, sql: "SELECT checkpoint_path, light_checkpoint_path FROM runs WHERE id = ?", arguments: [runId]) {
            if let p: String = r[0] { protected.insert(p) }
            if let p: String = r[1] { protected.insert(p) }
        }
        let announced = try String.fetchOne(db, sql: "SELECT best_pin FROM runs WHERE id = ?", arguments: [runId])
        return RetentionSnapshot(live: live, specText: specText, protectedPaths: protected, bestPin: announced)
    }

    /// Marks a pin deleted by retention, with the reason.
    func markPinDeleted(_ db: Database, runId: String, path: String, reason: String, now: Date) throws {
        try db.execute(sql: "UPDATE pins SET deleted_at = ?, deleted_reason = ? WHERE run_id = ? AND path = ?",
                       arguments: [now.unixSeconds, reason, runId, path])
    }

    /// Records which pin has W&B's `best` alias.
    func setBestPin(_ db: Database, runId: String, path: String) throws {
        try db.execute(sql: "UPDATE runs SET best_pin = ? WHERE id = ?", arguments: [path, runId])
    }

    /// The value of `key` logged at exactly `step` (nil: none, or not finite).
    func metricValue(_ db: Database, runId: String, key: String, at step: Int64) throws -> Double? {
        guard let sid = try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [runId, key]) else { return nil }
        for row in try Row.fetchAll(db, sql: """
            SELECT b.data FROM series_batches sb JOIN metric_batches b ON b.id = sb.batch_id
            WHERE sb.series_id = ? AND sb.min_step <= ? AND sb.max_step >= ? ORDER BY b.id
            """, arguments: [sid, step, step]) {
            let batch = try PointBatch(decoding: Array(row[0] as Data))
            guard let k = batch.keys.firstIndex(of: key).map(UInt32.init) else { continue }
            for i in 0..<batch.count where batch.keyIndex[i] == k && batch.steps[i] == step && batch.values[i].isFinite {
                return batch.values[i]
            }
        }
        return nil
    }
}
