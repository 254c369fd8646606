import Foundation
import GRDB
import Testing
@testable import Coordinator
@testable import Shared

/// The decoded batches ingest committed last are handed to the consumers that read them next;
/// the database stays the truth: what a consumer reads is the same with or without them.
@Suite("Recently stored batches")
struct RecentBatchesTests {
    let dir: URL

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-recent-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    static func entries(run: String, steps: ClosedRange<Int64>, from sequence: UInt64) -> [SpoolEntry] {
        steps.enumerated().map { i, s in
            SpoolEntry(sequence: sequence + UInt64(i), points: [
                MetricPoint(runId: run, step: s, key: "train/loss", value: 1 / Double(s + 1), wallTime: 1_700_000_000 + Double(s)),
                MetricPoint(runId: run, step: s, key: "train/lr", value: s == 7 ? .nan : 1e-4, wallTime: 1_700_000_000 + Double(s)),
            ])
        }
    }

    /// Every stored batch, decoded from its row.
    static func rows(_ store: Store) throws -> [Int64: PointBatch] {
        try store.pool.read { db in
            var out: [Int64: PointBatch] = [:]
            for row in try Row.fetchAll(db, sql: "SELECT id, data FROM metric_batches") {
                out[row[0]] = try PointBatch(decoding: Array(row[1] as Data))
            }
            return out
        }
    }

    @Test("the ingest log's batches, the summaries and the W&B reader see the same points whether they come from the held batches or from the rows")
    func sameAnswersWithAndWithoutTheHeldBatches() throws {
        let path = dir.appendingPathComponent("c.sqlite").path
        let writer = try Store(path: path)
        _ = try writer.ingestSpool(workerId: "w", entries: Self.entries(run: "a", steps: 0...299, from: 1))
        _ = try writer.ingestSpool(workerId: "w", entries: Self.entries(run: "b", steps: 0...99, from: 301)
                                    + Self.entries(run: "a", steps: 250...400, from: 401)) // 250–299 of a are dropped as repeats
        let stored = try Self.rows(writer)
        #expect(stored.count == 3)
        #expect(writer.recentBatches.withLock { $0.heldPoints } == stored.values.reduce(0) { $0 + $1.count })

        // A second store on the same file holds nothing: it reads every row.
        let cold = try Store(path: path)
        let warmLog = try writer.ingestLog(after: 0, limit: 100)
        let coldLog = try cold.ingestLog(after: 0, limit: 100)
        func batches(_ chunk: Store.IngestLogChunk) -> [PointBatch] {
            chunk.entries.compactMap { if case .points(let b) = $0.fact { b } else { nil } }
        }
        #expect(batches(warmLog).count == 3)
        // (Compared as stored bytes: a NaN is not == itself.)
        #expect(batches(warmLog).map { $0.encoded() } == batches(coldLog).map { $0.encoded() }, "same batches from memory and from the rows")
        #expect(Set(batches(warmLog).map(\.count)) == Set(stored.values.map(\.count)))
        #expect(writer.recentBatches.withLock { $0.hits } >= 3, "the writer's own consumers were served from memory")
        #expect(cold.recentBatches.withLock { $0.hits } == 0)

        let warmPoints = try writer.pointsAfter(runId: "a", cursor: 100, limit: 1_000), coldPoints = try cold.pointsAfter(runId: "a", cursor: 100, limit: 1_000)
        #expect(warmPoints.map(\.seq) == coldPoints.map(\.seq) && zip(warmPoints, coldPoints).allSatisfy { $0.value.bitPattern == $1.value.bitPattern && $0.step == $1.step })
        #expect(try writer.pointsAfter(runId: "a", cursor: 100, limit: 1_000).count == 500 + 202, "steps 50–299 and 300–400 of a, two keys each")

        while try writer.advanceRollups(maxBatches: 1) > 0 {}
        let warmCurve = try writer.metricCurve(runId: "a", key: "train/loss", limit: 40)
        try cold.pool.write { db in
            try db.execute(sql: "DELETE FROM series_rollups")
            try Store.setCursor(db, Store.rollupCursor, 0)
        }
        while try cold.advanceRollups(maxBatches: 1) > 0 {}
        #expect(warmCurve.count == 40)
        #expect(SeriesRollupTests.same(warmCurve, try cold.metricCurve(runId: "a", key: "train/loss", limit: 40)))
    }

    @Test("a held batch is only used for the row it was stored as: another first sequence is a miss")
    func heldBatchMustMatchItsRow() {
        var held = RecentBatches()
        let batch = PointBatch(points: [MetricPoint(runId: "r", step: 1, key: "k", value: 2, wallTime: 3)])
        held.insert([.init(id: 5, firstSeq: 10, batch: batch, storedAt: 100)])
        #expect(held.batch(id: 5, firstSeq: 10) == batch)
        #expect(held.batch(id: 5, firstSeq: nil) == batch)
        #expect(held.batch(id: 5, firstSeq: 11) == nil)
        #expect(held.batch(id: 6, firstSeq: nil) == nil)
        #expect(held.hits == 2 && held.misses == 2)
    }

    @Test("the held batches are bounded by points and by age, oldest first")
    func bounded() {
        var held = RecentBatches()
        let big = PointBatch(points: (0..<Int64(RecentBatches.pointLimit / 4)).map { MetricPoint(runId: "r", step: $0, key: "k", value: 0, wallTime: 0) })
        for id in Int64(1)...5 { held.insert([.init(id: id, firstSeq: id * 1_000_000, batch: big, storedAt: 100)]) }
        #expect(held.heldPoints == RecentBatches.pointLimit)
        #expect(held.batch(id: 1, firstSeq: nil) == nil, "the oldest went when the fifth came")
        #expect(held.batch(id: 2, firstSeq: nil) != nil && held.batch(id: 5, firstSeq: nil) != nil)
        let small = PointBatch(points: [MetricPoint(runId: "r", step: 1, key: "k", value: 0, wallTime: 0)])
        held.insert([.init(id: 6, firstSeq: 9, batch: small, storedAt: 100 + RecentBatches.maxAge + 1)])
        #expect(held.heldPoints == 1, "older than the age bound: gone")
        #expect(held.batch(id: 6, firstSeq: 9) == small)
    }
}
