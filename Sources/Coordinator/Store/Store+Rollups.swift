import Foundation
import GRDB
import Shared

/// Curves at week scale.
///
/// A torch run of 240 k steps logs about 2 M points, a week-long one ten times that; the run
/// page refreshes every 5 s. Cutting a curve from every stored point at each request grew with
/// the run (2.2–2.6 s for the page of a 10 M-point run). Instead the store keeps, per series, a
/// ``SeriesRollup`` of each bucket of steps at each level of ``SeriesRollup/levels`` (256 to 8 M
/// steps, 8× apart), and:
/// - a curve of B buckets over a step range reads the rows of the coarsest level that still has
///   at least B buckets in that range (so at most 8·B rows), finer levels at the range's ends
///   and the raw points of the last partial 256 steps at each end;
/// - a series' point count and newest point come from its few coarsest rows.
///
/// The summaries are a consumer of the stored batches: ``advanceRollups(maxBatches:)`` reads the
/// batches past its durable cursor (`consumer_cursors.rollups`, a `metric_batches.id`), folds them
/// in and moves the cursor in one transaction, so ingest pays nothing for them and a crash loses
/// nothing (the next call continues from the cursor). Readers take the summaries and the few
/// batches past the cursor from one snapshot, so what they return is always exact and current.
extension Store {
    static let rollupTopLevel = SeriesRollup.levels.count - 1
    static let rollupCursor = "rollups"

