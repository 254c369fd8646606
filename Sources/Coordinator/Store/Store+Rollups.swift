import Foundation
import GRDB
import Shared

/// Curves at week scale.
///
/// A torch run of 240 k steps logs about 2 M points, a week-long one ten times that; the run
/// page refreshes every 5 s. Cutting a curve from every stored point at each request grew with
/// the run (3.1–3.5 s for the page of a 10 M-point run). Instead, every stored point also updates
/// the ``SeriesRollup`` of its bucket at each level of ``SeriesRollup/levels`` (64 to 2 M steps,
/// 8× apart) in the same transaction, and:
/// - a curve of B buckets over a step range reads the rows of the coarsest level that still has
///   at least B buckets in that range (so at most 8·B rows), finer levels at the range's ends
///   and the raw points of the last partial 64 steps at each end;
/// - a series' point count and newest point come from its few coarsest rows;
/// so a curve costs what it shows, not what is stored.
extension Store {
    static let rollupTopLevel = SeriesRollup.levels.count - 1

    /// Adds the points of `batch` (just stored; `seriesIds[k]` is the series of `batch.keys[k]`)
    /// to the summaries.
    static func addToRollups(_ db: Database, _ batch: PointBatch, seriesIds: [Int64]) throws {
        var builder = SeriesRollupBuilder()
        builder.add(batch, seriesIds: seriesIds)
        try builder.write(db)
    }

    /// Rebuilds every summary from the stored batches (the migration that introduced them).
    static func rebuildRollups(_ db: Database) throws {
        try db.execute(sql: "DELETE FROM series_rollups")
        for run in try String.fetchAll(db, sql: "SELECT DISTINCT run_id FROM metric_batches") {
            var ids: [String: Int64] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, key FROM series WHERE run_id = ?", arguments: [run]) { ids[row["key"]] = row["id"] }
            var builder = SeriesRollupBuilder()
            let rows = try Row.fetchCursor(db, sql: "SELECT data FROM metric_batches WHERE run_id = ? ORDER BY id", arguments: [run])
            while let row = try rows.next() {
                let batch = try PointBatch(decoding: Array(row[0] as Data))
                var seriesIds: [Int64] = []
                for key in batch.keys {
                    if let id = ids[key] { seriesIds.append(id) } else {
                        let id = try seriesId(db, run: run, key: key)
                        ids[key] = id
                        seriesIds.append(id)
                    }
                }
                builder.add(batch, seriesIds: seriesIds)
            }
            try builder.write(db)
        }
    }

    /// The whole-series summary (count, first, last, extremes) of each series of a run, by key.
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
        return out
    }

    /// The newest point (highest step, last arrival) of a series, from its summaries.
    public func latestPoint(runId: String, key: String) throws -> MetricPoint? {
        try pool.read { db in
            guard let data = try Data.fetchOne(db, sql: """
                SELECT r.data FROM series s JOIN series_rollups r ON r.series_id = s.id AND r.level = ?
                WHERE s.run_id = ? AND s.key = ? ORDER BY r.bucket DESC LIMIT 1
                """, arguments: [Self.rollupTopLevel, runId, key]) else { return nil }
            let last = try SeriesRollup(decoding: Array(data)).last
            return MetricPoint(runId: runId, step: last.step, key: key, value: last.value, wallTime: last.wallTime)
        }
    }

    /// Points stored per key of a run.
    public func pointCounts(runId: String) throws -> [String: Int] {
        try pool.read { db in try seriesSummaries(db, runId: runId).mapValues { Int($0.count) } }
    }

    /// A series cut to at most `limit` points (``SeriesDownsampler``'s rule: the first and the
    /// last point, and the lowest and the highest value of each of `(limit − 2) / 2` equal step
    /// buckets), optionally within `[fromStep, toStep]`. A range of few points is returned whole.
    /// Reads at most about 8 × limit summary rows however many points are stored.
    public func metricCurve(runId: String, key: String, fromStep: Int64? = nil, toStep: Int64? = nil, limit: Int) throws -> [MetricPoint] {
        precondition(limit >= 2, "a curve needs at least its two ends")
        let buckets = max(1, (limit - 2) / 2)
        let plan: (pieces: [Piece], raw: Bool, bucketing: CurveBucketing?)? = try pool.read { db in
            guard let sid = try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [runId, key]),
                  let whole = try seriesSummaries(db, runId: runId, key: key)[key] else { return nil }
            let lo = max(fromStep ?? whole.first.step, whole.first.step), hi = min(toStep ?? whole.last.step, whole.last.step)
            guard lo <= hi else { return ([], false, nil) }
            let span = Double(hi) - Double(lo) + 1
            // Few points, or a range too short for the finest level to cut it finely enough: the
            // points themselves (at most 64 per bucket asked for).
            if (lo <= whole.first.step && hi >= whole.last.step && whole.count <= Int64(limit))
                || span < Double(SeriesRollup.levels[0]) * Double(buckets) {
                return ([], true, nil)
            }
            var level = 0
            while level < Self.rollupTopLevel, span / Double(SeriesRollup.levels[level + 1]) >= Double(buckets) { level += 1 }
            var pieces: [Piece] = []
            try cover(db, series: sid, lo: lo, hi: hi, level: level, into: &pieces)
            return (pieces, false, CurveBucketing(lo: lo, hi: hi, levelWidth: SeriesRollup.levels[level], buckets: buckets))
        }
        guard let plan else { return [] }
        if plan.raw {
            return SeriesDownsampler.downsample(try metricSeries(runId: runId, key: key, fromStep: fromStep, toStep: toStep), limit: limit)
        }
        var rollups: [SeriesRollup] = []
        for piece in plan.pieces {
            switch piece {
            case .summary(let r): rollups.append(r)
            case .points(let from, let to):
                rollups += try metricSeries(runId: runId, key: key, fromStep: from, toStep: to)
                    .map { SeriesRollup(.init(step: $0.step, value: $0.value, wallTime: $0.wallTime)) }
            }
        }
        guard let bucketing = plan.bucketing else { return [] }
        return SeriesCurve.build(runId: runId, key: key, pieces: rollups, buckets: bucketing.count, bucketOf: bucketing.bucket(of:))
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
