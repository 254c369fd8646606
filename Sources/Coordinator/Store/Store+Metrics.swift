import Foundation
import GRDB
import Shared

/// What storing a batch of spool entries did.
public struct SpoolIngestOutcome: Sendable, Equatable {
    /// The worker's spool high-water mark after the transaction (acknowledge up to here).
    public var highWater: UInt64
    public var storedEntries: Int
    /// Points of the stored entries that were kept (a point whose run, key and step is already
    /// stored is dropped: see `Store+StepDedup.swift`).
    public var storedPoints: Int
    public var storedEvents: Int
    /// Points of the stored entries dropped because their (run, key, step) was already stored.
    public var duplicatePoints: Int = 0
    /// The stored entries as they were stored (without the dropped points), in order: what the
    /// rules engine and the outboxes are told about.
    public var stored: [SpoolEntry] = []

    public init(highWater: UInt64, storedEntries: Int, storedPoints: Int, storedEvents: Int) {
        self.highWater = highWater
        self.storedEntries = storedEntries
        self.storedPoints = storedPoints
        self.storedEvents = storedEvents
    }
}

extension Store {
    /// Stores spool entries exactly once: entries at or below the worker's spool high-water mark
    /// are skipped (a re-send after a lost ack or a worker restart), the rest are stored in order
    /// with the mark advanced in the same transaction. An entry past a gap is not stored (the
    /// worker re-sends from the mark).
    ///
    /// The points of the stored entries are stored as one ``PointBatch`` row per run (`metric_batches`),
    /// indexed per key and step range in `series_batches`; every point gets the next
    /// coordinator-wide ingest sequence (a batch holds `first_seq ..< first_seq + point_count`).
    public func ingestSpool(workerId: String, entries: [SpoolEntry], now: Date = Date()) throws -> SpoolIngestOutcome {
        var committed: [RecentBatches.Entry] = []
        let outcome = try write { db in
            committed = []
            var hw = UInt64(bitPattern: try Int64.fetchOne(db, sql: "SELECT high_water FROM spool_marks WHERE worker_id = ?", arguments: [workerId]) ?? 0)
            var out = SpoolIngestOutcome(highWater: hw, storedEntries: 0, storedPoints: 0, storedEvents: 0)
            var seriesCache: [SeriesKey: Int64] = [:]
            // Trainers usually spool one entry per step: the points of every entry stored by this
            // request become one batch per run (in arrival order), not a row per entry.
            var runs: [String] = []
            var groups: [[MetricPoint]] = []
            var current = -1
            var accepted: [SpoolEntry] = []
            // Most requests carry the points of one run: then the batch is built straight from
            // the entries, and points are copied into per-run groups only once a second run
            // shows up (the first run's points so far become its group then).
            for e in entries {
                guard e.sequence > hw else { continue }
                guard e.sequence == hw + 1 || hw == 0 else { break }
                accepted.append(e)
                for (j, p) in e.points.enumerated() {
                    if current < 0 || runs[current] != p.runId {
                        if let i = runs.firstIndex(of: p.runId) { current = i } else {
                            if runs.count == 1 { groups[0] = accepted.dropLast().flatMap(\.points) + e.points[..<j] }
                            runs.append(p.runId)
                            groups.append([])
                            current = runs.count - 1
                        }
                    }
                    if runs.count > 1 { groups[current].append(p) }
                }
                for ev in e.events {
                    try Self.recordWorkerEvent(db, workerId: workerId, ev, now: now.timeIntervalSince1970)
                    if ev.kind == .checkpointSaved { try recordCheckpoint(db, shardId: ev.shard?.shardId, data: ev.data) }
                }
                hw = e.sequence
                out.storedEntries += 1
                out.storedPoints += e.points.count
                out.storedEvents += e.events.count
            }
            var ingest = try nextIngestSequence(db)
            var masks: [Int: [Bool]] = [:]
            for (g, (r, points)) in zip(runs, groups).enumerated() {
                var batch = runs.count == 1 ? PointBatch(points: accepted.lazy.flatMap(\.points)) : PointBatch(points: points)
                if let keep = try Self.keepMask(db, run: r, batch: batch, seriesId: { db, key in try seriesId(db, run: r, key: key, cache: &seriesCache) }) {
                    masks[g] = keep
                    batch = runs.count == 1 ? PointBatch(points: zip(accepted.lazy.flatMap(\.points), keep).lazy.filter(\.1).map(\.0))
                                        : PointBatch(points: zip(points, keep).lazy.filter(\.1).map(\.0))
                    out.duplicatePoints += keep.count - batch.count
                }
                guard batch.count > 0 else { continue }
                let batchId = try insertBatch(db, run: r, batch, firstSeq: ingest, cache: &seriesCache)
                try Self.appendLog(db, .points, runId: r, workerId: workerId, ref: batchId, at: now.timeIntervalSince1970)
                committed.append(.init(id: batchId, firstSeq: ingest, batch: batch, storedAt: now.timeIntervalSince1970))
                ingest += Int64(batch.count)
            }
            out.storedPoints -= out.duplicatePoints
            out.stored = masks.isEmpty ? accepted : Self.removing(masks, runs: runs, from: accepted)
            if out.storedEntries > 0 {
                try db.execute(sql: "INSERT INTO spool_marks (worker_id, high_water) VALUES (?, ?) ON CONFLICT(worker_id) DO UPDATE SET high_water = excluded.high_water",
                               arguments: [workerId, Int64(bitPattern: hw)])
            }
            out.highWater = hw
            return out
        }
        // Committed: the consumers that read these batches next find them decoded.
        if !committed.isEmpty { recentBatches.withLock { $0.insert(committed) } }
        return outcome
    }

