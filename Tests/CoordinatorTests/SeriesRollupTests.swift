import Foundation
import GRDB
import Testing
@testable import Coordinator
@testable import Shared

/// Curves at week scale: per-series summaries at several step resolutions, kept at ingest, give
/// the same curve, counts and newest points as the stored points themselves.
@Suite("Series summaries")
struct SeriesRollupTests {
    let dir: URL

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-rollups-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    static func point(_ run: String, _ step: Int64, _ key: String, _ value: Double) -> MetricPoint {
        MetricPoint(runId: run, step: step, key: key, value: value, wallTime: 1_700_000_000 + Double(step) / 4)
    }

    /// A loss curve with noise, a one-step spike, a NaN and an infinity.
    static func loss(_ step: Int64) -> Double {
        switch step {
        case 123_457: return 50
        case 77_777: return .nan
        case 150_001: return .infinity
        default: return 0.9 + 1.6 * exp(-Double(step) / 50_000) + 0.05 * sin(Double(step) * 0.37)
        }
    }

    /// Stores `steps` of `train/loss` and `train/lr` for run `r`, `perEntry` steps per spool entry
    /// and `perRequest` entries per ingest.
    func fill(_ store: Store, steps: ClosedRange<Int64>, perEntry: Int64 = 50, perRequest: Int = 20, worker: String = "w", firstSequence: UInt64 = 1) throws {
        var seq = firstSequence
        var pending: [SpoolEntry] = []
        var step = steps.lowerBound
        while step <= steps.upperBound {
            let upper = min(step + perEntry - 1, steps.upperBound)
            var points: [MetricPoint] = []
            for s in step...upper {
                points.append(Self.point("r", s, "train/loss", Self.loss(s)))
                points.append(Self.point("r", s, "train/lr", 1e-5 * Double(s % 1000)))
            }
            pending.append(SpoolEntry(sequence: seq, points: points))
            seq += 1
            step = upper + 1
            if pending.count == perRequest {
                _ = try store.ingestSpool(workerId: worker, entries: pending)
                pending = []
            }
        }
        if !pending.isEmpty { _ = try store.ingestSpool(workerId: worker, entries: pending) }
    }

    /// The curve restated from every stored point: the first and last point, then per aligned
    /// bucket the lowest finite and the highest value (non-finite replaces the highest).
    static func restated(_ points: [MetricPoint], bucketing: Store.CurveBucketing) -> [MetricPoint] {
        guard let first = points.first, let last = points.last else { return [] }
        var extremes: [Int: (min: MetricPoint, max: MetricPoint)] = [:]
        for p in points.dropFirst().dropLast() {
            let b = min(bucketing.count - 1, max(0, bucketing.bucket(of: p.step)))
            guard var e = extremes[b] else { extremes[b] = (p, p); continue }
            if p.value.isFinite {
                if !e.min.value.isFinite || p.value < e.min.value { e.min = p }
                if e.max.value.isFinite, p.value > e.max.value { e.max = p }
            } else {
                e.max = p
            }
            extremes[b] = e
        }
        var out = [first]
        for b in extremes.keys.sorted() {
            let e = extremes[b]!
            if e.min.step == e.max.step && e.min.value.bitPattern == e.max.value.bitPattern { out.append(e.min) } else {
                out += e.min.step <= e.max.step ? [e.min, e.max] : [e.max, e.min]
            }
        }
        return out + [last]
    }

    static func same(_ a: [MetricPoint], _ b: [MetricPoint]) -> Bool {
        a.count == b.count && zip(a, b).allSatisfy { $0.step == $1.step && $0.value.bitPattern == $1.value.bitPattern && $0.wallTime == $1.wallTime }
    }

    @Test("a 200,000-step curve from summaries equals the same rule applied to every stored point; spike, NaN, Inf and both ends survive")
    func curveMatchesEveryPoint() throws {
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        try fill(store, steps: 0...199_999)
        while try store.advanceRollups(maxBatches: 50) > 0 {}
        let all = try store.metricSeries(runId: "r", key: "train/loss")
        #expect(all.count == 200_000)
        for limit in [500, 400, 37] {
            let curve = try store.metricCurve(runId: "r", key: "train/loss", limit: limit)
            #expect(curve.count <= limit, "limit \(limit): \(curve.count) points")
            #expect(curve.first?.step == 0 && curve.last?.step == 199_999)
            #expect(curve.map(\.step) == curve.map(\.step).sorted())
            #expect(curve.contains { $0.step == 123_457 && $0.value == 50 }, "the spike")
            #expect(curve.contains { $0.step == 77_777 && $0.value.isNaN }, "the NaN")
            #expect(curve.contains { $0.step == 150_001 && $0.value == .infinity }, "the infinity")
            // The buckets the store chose, restated over every point.
            let buckets = max(1, (limit - 2) / 2)
            var level = 0
            while level < SeriesRollup.levels.count - 1, 200_000.0 / Double(SeriesRollup.levels[level + 1]) >= Double(buckets) { level += 1 }
            let bucketing = Store.CurveBucketing(lo: 0, hi: 199_999, levelWidth: SeriesRollup.levels[level], buckets: buckets)
            #expect(bucketing.count <= buckets && bucketing.count >= buckets / 8)
            #expect(Self.same(curve, Self.restated(all, bucketing: bucketing)), "limit \(limit)")
        }
    }