    /// Folds up to `maxBatches` stored batches past the summaries' cursor into them and moves
    /// the cursor, in one transaction. Returns how many batches it folded (0: caught up).
    @discardableResult
    public func advanceRollups(maxBatches: Int = 5_000) throws -> Int {
        // The batches are read and summarised in a read (a snapshot), without holding the
        // writer: only the summary rows and the cursor are written in the write transaction.
        // The summaries have one writer (the consumer), so the cursor cannot move in between.
        let (builder, start, last, folded) = try read { db -> (SeriesRollupBuilder, Int64, Int64, Int) in
            let cursor = try Self.cursor(db, Self.rollupCursor)
            var builder = SeriesRollupBuilder()
            var ids: [SeriesKeyOfRun: Int64] = [:]
            var last = cursor, folded = 0
            // The blob is read only for a batch that is no longer held decoded.
            let rows = try Row.fetchCursor(db, sql: "SELECT id, run_id, first_seq FROM metric_batches WHERE id > ? ORDER BY id LIMIT ?",
                                           arguments: [cursor, maxBatches])
            let data = try db.cachedStatement(sql: "SELECT data FROM metric_batches WHERE id = ?")
            while let row = try rows.next() {
                let id: Int64 = row[0], run: String = row[1], firstSeq: Int64 = row[2]
                guard let batch = try recentBatches.batch(id: id, firstSeq: firstSeq, orLoad: {
                    try Data.fetchOne(data, arguments: [id]).map { try PointBatch(decoding: Array($0)) }
                }) else { continue }
                var seriesIds: [Int64] = []
                seriesIds.reserveCapacity(batch.keys.count)
                for key in batch.keys {
                    let k = SeriesKeyOfRun(run: run, key: key)
                    if let id = ids[k] { seriesIds.append(id) } else {
                        // Ingest creates the series row with the batch, in the same transaction.
                        guard let id = try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [run, key]) else {
                            throw StoreError(.damaged, "a stored metric batch of run \(run) has key \(key) but the run has no such series; restore the database from a backup")
                        }
                        ids[k] = id
                        seriesIds.append(id)
                    }
                }
                builder.add(batch, seriesIds: seriesIds)
                last = row[0]
                folded += 1
            }
            return (builder, cursor, last, folded)
        }
        guard folded > 0 else { return 0 }
        var cache = rollupCache.withLock { c -> SeriesRollupCache in defer { c = SeriesRollupCache() }; return c }
        try write { db in
            guard try Self.cursor(db, Self.rollupCursor) == start else {
                throw StoreError(.failed, "the series summaries' cursor moved during a fold (two folds at once?); folding again")
            }
            try builder.write(db, cache: &cache)
            try Self.setCursor(db, Self.rollupCursor, last)
        }
        // Committed: the cache describes the stored rows (on a throw it was dropped above).
        rollupCache.withLock { $0 = cache }
        return folded
    }

    private struct SeriesKeyOfRun: Hashable {
        var run: String
        var key: String
    }

    /// A consumer's durable position (0 before its first step).
    static func cursor(_ db: Database, _ name: String) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT position FROM consumer_cursors WHERE name = ?", arguments: [name]) ?? 0
    }

    static func setCursor(_ db: Database, _ name: String, _ position: Int64) throws {
        try db.execute(sql: """
            INSERT INTO consumer_cursors (name, position, updated_at) VALUES (?, ?, ?)
            ON CONFLICT(name) DO UPDATE SET position = excluded.position, updated_at = excluded.updated_at
            """, arguments: [name, position, Date().timeIntervalSince1970])
    }

    /// The summaries' cursor now (for tests and diagnostics).
    public func rollupCursor() throws -> Int64 { try read { db in try Self.cursor(db, Self.rollupCursor) } }

    /// The whole-series summary of each series of a run (or of `key` only), by key: the
    /// summarised rows merged with the batches past the cursor.
    func seriesSummaries(_ db: Database, runId: String, key: String? = nil) throws -> [String: SeriesRollup] {
        var sql = """
            SELECT s.key, r.data FROM series s JOIN series_rollups r ON r.series_id = s.id AND r.level = ?
            WHERE s.run_id = ?
            """
        var args: [any DatabaseValueConvertible] = [Self.rollupTopLevel, runId]
        if let key { sql += " AND s.key = ?"; args.append(key) }
        sql += " ORDER BY s.key, r.bucket"
        var out: [String: SeriesRollup] = [:]
        for row in try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)) {
            let k: String = row[0]
            let r = try SeriesRollup(decoding: Array(row[1] as Data))
            if out[k] == nil { out[k] = r } else { out[k]!.merge(r) }
        }
        for (k, points) in try unsummarised(db, runId: runId, key: key) {
            for p in points {
                let s = SeriesRollup.Sample(step: p.step, value: p.value, wallTime: p.wallTime)
                if out[k] == nil { out[k] = SeriesRollup(s) } else { out[k]!.add(s) }
            }
        }
        return out
    }

    /// The points of a run (or of one key) in batches past the summaries' cursor, by key, in
    /// arrival order.
    func unsummarised(_ db: Database, runId: String, key: String? = nil) throws -> [String: [MetricPoint]] {
        let cursor = try Self.cursor(db, Self.rollupCursor)
        var out: [String: [MetricPoint]] = [:]
        let rows = try Row.fetchCursor(db, sql: "SELECT data FROM metric_batches WHERE run_id = ? AND id > ? ORDER BY id", arguments: [runId, cursor])
        while let row = try rows.next() {
            let batch = try PointBatch(decoding: Array(row[0] as Data))
            for i in 0..<batch.count {
                let k = batch.keys[Int(batch.keyIndex[i])]
                if let key, k != key { continue }
                out[k, default: []].append(MetricPoint(runId: runId, step: batch.steps[i], key: k, value: batch.values[i], wallTime: batch.wallTimes[i]))
            }
        }
        return out
    }

    /// The newest point (highest step, last arrival) of a series.
    public func latestPoint(runId: String, key: String) throws -> MetricPoint? {
        try read { db in
            var newest: SeriesRollup.Sample?
            if let data = try Data.fetchOne(db, sql: """
                SELECT r.data FROM series s JOIN series_rollups r ON r.series_id = s.id AND r.level = ?
                WHERE s.run_id = ? AND s.key = ? ORDER BY r.bucket DESC LIMIT 1
                """, arguments: [Self.rollupTopLevel, runId, key]) {
                newest = try SeriesRollup(decoding: Array(data)).last
            }
            for p in try unsummarised(db, runId: runId, key: key)[key] ?? [] where p.step >= (newest?.step ?? .min) {
                newest = .init(step: p.step, value: p.value, wallTime: p.wallTime)
            }
            return newest.map { MetricPoint(runId: runId, step: $0.step, key: key, value: $0.value, wallTime: $0.wallTime) }
        }
    }

    /// Points stored per key of a run.
    public func pointCounts(runId: String) throws -> [String: Int] {
        try read { db in try seriesSummaries(db, runId: runId).mapValues { Int($0.count) } }
    }

    /// A series cut to at most `limit` points (``SeriesDownsampler``'s rule: the first and the
    /// last point, and the lowest and the highest value of each of at most `(limit − 2) / 2` step
    /// buckets), optionally within `[fromStep, toStep]`. A range of few points is returned whole.
    /// Reads at most about 8 × limit summary rows however many points are stored.
    public func metricCurve(runId: String, key: String, fromStep: Int64? = nil, toStep: Int64? = nil, limit: Int) throws -> [MetricPoint] {
        precondition(limit >= 2, "a curve needs at least its two ends")
        let buckets = max(1, (limit - 2) / 2)
        return try read { db -> [MetricPoint] in
            guard let sid = try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [runId, key]),
                  let whole = try seriesSummaries(db, runId: runId, key: key)[key] else { return [] }
            let lo = max(fromStep ?? whole.first.step, whole.first.step), hi = min(toStep ?? whole.last.step, whole.last.step)
            guard lo <= hi else { return [] }
            let span = Double(hi) - Double(lo) + 1
            // Few points, or a range too short for the finest level to cut it finely enough: the
            // points themselves (at most 256 steps per bucket asked for).
            if (lo <= whole.first.step && hi >= whole.last.step && whole.count <= Int64(limit))
                || span < Double(SeriesRollup.levels[0]) * Double(buckets) {
                return SeriesDownsampler.downsample(try seriesPoints(db, runId: runId, key: key, fromStep: fromStep, toStep: toStep), limit: limit)
            }
            var level = 0
            while level < Self.rollupTopLevel, span / Double(SeriesRollup.levels[level + 1]) >= Double(buckets) { level += 1 }
            let cursor = try Self.cursor(db, Self.rollupCursor)
            var pieces: [Piece] = []
            try cover(db, series: sid, lo: lo, hi: hi, level: level, into: &pieces)
            var rollups: [SeriesRollup] = []
            for piece in pieces {
                switch piece {
                case .summary(let r): rollups.append(r)
                case .points(let from, let to):
                    rollups += try seriesPoints(db, runId: runId, key: key, fromStep: from, toStep: to, batches: 0...cursor)
                        .map { SeriesRollup(.init(step: $0.step, value: $0.value, wallTime: $0.wallTime)) }
                }
            }
            // Points not summarised yet, wherever their steps fall (they arrived last).
            for p in try unsummarised(db, runId: runId, key: key)[key] ?? [] where (lo...hi).contains(p.step) {
                rollups.append(SeriesRollup(.init(step: p.step, value: p.value, wallTime: p.wallTime)))
            }
            let bucketing = CurveBucketing(lo: lo, hi: hi, levelWidth: SeriesRollup.levels[level], buckets: buckets)
            return SeriesCurve.build(runId: runId, key: key, pieces: rollups, buckets: bucketing.count, bucketOf: bucketing.bucket(of:))
        }
    }

    /// How a curve over `[lo, hi]` is cut when it is built from summaries: into buckets of
    /// `width` steps aligned to multiples of it (so no summary row straddles two of them and each
    /// bucket's extremes are exact); `width` is the smallest multiple of the summary level's width
    /// that gives at most the number of buckets asked for.
    struct CurveBucketing: Equatable {
        var origin: Int64
        var width: Int64
        var count: Int

        init(lo: Int64, hi: Int64, levelWidth: Int64, buckets: Int) {
            var k = Int64(1)
            func spanned(_ w: Int64) -> Int64 { SeriesRollup.bucket(hi, width: w) - SeriesRollup.bucket(lo, width: w) + 1 }
            while spanned(k * levelWidth) > Int64(buckets) { k += 1 }
            width = k * levelWidth
            origin = SeriesRollup.bucket(lo, width: width)
            count = Int(spanned(width))
        }

        func bucket(of step: Int64) -> Int { Int(SeriesRollup.bucket(step, width: width) - origin) }
    }

    /// A step range of a curve: summarised, or to be read point by point.
    enum Piece {
        case summary(SeriesRollup)
        case points(from: Int64, to: Int64)
    }

    /// Covers `[lo, hi]` with whole buckets of `level`, and its ends with finer levels (the raw
    /// points below the finest), in step order.
    private func cover(_ db: Database, series: Int64, lo: Int64, hi: Int64, level: Int, into pieces: inout [Piece]) throws {
        guard lo <= hi else { return }
        guard level >= 0 else { pieces.append(.points(from: lo, to: hi)); return }
        let width = SeriesRollup.levels[level]
        let firstWhole = SeriesRollup.bucket(lo + width - 1, width: width) // the first bucket starting at or after lo
        let lastWhole = SeriesRollup.bucket(hi + 1, width: width) - 1       // the last bucket ending at or before hi
        guard firstWhole <= lastWhole else { return try cover(db, series: series, lo: lo, hi: hi, level: level - 1, into: &pieces) }
        try cover(db, series: series, lo: lo, hi: firstWhole * width - 1, level: level - 1, into: &pieces)
        let rows = try Data.fetchAll(db, sql: """
            SELECT data FROM series_rollups WHERE series_id = ? AND level = ? AND bucket BETWEEN ? AND ? ORDER BY bucket
            """, arguments: [series, level, firstWhole, lastWhole])
        for data in rows { pieces.append(.summary(try SeriesRollup(decoding: Array(data)))) }
        try cover(db, series: series, lo: (lastWhole + 1) * width, hi: hi, level: level - 1, into: &pieces)
    }
}