    /// `entries` without the points the masks drop (masks per run group, indexed in the order
    /// in which the groups took the entries' points).
    private static func removing(_ masks: [Int: [Bool]], runs: [String], from entries: [SpoolEntry]) -> [SpoolEntry] {
        var position = [Int](repeating: 0, count: runs.count)
        var groupOf: [String: Int] = [:]
        for (g, r) in runs.enumerated() { groupOf[r] = g }
        return entries.map { e in
            var copy = e
            copy.points = e.points.filter { p in
                let g = groupOf[p.runId]!
                defer { position[g] += 1 }
                return masks[g]?[position[g]] ?? true
            }
            return copy
        }
    }

    private func insertBatch(_ db: Database, run: String, _ batch: PointBatch, firstSeq: Int64, cache: inout [SeriesKey: Int64]) throws -> Int64 {
        try Self.insertBatch(db, run: run, batch, firstSeq: firstSeq) { db, key in try seriesId(db, run: run, key: key, cache: &cache) }
    }

    /// Stores points the coordinator made itself (an evaluation's scores) like points from a
    /// worker: one per (run, key, step) kept, one batch, logged for the consumers. Returns the
    /// points kept.
    @discardableResult
    func storeCoordinatorPoints(_ db: Database, run: String, _ points: [MetricPoint], now: Double) throws -> [MetricPoint] {
        var batch = PointBatch(points: points)
        var kept = points
        if let keep = try Self.keepMask(db, run: run, batch: batch, seriesId: { db, key in try Self.seriesId(db, run: run, key: key) }) {
            kept = zip(points, keep).filter(\.1).map(\.0)
            batch = PointBatch(points: kept)
        }
        guard batch.count > 0 else { return [] }
        let batchId = try Self.insertBatch(db, run: run, batch, firstSeq: try nextIngestSequence(db)) { db, key in try Self.seriesId(db, run: run, key: key) }
        try Self.appendLog(db, .points, runId: run, workerId: nil, ref: batchId, at: now)
        return kept
    }

