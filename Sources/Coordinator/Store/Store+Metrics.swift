import Foundation
import GRDB
import Shared

/// What storing a batch of spool entries did.
public struct SpoolIngestOutcome: Sendable, Equatable {
    /// The worker's spool high-water mark after the transaction (acknowledge up to here).
    public var highWater: UInt64
    public var storedEntries: Int
    public var storedPoints: Int
    public var storedEvents: Int
}

extension Store {
    /// Stores spool entries exactly once: entries at or below the worker's spool high-water mark
    /// are skipped (a re-send after a lost ack or a worker restart), the rest are stored in order
    /// with the mark advanced in the same transaction. An entry past a gap is not stored (the
    /// worker re-sends from the mark).
    public func ingestSpool(workerId: String, entries: [SpoolEntry], now: Date = Date()) throws -> SpoolIngestOutcome {
        try pool.write { db in
            var hw = UInt64(bitPattern: try Int64.fetchOne(db, sql: "SELECT high_water FROM spool_marks WHERE worker_id = ?", arguments: [workerId]) ?? 0)
            var out = SpoolIngestOutcome(highWater: hw, storedEntries: 0, storedPoints: 0, storedEvents: 0)
            let insertPoint = try db.cachedStatement(sql: "INSERT OR IGNORE INTO points (series_id, step, ingest_seq, value_bits, wall_time) VALUES (?, ?, ?, ?, ?)")
            let insertEvent = try db.cachedStatement(sql: """
                INSERT INTO events (worker_id, shard_id, run_id, kind, message, data, wall_time, received_at)
                VALUES (?, ?, (SELECT run_id FROM shards WHERE id = ?), ?, ?, ?, ?, ?)
                """)
            var seriesCache: [SeriesKey: Int64] = [:]
            var ingest = try nextIngestSequence(db)
            for e in entries {
                guard e.sequence > hw else { continue }
                guard e.sequence == hw + 1 || hw == 0 else { break }
                for p in e.points {
                    let sid = try seriesId(db, run: p.runId, key: p.key, cache: &seriesCache)
                    try insertPoint.execute(arguments: [sid, p.step, ingest, Int64(bitPattern: p.value.bitPattern), p.wallTime])
                    ingest += 1
                }
                for ev in e.events {
                    try insertEvent.execute(arguments: [workerId, ev.shard?.shardId, ev.shard?.shardId, ev.kind.rawValue, ev.message, String(decoding: ev.data, as: UTF8.self), ev.wallTime, now.timeIntervalSince1970])
                }
                hw = e.sequence
                out.storedEntries += 1
                out.storedPoints += e.points.count
                out.storedEvents += e.events.count
            }
            if out.storedEntries > 0 {
                try db.execute(sql: "INSERT INTO spool_marks (worker_id, high_water) VALUES (?, ?) ON CONFLICT(worker_id) DO UPDATE SET high_water = excluded.high_water",
                               arguments: [workerId, Int64(bitPattern: hw)])
            }
            out.highWater = hw
            return out
        }
    }

    private struct SeriesKey: Hashable { var run: String; var key: String }

    private func seriesId(_ db: Database, run: String, key: String, cache: inout [SeriesKey: Int64]) throws -> Int64 {
        let k = SeriesKey(run: run, key: key)
        if let id = cache[k] { return id }
        try db.execute(sql: "INSERT OR IGNORE INTO series (run_id, key) VALUES (?, ?)", arguments: [run, key])
        let id = try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [run, key])!
        cache[k] = id // per transaction: a rolled-back insert is never remembered
        return id
    }

    private func nextIngestSequence(_ db: Database) throws -> Int64 {
        (try Int64.fetchOne(db, sql: "SELECT MAX(ingest_seq) FROM points") ?? 0) + 1
    }

    /// The points of one series in step order, optionally within `[fromStep, toStep]`.
    public func metricSeries(runId: String, key: String, fromStep: Int64? = nil, toStep: Int64? = nil) throws -> [MetricPoint] {
        try pool.read { db in
            guard let sid = try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [runId, key]) else { return [] }
            return try Row.fetchAll(db, sql: """
                SELECT step, value_bits, wall_time FROM points WHERE series_id = ? AND step >= ? AND step <= ? ORDER BY step, ingest_seq
                """, arguments: [sid, fromStep ?? Int64.min, toStep ?? Int64.max]).map {
                MetricPoint(runId: runId, step: $0["step"], key: key, value: Double(bitPattern: UInt64(bitPattern: $0["value_bits"] as Int64)), wallTime: $0["wall_time"])
            }
        }
    }

    /// Points stored per key of a run.
    public func pointCounts(runId: String) throws -> [String: Int] {
        try pool.read { db in
            var out: [String: Int] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT s.key, COUNT(*) AS n FROM points p JOIN series s ON s.id = p.series_id WHERE s.run_id = ? GROUP BY s.key", arguments: [runId]) {
                out[row["key"]] = row["n"]
            }
            return out
        }
    }

    /// The keys logged for a run.
    public func metricKeys(runId: String) throws -> [String] {
        try pool.read { db in try String.fetchAll(db, sql: "SELECT key FROM series WHERE run_id = ? ORDER BY key", arguments: [runId]) }
    }
}
