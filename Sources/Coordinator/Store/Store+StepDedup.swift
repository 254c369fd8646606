import Foundation
import GRDB
import Shared

/// One point per run, key and step.
///
/// Spool sequences make each worker's stream exactly-once, but two workers can log the same
/// steps of one run: after a network partition the cut-off worker trained on (the issue's
/// "it keeps training, spools, reconnects, delivers everything") while the run resumed elsewhere
/// from a checkpoint, and both streams arrive. The store keeps the first point it stored for a
/// (run, key, step) and drops later ones, so a late stream fills the steps nobody else logged
/// (e.g. the steps before the checkpoint the resumed attempt started from) and doubles nothing.
///
/// System metrics (`system/…`) are samples over wall time filed under the step the trainer was
/// at, so several can share a step: they are all kept.
extension Store {
    /// The mask of `batch`'s points to keep (nil: keep all, the usual case), given what the run
    /// already has stored.
    ///
    /// Cost: one indexed look-up of the highest stored step per key; a key whose points in this
    /// batch all lie above it and increase needs nothing more. Only the other keys (late or
    /// repeated steps) read the stored batches that overlap their step range.
    static func keepMask(_ db: Database, run: String, batch: PointBatch, seriesId: (Database, String) throws -> Int64) throws -> [Bool]? {
        let n = batch.keys.count
        var first = [Int64](repeating: .max, count: n)
        var last = [Int64](repeating: .min, count: n)
        var increasing = [Bool](repeating: true, count: n)
        for i in 0..<batch.count {
            let k = Int(batch.keyIndex[i]), s = batch.steps[i]
            if s <= last[k] { increasing[k] = false }
            last[k] = max(last[k], s)
            first[k] = min(first[k], s)
        }
        var slow: [Int] = []
        var stored: [Int: Set<Int64>] = [:]
        for k in 0..<n where !batch.keys[k].hasPrefix(MetricPoint.systemPrefix) {
            let sid = try seriesId(db, batch.keys[k])
            let highest = try Int64.fetchOne(db, sql: "SELECT MAX(max_step) FROM series_batches WHERE series_id = ?", arguments: [sid])
            if increasing[k], highest.map({ first[k] > $0 }) ?? true { continue }
            slow.append(k)
            stored[k] = try storedSteps(db, seriesId: sid, key: batch.keys[k], from: first[k], to: last[k])
        }
        guard !slow.isEmpty else { return nil }
        var keep = [Bool](repeating: true, count: batch.count)
        var seen = stored
        var dropped = 0
        for i in 0..<batch.count {
            let k = Int(batch.keyIndex[i])
            guard seen[k] != nil else { continue }
            if seen[k]!.insert(batch.steps[i]).inserted { continue }
            keep[i] = false
            dropped += 1
        }
        return dropped == 0 ? nil : keep
    }

    /// The steps of one series stored within `[from, to]`.
    static func storedSteps(_ db: Database, seriesId: Int64, key: String, from: Int64, to: Int64) throws -> Set<Int64> {
        var out = Set<Int64>()
        let rows = try Row.fetchCursor(db, sql: """
            SELECT b.data FROM series_batches sb JOIN metric_batches b ON b.id = sb.batch_id
            WHERE sb.series_id = ? AND sb.max_step >= ? AND sb.min_step <= ?
            """, arguments: [seriesId, from, to])
        while let row = try rows.next() {
            let batch = try PointBatch(decoding: Array(row[0] as Data))
            guard let k = batch.keys.firstIndex(of: key).map(UInt32.init) else { continue }
            for i in 0..<batch.count where batch.keyIndex[i] == k && batch.steps[i] >= from && batch.steps[i] <= to {
                out.insert(batch.steps[i])
            }
        }
        return out
    }
}
