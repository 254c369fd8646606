import Foundation
import GRDB
import JobSpecs
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
    /// Then retention runs for the run.
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
            if roles.contains("eval") { try autoEval(db, shardId: shardId, checkpoint: path, step: step, now: now) }
        } else if o["roles"] == nil, o["pinned"] == nil, kind == "step" {
            // The torch runner's own numbered checkpoints (never overwritten) and older workers'.
            try autoEval(db, shardId: shardId, checkpoint: path, step: step, now: now)
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
        if pinned { try applyRetention(db, runId: runId, now: now) }
    }

    /// The run's pins, oldest step first (deleted ones too, with `deletedAt`).
    public func pins(runId: String) throws -> [PinRecord] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM pins WHERE run_id = ? ORDER BY step, id", arguments: [runId]).map(PinRecord.init(row:))
        }
    }

    // MARK: retention

    /// Deletes the run's pins that its spec's `keep:` no longer wants, and logs each deletion as
    /// a `retention` event. Never deleted: a pin a queued or running evaluation reads, the run's
    /// resume points, and (without `keep:`) anything but a superseded resume-only pin.
    ///
    /// - `last: N` keeps the pins of the newest N steps;
    /// - `best: K, by: M` keeps the pins of the K best steps by metric M logged at the pin's step
    ///   (ties: the older step); steps without a value rank last (a pending evaluation keeps its
    ///   pin anyway);
    /// - a pin kept only as a resume point (`roles: [resume]`) is deleted once a newer full-state
    ///   pin exists (the resume starts from the newest).
    /// A file that cannot be deleted (not visible from the coordinator) is reported in the event
    /// and marked deleted anyway, so it is not retried forever; the file then needs deleting by hand.
    func applyRetention(_ db: Database, runId: String, now: Date) throws {
        let live = try Row.fetchAll(db, sql: "SELECT * FROM pins WHERE run_id = ? AND deleted_at IS NULL ORDER BY step, id",
                                    arguments: [runId]).map(PinRecord.init(row:))
        guard !live.isEmpty else { return }
        let policy: RetentionPolicy?
        if let text = try String.fetchOne(db, sql: "SELECT j.spec FROM runs r JOIN jobs j ON j.id = r.job_id WHERE r.id = ?", arguments: [runId]),
           let spec = try? JobSpecParser.parse(yaml: text) {
            policy = spec.retention
        } else {
            policy = nil
        }
        var protected = Set(try String.fetchAll(db, sql: "SELECT checkpoint FROM evals WHERE run_id = ? AND state = 'running'", arguments: [runId]))
        if let r = try Row.fetchOne(db, sql: "SELECT checkpoint_path, light_checkpoint_path FROM runs WHERE id = ?", arguments: [runId]) {
            if let p: String = r[0] { protected.insert(p) }
            if let p: String = r[1] { protected.insert(p) }
        }
        let newestFullStep = live.filter(\.fullState).map(\.step).max()
        var keepSteps = Set(live.map(\.step))
        var reasonFor: [Int64: String] = [:]
        if let policy {
            let steps = Array(Set(live.filter { $0.roles != ["resume"] }.map(\.step))).sorted()
            var keep: Set<Int64> = []
            if let n = policy.last { keep.formUnion(steps.suffix(n)) }
            if let k = policy.best, k > 0 {
                let scored = try steps.map { ($0, try metricValue(db, runId: runId, key: policy.measure, at: $0)) }
                let ranked = scored.filter { $0.1 != nil }.sorted { a, b in
                    policy.higherIsBetter ? (a.1!, b.0) > (b.1!, a.0) : (a.1!, a.0) < (b.1!, b.0)
                }
                keep.formUnion(ranked.prefix(k).map(\.0))
            }
            keepSteps = keep
            let lastText = policy.last.map { "the newest \($0)" }
            let bestText = (policy.best ?? 0) > 0 ? "the best \(policy.best!) by \(policy.measure)" : nil
            let why = "not among " + [lastText, bestText].compactMap { $0 }.joined(separator: " nor ")
            for s in steps where !keep.contains(s) { reasonFor[s] = why }
        }
        try announceBest(db, runId: runId, live: live, measure: policy?.measure ?? "val/text_loss",
                         higherIsBetter: policy?.higherIsBetter ?? false, now: now)
        for pin in live {
            let resumeOnly = pin.roles == ["resume"]
            var reason: String?
            if resumeOnly {
                if let newest = newestFullStep, pin.step < newest { reason = "a resume point superseded by the full-state pin at step \(newest)" }
            } else if !keepSteps.contains(pin.step) {
                reason = reasonFor[pin.step]
            }
            guard let reason, !protected.contains(pin.path) else { continue }
            var message = "deleted pin \(pin.path) (step \(pin.step)): \(reason)"
            do {
                if FileManager.default.fileExists(atPath: pin.path) { try FileManager.default.removeItem(atPath: pin.path) }
            } catch {
                message = "could not delete pin \(pin.path) (step \(pin.step), \(reason)): \(error.localizedDescription); delete it by hand (is the checkpoint volume mounted on the coordinator?)"
            }
            try db.execute(sql: "UPDATE pins SET deleted_at = ?, deleted_reason = ? WHERE run_id = ? AND path = ?",
                           arguments: [now.unixSeconds, reason, runId, pin.path])
            let data: [String: JSONValue] = ["path": .string(pin.path), "step": .number(Double(pin.step)), "reason": .string(reason)]
            try Self.insertEvent(db, kind: "retention", message: message, data: jsonString(data) ?? "", runId: runId,
                                 wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
        }
    }

    /// Moves the W&B `best` alias to the run's best pin by `measure` when it changed: a
    /// `checkpoint_saved` event with `alias: best` for that pin, which the W&B outbox logs as the
    /// same artifact version with `best` (and not `latest`). Pins kept only as resume points do not
    /// compete; without a value of the measure at any pin step nothing is announced.
    func announceBest(_ db: Database, runId: String, live: [PinRecord], measure: String, higherIsBetter: Bool, now: Date) throws {
        var best: (pin: PinRecord, value: Double)?
        for pin in live where pin.roles != ["resume"] {
            guard let v = try metricValue(db, runId: runId, key: measure, at: pin.step) else { continue }
            let better = best.map { b in
                higherIsBetter ? v > b.value : v < b.value || (v == b.value && pin.fullState && !b.pin.fullState && pin.step == b.pin.step)
            } ?? true
            if better { best = (pin, v) }
        }
        guard let best else { return }
        let announced = try String.fetchOne(db, sql: "SELECT best_pin FROM runs WHERE id = ?", arguments: [runId])
        guard announced != best.pin.path else { return }
        try db.execute(sql: "UPDATE runs SET best_pin = ? WHERE id = ?", arguments: [best.pin.path, runId])
        var data: [String: JSONValue] = [
            "step": .number(Double(best.pin.step)), "path": .string(best.pin.path), "kind": .string("pin"), "pinned": .bool(true),
            "full_state": .bool(best.pin.fullState), "roles": .array(best.pin.roles.map(JSONValue.string)), "alias": .string("best"),
            measure: .number(best.value),
        ]
        if let size = best.pin.size { data["size"] = .number(Double(size)) }
        if let sha = best.pin.sha256 { data["sha256"] = .string(sha) }
        try Self.insertEvent(db, kind: "checkpoint_saved", message: "best checkpoint by \(measure): \(best.pin.path) (step \(best.pin.step), \(best.value))",
                             data: jsonString(data) ?? "", runId: runId, wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
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
