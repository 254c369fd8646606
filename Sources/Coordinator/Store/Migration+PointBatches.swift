import Foundation
import GRDB

// Migration v6 ("metric points stored per batch"), self-contained: it writes the batch encoding
// (version 1) and the index rows as they were when v6 was written, with its own encoder, so later
// changes to `PointBatch` or to the ingest path cannot change what this migration does to an old
// database. Do not change this file: it freezes the format as of v6.

extension Store {
    /// Moves the points of a v5 database into batches, keeping their ingest sequences (W&B
    /// cursors refer to them): consecutive sequences of one run form a batch (10,000 points at most).
    static func migrateV6PointsIntoBatches(_ db: Database) throws {
        let rows = try Row.fetchCursor(db, sql: """
            SELECT p.ingest_seq, s.run_id, s.key, p.step, p.value_bits, p.wall_time
            FROM points p JOIN series s ON s.id = p.series_id ORDER BY p.ingest_seq
            """)
        var pending = V6Batch()
        var run = ""
        var first: Int64 = 0
        var last: Int64 = 0
        func flush() throws {
            guard pending.count > 0 else { return }
            try pending.insert(db, run: run, firstSeq: first)
            pending = V6Batch()
        }
        while let r = try rows.next() {
            let seq: Int64 = r[0]
            let pointRun: String = r[1]
            if pending.count > 0, run != pointRun || seq != last + 1 || pending.count >= 10_000 { try flush() }
            if pending.count == 0 { first = seq; run = pointRun }
            pending.append(key: r[2], step: r[3], valueBits: UInt64(bitPattern: r[4] as Int64), wallTime: r[5])
            last = seq
        }
        try flush()
    }
}

/// A batch of one run's points in the v6 encoding (version 1), all integers LEB128 varints
/// unless noted: `version (u8 = 1) · key count · keys (length + UTF-8) · point count · per point:
/// key index · step delta from the previous point (zigzag) · value bits (8 bytes LE) · wall time
/// bits (8 bytes LE)`.
private struct V6Batch {
    var keys: [String] = []
    var index: [String: Int] = [:]
    var keyIndex: [Int] = []
    var steps: [Int64] = []
    var valueBits: [UInt64] = []
    var wallTimes: [Double] = []

    var count: Int { steps.count }

    mutating func append(key: String, step: Int64, valueBits bits: UInt64, wallTime: Double) {
        let i: Int
        if let known = index[key] { i = known } else {
            i = keys.count
            index[key] = i
            keys.append(key)
        }
        keyIndex.append(i)
        steps.append(step)
        valueBits.append(bits)
        wallTimes.append(wallTime)
    }

    func encoded() -> [UInt8] {
        var out: [UInt8] = [1]
        func varint(_ v: UInt64) {
            var v = v
            while v >= 0x80 {
                out.append(UInt8(v & 0x7F) | 0x80)
                v >>= 7
            }
            out.append(UInt8(v))
        }
        func fixed64(_ v: UInt64) {
            for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8((v >> UInt64(shift)) & 0xFF)) }
        }
        varint(UInt64(keys.count))
        for k in keys {
            let utf8 = Array(k.utf8)
            varint(UInt64(utf8.count))
            out += utf8
        }
        varint(UInt64(count))
        var previous: Int64 = 0
        for i in 0..<count {
            varint(UInt64(keyIndex[i]))
            let delta = steps[i] &- previous
            varint(UInt64(bitPattern: (delta << 1) ^ (delta >> 63)))
            previous = steps[i]
            fixed64(valueBits[i])
            fixed64(wallTimes[i].bitPattern)
        }
        return out
    }

    /// Inserts the batch row and its per-key index rows (creating series as needed).
    func insert(_ db: Database, run: String, firstSeq: Int64) throws {
        try db.execute(sql: "INSERT INTO metric_batches (run_id, first_seq, point_count, min_step, max_step, data) VALUES (?, ?, ?, ?, ?, ?)",
                       arguments: [run, firstSeq, count, steps.min() ?? 0, steps.max() ?? 0, Data(encoded())])
        let batchId = db.lastInsertedRowID
        for (k, key) in keys.enumerated() {
            var minStep = Int64.max, maxStep = Int64.min, n = 0
            for i in 0..<count where keyIndex[i] == k {
                minStep = min(minStep, steps[i])
                maxStep = max(maxStep, steps[i])
                n += 1
            }
            try db.execute(sql: "INSERT OR IGNORE INTO series (run_id, key) VALUES (?, ?)", arguments: [run, key])
            let seriesId = try Int64.fetchOne(db, sql: "SELECT id FROM series WHERE run_id = ? AND key = ?", arguments: [run, key])!
            try db.execute(sql: "INSERT INTO series_batches (series_id, batch_id, min_step, max_step, point_count) VALUES (?, ?, ?, ?, ?)",
                           arguments: [seriesId, batchId, minStep, maxStep, n])
        }
    }
}
