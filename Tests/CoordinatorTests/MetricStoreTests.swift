import Foundation
import GRDB
import Testing
@testable import Coordinator
@testable import Shared

/// Metric points in the store: one row per run per spool entry, read back exactly.
@Suite("Metric store")
struct MetricStoreTests {
    let dir: URL

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-metrics-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }

    func point(_ run: String, _ step: Int64, _ key: String, _ value: Double) -> MetricPoint {
        MetricPoint(runId: run, step: step, key: key, value: value, wallTime: 1_700_000_000 + Double(step))
    }

    @Test("a batch round-trips every point exactly: order, keys, steps going back, NaN and ±Inf bits")
    func batchRoundTrip() throws {
        let nan = Double(bitPattern: 0x7FF8_0000_0000_0123)
        let points = [point("r", 10, "train/loss", 2.5), point("r", 10, "train/lr", 1e-5), point("r", 11, "train/loss", nan),
                      point("r", 5, "eval/cer", .infinity), point("r", 12, "train/loss", -.infinity), point("r", -3, "x", -0.0)]
        let batch = PointBatch(points: points)
        #expect(batch.keys == ["train/loss", "train/lr", "eval/cer", "x"])
        let back = try PointBatch(decoding: batch.encoded())
        #expect(back.keys == batch.keys && back.keyIndex == batch.keyIndex && back.wallTimes == batch.wallTimes)
        #expect(back.values.map(\.bitPattern) == points.map(\.value.bitPattern))
        #expect(back.steps == [10, 10, 11, 5, 12, -3])
        #expect(batch.extents[0] == PointBatch.KeyExtent(minStep: 10, maxStep: 12, count: 3))
    }

    @Test("a damaged batch is refused with an error that says what to do, never a crash")
    func damagedBatch() {
        let bytes = PointBatch(points: [point("r", 1, "k", 1)]).encoded()
        for cut in 0..<bytes.count {
            #expect(throws: StoreError.self) { try PointBatch(decoding: Array(bytes[0..<cut])) }
        }
        var wrongVersion = bytes
        wrongVersion[0] = 9
        #expect { try PointBatch(decoding: wrongVersion) } throws: { ($0 as? StoreError)?.message.contains("version 9") == true }
    }

    @Test("series queries return one key in step order within the range; counts add up per key; duplicates are ignored")
    func seriesQueries() throws {
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        var first: [MetricPoint] = []
        for s in Int64(0)..<100 {
            first.append(point("a", s, "train/loss", Double(s)))
            first.append(point("a", s, "train/lr", 0.1))
        }
        let e1 = SpoolEntry(sequence: 1, points: first)
        // One entry with points of two runs and a late point.
        let e2 = SpoolEntry(sequence: 2, points: [point("a", 100, "train/loss", 100), point("b", 0, "train/loss", 7), point("a", 50, "eval/cer", 0.2)])
        #expect(try store.ingestSpool(workerId: "w", entries: [e1, e2]).storedPoints == 203)
        #expect(try store.ingestSpool(workerId: "w", entries: [e2]).storedEntries == 0)
        let loss = try store.metricSeries(runId: "a", key: "train/loss")
        #expect(loss.map(\.step) == Array(0...100))
        #expect(loss.map(\.value) == (0...100).map(Double.init))
        #expect(try store.metricSeries(runId: "a", key: "train/loss", fromStep: 40, toStep: 42).map(\.step) == [40, 41, 42])
        #expect(try store.metricSeries(runId: "b", key: "train/loss").map(\.value) == [7])
        #expect(try store.metricSeries(runId: "a", key: "nope").isEmpty)
        #expect(try store.pointCounts(runId: "a") == ["train/loss": 101, "train/lr": 100, "eval/cer": 1])
    }

    @Test("one point per run, key and step: a second stream of the same run (a partitioned worker's late spool) fills the steps nobody stored and doubles none; repeats inside one request count once; system metrics keep every sample")
    func onePointPerStep() throws {
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        func entry(_ seq: UInt64, _ steps: ClosedRange<Int64>, value: Double = 1, extra: [MetricPoint] = []) -> SpoolEntry {
            SpoolEntry(sequence: seq, points: steps.map { point("a", $0, "train/loss", value) } + extra)
        }
        // The run's current attempt: steps 1...50, then (resumed from a checkpoint) 101...150.
        _ = try store.ingestSpool(workerId: "local", entries: [entry(1, 1...50), entry(2, 101...150)])
        // The cut-off worker's spool arrives late: 1...150 again, with other values.
        let late = try store.ingestSpool(workerId: "remote", entries: [entry(1, 1...100, value: 2), entry(2, 101...150, value: 2)])
        #expect(late.storedEntries == 2 && late.highWater == 2, "both entries are acknowledged")
        #expect(late.storedPoints == 50 && late.duplicatePoints == 100)
        #expect(late.stored.flatMap(\.points).map(\.step) == Array(51...100), "what the rules and outboxes are told about")
        let series = try store.metricSeries(runId: "a", key: "train/loss")
        #expect(series.map(\.step) == Array(1...150))
        #expect(series.filter { $0.value == 2 }.map(\.step) == Array(51...100), "the first stored point of a step stays")
        // Repeats within one request, and system metrics sampled twice at one step.
        let gpu = [point("a", 150, "system/gpu.0.gpu", 90), point("a", 150, "system/gpu.0.gpu", 91)]
        let mixed = try store.ingestSpool(workerId: "local", entries: [entry(3, 151...152, extra: gpu), entry(4, 152...153)])
        #expect(mixed.storedPoints == 5 && mixed.duplicatePoints == 1)
        #expect(try store.metricSeries(runId: "a", key: "train/loss").map(\.step) == Array(1...153))
        #expect(try store.metricSeries(runId: "a", key: "system/gpu.0.gpu").map(\.value) == [90, 91])
        // A request whose every point is already stored is still acknowledged (nothing stored).
        let again = try store.ingestSpool(workerId: "third", entries: [entry(1, 140...153)])
        #expect(again.highWater == 1 && again.storedPoints == 0 && again.duplicatePoints == 14)
        #expect(try store.pointCounts(runId: "a") == ["train/loss": 153, "system/gpu.0.gpu": 2])
    }

    @Test("reading after a cursor continues mid-batch, in arrival order, at most the limit, with consecutive sequences")
    func pointsAfterCursor() throws {
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        var entries: [SpoolEntry] = []
        for seq in 1...5 {
            let steps: [Int64] = (0..<10).map { Int64(seq * 10 + $0) }
            entries.append(SpoolEntry(sequence: UInt64(seq), points: steps.map { point("a", $0, "k", Double($0)) }))
        }
        _ = try store.ingestSpool(workerId: "w", entries: entries)
        let all = try store.pointsAfter(runId: "a", cursor: 0, limit: 1_000)
        #expect(all.count == 50)
        #expect(all.map(\.seq) == Array(all[0].seq..<(all[0].seq + 50)))
        let from = all[14].seq
        let next = try store.pointsAfter(runId: "a", cursor: from, limit: 12)
        #expect(next.map(\.seq) == Array((from + 1)...(from + 12)))
        #expect(next.map(\.step) == Array(all[15..<27].map(\.step)))
        #expect(try store.pointsAfter(runId: "a", cursor: all.last!.seq, limit: 10).isEmpty)
    }

    @Test("a database of version 5 keeps its points, with their ingest sequences, when it moves to batches")
    func migrationFromPointRows() throws {
        let path = dir.appendingPathComponent("old.sqlite").path
        do {
            let queue = try DatabaseQueue(path: path)
            try Store.migrator.migrate(queue, upTo: "v5: W&B online stream offsets")
            try queue.write { db in
                try db.execute(sql: "INSERT INTO series (id, run_id, key) VALUES (1, 'a', 'loss'), (2, 'b', 'loss'), (3, 'a', 'lr')")
                // Interleaved arrival: a, a, b, a (gap in a's sequences at 3), a.
                for (seq, sid, step, value) in [(1, 1, 0, 1.0), (2, 3, 0, 0.5), (3, 2, 0, 9.0), (4, 1, 1, Double.nan), (5, 1, 2, 3.0)] as [(Int64, Int64, Int64, Double)] {
                    try db.execute(sql: "INSERT INTO points (series_id, step, ingest_seq, value_bits, wall_time) VALUES (?, ?, ?, ?, 0)",
                                   arguments: [sid, step, seq, Int64(bitPattern: value.bitPattern)])
                }
            }
        }
        let store = try Store(path: path)
        #expect(try store.schemaVersion() == 15)
        let a = try store.pointsAfter(runId: "a", cursor: 0, limit: 100)
        #expect(a.map(\.seq) == [1, 2, 4, 5])
        #expect(a.map(\.key) == ["loss", "lr", "loss", "loss"])
        #expect(a[2].value.isNaN)
        #expect(try store.pointsAfter(runId: "b", cursor: 0, limit: 100).map(\.seq) == [3])
        #expect(try store.pointCounts(runId: "a") == ["loss": 3, "lr": 1])
        // The migration's own (frozen) encoder writes what the batch encoding of today writes.
        let stored = try store.read { db in try Data.fetchAll(db, sql: "SELECT data FROM metric_batches WHERE run_id = 'a' ORDER BY id") }
        #expect(stored.map { Array($0) } == [
            PointBatch(points: [MetricPoint(runId: "a", step: 0, key: "loss", value: 1, wallTime: 0),
                                MetricPoint(runId: "a", step: 0, key: "lr", value: 0.5, wallTime: 0)]).encoded(),
            PointBatch(points: [MetricPoint(runId: "a", step: 1, key: "loss", value: .nan, wallTime: 0),
                                MetricPoint(runId: "a", step: 2, key: "loss", value: 3, wallTime: 0)]).encoded(),
        ])
        // New points continue after the highest old sequence.
        _ = try store.ingestSpool(workerId: "w", entries: [SpoolEntry(sequence: 1, points: [point("a", 3, "loss", 4)])])
        #expect(try store.pointsAfter(runId: "a", cursor: 5, limit: 10).map(\.seq) == [6])
    }
}

