import Foundation
import GRDB

/// Accumulates the ``SeriesRollup`` rows that stored points change, then merges them into
/// `series_rollups` in one pass.
///
/// Points are summarised at the finest level one at a time, in arrival order; each coarser level
/// is built from the level below it (a trainer logs steps in order, so a run of points falls into
/// one bucket after another and each level costs a handful of merges, not a pass over the points).
struct SeriesRollupBuilder {
    private struct Slot: Hashable {
        var series: Int64
        var level: Int
        var bucket: Int64
    }

    /// Per series: the finest level's summaries in arrival order (a bucket may appear again when
    /// steps go back, e.g. a late stream).
    private var finest: [Int64: [(bucket: Int64, rollup: SeriesRollup)]] = [:]
    private var order: [Int64] = []

    var isEmpty: Bool { finest.isEmpty }

    /// Adds one point of series `series` (call in arrival order).
    mutating func add(series: Int64, step: Int64, value: Double, wallTime: Double) {
        let sample = SeriesRollup.Sample(step: step, value: value, wallTime: wallTime)
        let bucket = SeriesRollup.bucket(step, width: SeriesRollup.levels[0])
        if var list = finest[series] {
            finest[series] = nil // keep the array uniquely referenced while it is changed
            if list[list.count - 1].bucket == bucket {
                list[list.count - 1].rollup.add(sample)
            } else {
                list.append((bucket, SeriesRollup(sample)))
            }
            finest[series] = list
        } else {
            finest[series] = [(bucket, SeriesRollup(sample))]
            order.append(series)
        }
    }

    /// Adds every point of `batch`; `seriesIds[k]` is the series of `batch.keys[k]`.
    mutating func add(_ batch: PointBatch, seriesIds: [Int64]) {
        for i in 0..<batch.count {
            add(series: seriesIds[Int(batch.keyIndex[i])], step: batch.steps[i], value: batch.values[i], wallTime: batch.wallTimes[i])
        }
    }

    /// The summaries of every level, per (series, level, bucket), each merged in arrival order.
    private func summaries() -> [(slot: Slot, rollup: SeriesRollup)] {
        var out: [(slot: Slot, rollup: SeriesRollup)] = []
        for series in order {
            var level = finest[series] ?? []
            for (l, width) in SeriesRollup.levels.enumerated() {
                if l > 0 {
                    // Coarser: consecutive entries of the level below that share a bucket merge.
                    var next: [(bucket: Int64, rollup: SeriesRollup)] = []
                    for entry in level {
                        let b = SeriesRollup.bucket(entry.rollup.first.step, width: width)
                        if let lastIndex = next.indices.last, next[lastIndex].bucket == b {
                            next[lastIndex].rollup.merge(entry.rollup)
                        } else {
                            next.append((b, entry.rollup))
                        }
                    }
                    level = next
                }
                // Entries of one bucket that are not adjacent (steps went back) merge here.
                var index: [Int64: Int] = [:]
                var merged: [(bucket: Int64, rollup: SeriesRollup)] = []
                for entry in level {
                    if let i = index[entry.bucket] { merged[i].rollup.merge(entry.rollup) } else {
                        index[entry.bucket] = merged.count
                        merged.append(entry)
                    }
                }
                out += merged.map { (Slot(series: series, level: l, bucket: $0.bucket), $0.rollup) }
            }
        }
        return out
    }

    /// Merges the accumulated summaries into `series_rollups` (after what is stored: these points
    /// arrived later).
    func write(_ db: Database) throws {
        guard !finest.isEmpty else { return }
        let read = try db.cachedStatement(sql: "SELECT data FROM series_rollups WHERE series_id = ? AND level = ? AND bucket = ?")
        let write = try db.cachedStatement(sql: "INSERT OR REPLACE INTO series_rollups (series_id, level, bucket, data) VALUES (?, ?, ?, ?)")
        for (slot, rollup) in summaries() {
            var row = rollup
            if let stored = try Data.fetchOne(read, arguments: [slot.series, slot.level, slot.bucket]) {
                row = try SeriesRollup(decoding: Array(stored))
                row.merge(rollup)
            }
            try write.execute(arguments: [slot.series, slot.level, slot.bucket, Data(row.encoded())])
        }
    }
}