    @Test("a step range is cut exactly at its ends (finer summaries, then points), and a short range is returned whole")
    func ranges() throws {
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        try fill(store, steps: 0...99_999, perEntry: 7, perRequest: 13)
        try store.advanceRollups()
        for (from, to) in [(Int64(1_003), Int64(98_765)), (70_001, 90_007), (5, 40_000)] {
            let curve = try store.metricCurve(runId: "r", key: "train/loss", fromStep: from, toStep: to, limit: 200)
            let all = try store.metricSeries(runId: "r", key: "train/loss", fromStep: from, toStep: to)
            #expect(curve.first?.step == from && curve.last?.step == to)
            #expect(curve.allSatisfy { (from...to).contains($0.step) })
            let maxPoint = all.filter { $0.value.isFinite }.max { $0.value < $1.value }!
            let minPoint = all.filter { $0.value.isFinite }.min { $0.value < $1.value }!
            #expect(curve.contains { $0.step == maxPoint.step } || all.contains { !$0.value.isFinite })
            #expect(curve.contains { $0.step == minPoint.step })
            #expect(curve.count <= 200)
        }
        let short = try store.metricCurve(runId: "r", key: "train/loss", fromStep: 500, toStep: 520, limit: 200)
        #expect(short.map(\.step) == Array(500...520))
        #expect(try store.metricCurve(runId: "r", key: "train/loss", fromStep: 200_000, limit: 200).isEmpty)
        #expect(try store.metricCurve(runId: "r", key: "no/such", limit: 200).isEmpty)
    }

    @Test("counts and newest points come from the summaries and match the points, duplicates and late points included")
    func countsAndLatest() throws {
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        try fill(store, steps: 1_000...5_000)
        try store.advanceRollups()
        // A second worker re-sends steps 4,000–6,000 (after a partition): 4,000–5,000 are dropped.
        try fill(store, steps: 4_000...6_000, worker: "w2")
        try store.advanceRollups(maxBatches: 1)
        // A late stream fills steps below the first one stored.
        try fill(store, steps: 0...999, worker: "w3")
        let counts = try store.pointCounts(runId: "r")
        #expect(counts == ["train/loss": 6_001, "train/lr": 6_001])
        #expect(try store.metricSeries(runId: "r", key: "train/loss").count == 6_001)
        let latest = try #require(try store.latestPoint(runId: "r", key: "train/loss"))
        #expect(latest.step == 6_000 && latest.value == Self.loss(6_000))
        #expect(try store.latestPoint(runId: "r", key: "nothing") == nil)
        // System samples can share a step: the newest is the last to arrive at the highest step.
        _ = try store.ingestSpool(workerId: "w4", entries: [SpoolEntry(sequence: 1, points: [
            Self.point("r", 10, "system/gpu_util", 1), Self.point("r", 10, "system/gpu_util", 2), Self.point("r", 9, "system/gpu_util", 3)])])
        #expect(try store.latestPoint(runId: "r", key: "system/gpu_util")?.value == 2)
        #expect(try store.pointCounts(runId: "r")["system/gpu_util"] == 3)
        let curve = try store.metricCurve(runId: "r", key: "train/loss", limit: 100)
        #expect(curve.first?.step == 0 && curve.last?.step == 6_000)
    }

    @Test("summaries folded a few batches at a time equal those the migration builds from every batch at once")
    func foldingInStepsEqualsRebuilding() throws {
        let path = dir.appendingPathComponent("c.sqlite").path
        let store = try Store(path: path)
        try fill(store, steps: 0...70_000, perEntry: 100)
        #expect(try store.rollupCursor() == 0)
        var folds = 0
        while try store.advanceRollups(maxBatches: 3) > 0 { folds += 1 }
        #expect(folds > 10)
        let before = try store.pool.read { db in try Row.fetchAll(db, sql: "SELECT series_id, level, bucket, data FROM series_rollups ORDER BY 1, 2, 3") }
        #expect(before.count > 500)
        let cursor = try store.rollupCursor()
        #expect(cursor == (try store.pool.read { db in try Int64.fetchOne(db, sql: "SELECT MAX(id) FROM metric_batches") }))
        // Folding every stored batch in one go from cursor 0 (what happens after the v12
        // migration on a database with points) gives the same rows.
        try store.pool.write { db in
            try db.execute(sql: "DELETE FROM series_rollups")
            try Store.setCursor(db, Store.rollupCursor, 0)
        }
        store.rollupCache.withLock { $0 = SeriesRollupCache() }
        #expect(try store.advanceRollups(maxBatches: 1_000_000) > 0)
        let after = try store.pool.read { db in try Row.fetchAll(db, sql: "SELECT series_id, level, bucket, data FROM series_rollups ORDER BY 1, 2, 3") }
        #expect(after == before)
        #expect(try store.rollupCursor() == cursor)
    }