/// Store failures are typed: a code callers can act on and a message for the operator.
@Suite("Store errors")
struct StoreErrorTests {
    @Test("SQLite's failures are classified by code, each message naming the file or directory and what to do")
    func classification() {
        let path = "/var/lib/tts/coordinator.sqlite"
        let cases: [(ResultCode, StoreError.Code, String)] = [
            (.SQLITE_FULL, .volumeFull, "/var/lib/tts"), (.SQLITE_BUSY, .busy, path), (.SQLITE_CORRUPT, .damaged, "restore"),
            (.SQLITE_READONLY, .readOnly, "permissions"), (.SQLITE_CONSTRAINT, .invalidInput, "refused"), (.SQLITE_IOERR, .failed, path),
        ]
        for (sqlite, code, mention) in cases {
            let e = StoreError(classifying: DatabaseError(resultCode: sqlite, message: "x"), databasePath: path)
            #expect(e.code == code, "\(sqlite)")
            #expect(e.message.contains(mention), "\(e.message)")
        }
        let same = StoreError(.damaged, "already typed")
        #expect(StoreError(classifying: same, databasePath: path) == same)
        #expect(Store.isVolumeFull(StoreError(classifying: DatabaseError(resultCode: .SQLITE_FULL), databasePath: path)))
    }

