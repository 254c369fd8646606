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

    /// Per series (by slot): the finest level's summaries in arrival order (a bucket may appear
    /// again when steps go back, e.g. a late stream).
    private var finest: [[(bucket: Int64, rollup: SeriesRollup)]] = []
    private var order: [Int64] = []
    private var slotOf: [Int64: Int] = [:]

    var isEmpty: Bool { order.isEmpty }

    private mutating func slot(_ series: Int64) -> Int {
        if let s = slotOf[series] { return s }
        slotOf[series] = order.count
        order.append(series)
        finest.append([])
        return order.count - 1
    }

    private mutating func add(slot s: Int, step: Int64, value: Double, wallTime: Double) {
        let sample = SeriesRollup.Sample(step: step, value: value, wallTime: wallTime)
        let bucket = SeriesRollup.bucket(step, width: SeriesRollup.levels[0])
        let n = finest[s].count
        if n > 0, finest[s][n - 1].bucket == bucket {
            finest[s][n - 1].rollup.add(sample)
        } else {
            finest[s].append((bucket, SeriesRollup(sample)))
        }
    }

    /// Adds one point of series `series` (call in arrival order).
    mutating func add(series: Int64, step: Int64, value: Double, wallTime: Double) {
        add(slot: slot(series), step: step, value: value, wallTime: wallTime)
    }

    /// Adds every point of `batch`; `seriesIds[k]` is the series of `batch.keys[k]`.
    mutating func add(_ batch: PointBatch, seriesIds: [Int64]) {
        var slots: [Int] = []
        slots.reserveCapacity(seriesIds.count)
        for id in seriesIds { slots.append(slot(id)) }
        for i in 0..<batch.count {
            add(slot: slots[Int(batch.keyIndex[i])], step: batch.steps[i], value: batch.values[i], wallTime: batch.wallTimes[i])
        }
    }

    /// The summaries of every level, per (series, level, bucket), each merged in arrival order.
    private func summaries() -> [(slot: Slot, rollup: SeriesRollup)] {
        var out: [(slot: Slot, rollup: SeriesRollup)] = []
        for (slot, series) in order.enumerated() {
            var level = finest[slot]
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
    /// arrived later). `cache` holds, per (series, level), the highest bucket stored and its row
    /// as written: a bucket above it is new (inserted without a read), the highest one merges
    /// with the cached row, only a bucket below (a late point) is read back. The caller drops the
    /// cache if the transaction does not commit.
    func write(_ db: Database, cache: inout SeriesRollupCache) throws {
        guard !order.isEmpty else { return }
        let read = try db.cachedStatement(sql: "SELECT data FROM series_rollups WHERE series_id = ? AND level = ? AND bucket = ?")
        let write = try db.cachedStatement(sql: "INSERT OR REPLACE INTO series_rollups (series_id, level, bucket, data) VALUES (?, ?, ?, ?)")
        for (slot, rollup) in summaries() {
            let key = SeriesRollupCache.Key(series: slot.series, level: slot.level)
            var row = rollup
            if let top = cache.top[key], slot.bucket > top.bucket {
                // New bucket: nothing stored there.
            } else if let top = cache.top[key], slot.bucket == top.bucket {
                row = top.row
                row.merge(rollup)
            } else if let stored = try Data.fetchOne(read, arguments: [slot.series, slot.level, slot.bucket]) {
                row = try SeriesRollup(decoding: Array(stored))
                row.merge(rollup)
            }
            try write.execute(arguments: [slot.series, slot.level, slot.bucket, Data(row.encoded())])
            let isTop: Bool
            if let top = cache.top[key] { isTop = slot.bucket >= top.bucket } else { isTop = try Self.isTopBucket(db, key, slot.bucket) }
            if isTop {
                cache.top[key] = (slot.bucket, row)
            }
        }
    }

    /// Whether `bucket` is the highest stored bucket of the series and level (to seed the cache).
    private static func isTopBucket(_ db: Database, _ key: SeriesRollupCache.Key, _ bucket: Int64) throws -> Bool {
        let top = try Int64.fetchOne(db, sql: "SELECT MAX(bucket) FROM series_rollups WHERE series_id = ? AND level = ?", arguments: [key.series, key.level])
        return top == bucket
    }
}

/// The highest stored bucket of each (series, level) and its row, kept by the one writer of the
/// summaries between its transactions (see ``SeriesRollupBuilder/write(_:cache:)``).
struct SeriesRollupCache: Sendable {
    struct Key: Hashable, Sendable {
        var series: Int64
        var level: Int
    }
    var top: [Key: (bucket: Int64, row: SeriesRollup)] = [:]
}