    @Test("a database of version 13 (summaries from 64 steps) drops them on opening and folds them again at today's levels; curves stay exact meanwhile")
    func migrationToCoarserFinestLevel() throws {
        let path = dir.appendingPathComponent("v13.sqlite").path
        do {
            let queue = try DatabaseQueue(path: path)
            try Store.migrator.migrate(queue, upTo: "v13: the ingest log that consumers (the alert rules, …) read from their cursors")
            try queue.write { db in
                try db.execute(sql: "INSERT INTO series (id, run_id, key) VALUES (1, 'r', 'train/loss')")
                // A summary row of the old finest level (64 steps) and a cursor past the (absent) batches.
                try db.execute(sql: "INSERT INTO series_rollups (series_id, level, bucket, data) VALUES (1, 0, 3, ?)",
                               arguments: [Data(SeriesRollup(.init(step: 200, value: 1, wallTime: 0)).encoded())])
                try db.execute(sql: "INSERT INTO consumer_cursors (name, position, updated_at) VALUES ('rollups', 99, 0)")
            }
        }
        let store = try Store(path: path)
        #expect(try store.schemaVersion() == 15)
        #expect(try store.rollupCursor() == 0)
        #expect(try store.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM series_rollups") } == 0)
        try fill(store, steps: 0...9_999)
        let unfolded = try store.metricCurve(runId: "r", key: "train/loss", limit: 100)
        while try store.advanceRollups(maxBatches: 2) > 0 {}
        #expect(Self.same(unfolded, try store.metricCurve(runId: "r", key: "train/loss", limit: 100)))
        #expect(try store.read { db in try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM series_rollups WHERE level = 0") } == 2 * 40,
                "two series, 10,000 steps in buckets of \(SeriesRollup.levels[0])")
    }

    @Test("curves, counts and newest points are exact and current whatever the summaries' cursor: none, some or all batches folded")
    func exactAtAnyCursor() throws {
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        try fill(store, steps: 0...60_000, perEntry: 40, perRequest: 5)
        // A late stream for steps below and a re-send that dedup drops.
        try fill(store, steps: 60_001...64_000, worker: "w2")
        func snapshot() throws -> (curve: [MetricPoint], ranged: [MetricPoint], counts: [String: Int], latest: MetricPoint?) {
            (try store.metricCurve(runId: "r", key: "train/loss", limit: 300),
             try store.metricCurve(runId: "r", key: "train/loss", fromStep: 12_345, toStep: 61_000, limit: 120),
             try store.pointCounts(runId: "r"), try store.latestPoint(runId: "r", key: "train/loss"))
        }
        let none = try snapshot()
        #expect(none.counts == ["train/loss": 64_001, "train/lr": 64_001])
        #expect(none.latest?.step == 64_000)
        try store.advanceRollups(maxBatches: 40)
        let some = try snapshot()
        while try store.advanceRollups() > 0 {}
        let all = try snapshot()
        for s in [none, some] {
            #expect(s.counts == all.counts && s.latest == all.latest)
            #expect(s.curve.count <= 300 && s.ranged.count <= 120)
            #expect(s.curve.first?.step == 0 && s.curve.last?.step == 64_000)
            #expect(s.ranged.first?.step == 12_345 && s.ranged.last?.step == 61_000)
        }
        // Whatever is folded, the series' extremes are on the curve.
        let points = try store.metricSeries(runId: "r", key: "train/loss")
        let lowest = points.min { $0.value < $1.value }!, highest = points.max { $0.value < $1.value }!
        for s in [none, some, all] {
            #expect(s.curve.contains { $0.step == lowest.step && $0.value == lowest.value })
            #expect(s.curve.contains { $0.step == highest.step && $0.value == highest.value })
        }
        // Folded, the curve is the rule restated over every point, in the store's buckets.
        let buckets = (300 - 2) / 2
        var level = 0
        while level < SeriesRollup.levels.count - 1, 64_001.0 / Double(SeriesRollup.levels[level + 1]) >= Double(buckets) { level += 1 }
        let bucketing = Store.CurveBucketing(lo: 0, hi: 64_000, levelWidth: SeriesRollup.levels[level], buckets: buckets)
        #expect(Self.same(all.curve, Self.restated(points, bucketing: bucketing)))
        #expect(Self.same(some.curve, all.curve), "summaries plus points not yet folded give the same curve")
    }

    @Test("a summary round-trips its 104 bytes, NaN payloads included; a damaged row is a StoreError")
    func encoding() throws {
        var r = SeriesRollup(.init(step: 5, value: 1.5, wallTime: 10))
        r.add(.init(step: 3, value: Double(bitPattern: 0x7FF8_0000_0000_0042), wallTime: 11))
        r.add(.init(step: 9, value: -2, wallTime: 12))
        #expect(r.count == 3 && r.first.step == 3 && r.last.step == 9 && r.min.value == -2 && r.max.value.isNaN)
        let back = try SeriesRollup(decoding: r.encoded())
        #expect(back == r && back.max.value.bitPattern == 0x7FF8_0000_0000_0042)
        #expect(throws: StoreError.self) { try SeriesRollup(decoding: Array(r.encoded().dropLast())) }
    }
}