    @Test("a file that is not a database cannot be opened: cannotOpen, naming the file")
    func notADatabase() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-storeerr-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent("c.sqlite").path
        try Data(repeating: 0x5A, count: 8192).write(to: URL(fileURLWithPath: path))
        #expect { try Store(path: path) } throws: { e in
            guard let e = e as? StoreError else { return false }
            return e.code == .cannotOpen && e.message.contains(path)
        }
    }

    @Test("errors from store operations arrive typed, and a refused request stays a protocol error")
    func operationsThrowTypedErrors() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-storeerr-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        #expect(throws: ProtocolError.self) {
            try store.ingest(workerId: "nobody", session: 42, sequence: 1, .event(EventRequest(kind: .log, shard: nil, message: "x", wallTime: 0)))
        }
        // A damaged batch row surfaces as a typed `damaged` error from a query.
        _ = try store.ingestSpool(workerId: "w", entries: [SpoolEntry(sequence: 1, points: [MetricPoint(runId: "r", step: 1, key: "k", value: 1, wallTime: 0)])])
        try store.pool.write { db in try db.execute(sql: "UPDATE metric_batches SET data = x'0102'") }
        #expect { try store.metricSeries(runId: "r", key: "k") } throws: { ($0 as? StoreError)?.code == .damaged }
    }
}