    /// Inserts one batch row and its per-key index rows; returns the batch's id. (The series
    /// summaries catch up from `metric_batches` on their own cursor: see `Store+Rollups.swift`.)
    @discardableResult
    static func insertBatch(_ db: Database, run: String, _ batch: PointBatch, firstSeq: Int64,
                            seriesId: (Database, String) throws -> Int64) throws -> Int64 {
        let insert = try db.cachedStatement(sql: "INSERT INTO metric_batches (run_id, first_seq, point_count, min_step, max_step, data) VALUES (?, ?, ?, ?, ?, ?)")
        try insert.execute(arguments: [run, firstSeq, batch.count, batch.minStep, batch.maxStep, Data(batch.encoded())])
        let batchId = db.lastInsertedRowID
        let index = try db.cachedStatement(sql: "INSERT INTO series_batches (series_id, batch_id, min_step, max_step, point_count) VALUES (?, ?, ?, ?, ?)")
        for (k, extent) in zip(batch.keys, batch.extents) {
            try index.execute(arguments: [try seriesId(db, k), batchId, extent.minStep, extent.maxStep, extent.count])
        }
        return batchId
    }

    private struct SeriesKey: Hashable { var run: String; var key: String }

    private func seriesId(_ db: Database, run: String, key: String, cache: inout [SeriesKey: Int64]) throws -> Int64 {
        let k = SeriesKey(run: run, key: key)
        if let id = cache[k] { return id }
        let id = try Self.seriesId(db, run: run, key: key)
        cache[k] = id // per transaction: a rolled-back insert is never remembered
        return id
    }

    static func seriesId(_ db: Database, run: String, key: String) throws -> Int64 {
        try db.execute(sql: "INSERT OR IGNORE INTO series (run_id, key) VALUES (?, ?)", arguments: [run, key])
        return try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [run, key])!
    }

    func nextIngestSequence(_ db: Database) throws -> Int64 {
        (try Int64.fetchOne(db, sql: "SELECT first_seq + point_count FROM metric_batches ORDER BY id DESC LIMIT 1") ?? 1)
    }

    /// The points of one series in step order (arrival order within a step), optionally within
    /// `[fromStep, toStep]`.
    public func metricSeries(runId: String, key: String, fromStep: Int64? = nil, toStep: Int64? = nil) throws -> [MetricPoint] {
        try read { db in try seriesPoints(db, runId: runId, key: key, fromStep: fromStep, toStep: toStep) }
    }

    /// ``metricSeries(runId:key:fromStep:toStep:)`` inside a read; `batches` limits it to the
    /// batches whose id lies in that range.
    func seriesPoints(_ db: Database, runId: String, key: String, fromStep: Int64? = nil, toStep: Int64? = nil,
                      batches: ClosedRange<Int64> = 0...Int64.max) throws -> [MetricPoint] {
        let lo = fromStep ?? Int64.min, hi = toStep ?? Int64.max
        guard let sid = try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [runId, key]) else { return [] }
        let rows: [(seq: Int64, data: [UInt8])] = try Row.fetchAll(db, sql: """
            SELECT b.first_seq, b.data FROM series_batches sb JOIN metric_batches b ON b.id = sb.batch_id
            WHERE sb.series_id = ? AND sb.max_step >= ? AND sb.min_step <= ? AND sb.batch_id BETWEEN ? AND ? ORDER BY b.id
            """, arguments: [sid, lo, hi, batches.lowerBound, batches.upperBound]).map { ($0[0], Array($0[1] as Data)) }
        var found: [(seq: Int64, point: MetricPoint)] = []
        for row in rows {
            let batch = try PointBatch(decoding: row.data)
            guard let k = batch.keys.firstIndex(of: key).map(UInt32.init) else { continue }
            for i in 0..<batch.count where batch.keyIndex[i] == k && batch.steps[i] >= lo && batch.steps[i] <= hi {
                found.append((row.seq + Int64(i), MetricPoint(runId: runId, step: batch.steps[i], key: key, value: batch.values[i], wallTime: batch.wallTimes[i])))
            }
        }
        found.sort { ($0.point.step, $0.seq) < ($1.point.step, $1.seq) }
        return found.map(\.point)
    }

    /// The keys logged for a run.
    public func metricKeys(runId: String) throws -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT key FROM series WHERE run_id = ? ORDER BY key", arguments: [runId]) }
    }
}
