import Foundation
import Shared

/// The points of one run from one spool entry, stored as one row of `metric_batches`.
///
/// Storing a batch as one row (rather than a row per point) is what lets the coordinator store
/// and re-read a trainer's stream at the speed the trainer produces it: a spool entry of 1,000
/// steps × 10 scalars is one insert, and W&B delivery reads it back with one read. The batch
/// keeps the points in arrival order (late points and all), which is what W&B history needs;
/// queries by key and step range go through `series_batches`, which says which batches hold
/// which key in which step range.
///
/// Encoding (version 1), all integers LEB128 varints unless noted:
/// `version (u8 = 1) · key count · keys (length + UTF-8) · point count ·
///  per point: key index · step delta from the previous point (zigzag) ·
///  value bits (8 bytes LE) · wall time bits (8 bytes LE)`.
/// Values are stored as their IEEE-754 bits, so NaN and ±Inf survive exactly.
public struct PointBatch: Sendable, Equatable {
    /// The distinct keys, in order of first appearance.
    public internal(set) var keys: [String]
    /// Per point: its key's index in ``keys``.
    public internal(set) var keyIndex: [UInt32]
    public internal(set) var steps: [Int64]
    public internal(set) var values: [Double]
    public internal(set) var wallTimes: [Double]

    /// The number of points.
    public var count: Int { steps.count }

    /// The points, as ``MetricPoint``s of `runId`.
    public func points(runId: String) -> [MetricPoint] {
        (0..<count).map { MetricPoint(runId: runId, step: steps[$0], key: keys[Int(keyIndex[$0])], value: values[$0], wallTime: wallTimes[$0]) }
    }

    /// Per key: its step range and number of points (for `series_batches`).
    struct KeyExtent: Sendable, Equatable {
        var minStep: Int64
        var maxStep: Int64
        var count: Int
    }

    static let version: UInt8 = 1

    init(keys: [String] = [], keyIndex: [UInt32] = [], steps: [Int64] = [], values: [Double] = [], wallTimes: [Double] = []) {
        self.keys = keys
        self.keyIndex = keyIndex
        self.steps = steps
        self.values = values
        self.wallTimes = wallTimes
    }

    /// The batch of `points` (all of one run), in their order.
    init<C: Collection>(points: C) where C.Element == MetricPoint {
        var index: [String: UInt32] = [:]
        self.init()
        keyIndex.reserveCapacity(points.count)
        steps.reserveCapacity(points.count)
        values.reserveCapacity(points.count)
        wallTimes.reserveCapacity(points.count)
        var lastIndex = -1
        for p in points {
            // Consecutive points usually repeat a key or cycle through the same few keys in the
            // same order: try the previous key and the one after it before hashing (equal keys
            // decoded from one message are the same string, so the comparison is a pointer test).
            let i: UInt32
            let next = lastIndex + 1 < keys.count ? lastIndex + 1 : 0
            if lastIndex >= 0, keys[lastIndex] == p.key {
                i = UInt32(lastIndex)
            } else if next < keys.count, keys[next] == p.key {
                i = UInt32(next)
            } else if let known = index[p.key] {
                i = known
            } else {
                i = UInt32(keys.count)
                index[p.key] = i
                keys.append(p.key)
            }
            lastIndex = Int(i)
            keyIndex.append(i)
            steps.append(p.step)
            values.append(p.value)
            wallTimes.append(p.wallTime)
        }
    }

    /// Step range and count of each key (indexed like ``keys``).
    var extents: [KeyExtent] {
        var out = [KeyExtent](repeating: KeyExtent(minStep: .max, maxStep: .min, count: 0), count: keys.count)
        for i in 0..<count {
            let k = Int(keyIndex[i])
            out[k].minStep = min(out[k].minStep, steps[i])
            out[k].maxStep = max(out[k].maxStep, steps[i])
            out[k].count += 1
        }
        return out
    }

    var minStep: Int64 { steps.min() ?? 0 }
    var maxStep: Int64 { steps.max() ?? 0 }

    func encoded() -> [UInt8] {
        var w = WireWriter(capacity: 16 + keys.count * 24 + count * 20)
        w.write(Self.version)
        w.writeVarint(UInt64(keys.count))
        for k in keys { w.write(k) }
        w.writeVarint(UInt64(count))
        var previous: Int64 = 0
        for i in 0..<count {
            w.writeVarint(UInt64(keyIndex[i]))
            w.writeSigned(steps[i] &- previous)
            previous = steps[i]
            w.writeFixed64(values[i].bitPattern)
            w.writeFixed64(wallTimes[i].bitPattern)
        }
        return w.bytes
    }

    /// - Throws: ``StoreError`` when the bytes are not a batch of a known version (a damaged
    ///   database row; the message names what to do).
    init(decoding bytes: [UInt8]) throws(StoreError) {
        var r = WireReader(bytes)
        do {
            let version = try r.readByte("batch.version")
            guard version == Self.version else {
                throw StoreError(.newerFormat, "a stored metric batch has version \(version), this coordinator reads version \(Self.version); run the coordinator release that wrote it, or restore the database")
            }
            let keyCount = Int(try r.readVarint("batch.keyCount"))
            guard keyCount <= bytes.count else { throw StoreError(.damaged, "a stored metric batch is damaged (key count \(keyCount)); restore the database from a backup") }
            var keys: [String] = []
            keys.reserveCapacity(keyCount)
            for _ in 0..<keyCount { keys.append(try r.readString("batch.key")) }
            let n = Int(try r.readVarint("batch.count"))
            guard n <= bytes.count else { throw StoreError(.damaged, "a stored metric batch is damaged (point count \(n)); restore the database from a backup") }
            self.init(keys: keys)
            keyIndex.reserveCapacity(n)
            steps.reserveCapacity(n)
            values.reserveCapacity(n)
            wallTimes.reserveCapacity(n)
            var step: Int64 = 0
            for _ in 0..<n {
                let k = try r.readVarint("batch.keyIndex")
                guard k < UInt64(keyCount) else { throw StoreError(.damaged, "a stored metric batch is damaged (key index \(k) of \(keyCount)); restore the database from a backup") }
                step &+= try r.readSigned("batch.step")
                keyIndex.append(UInt32(k))
                steps.append(step)
                values.append(Double(bitPattern: try r.readFixed64("batch.value")))
                wallTimes.append(Double(bitPattern: try r.readFixed64("batch.wallTime")))
            }
        } catch let e as WireError {
            throw StoreError(.damaged, "a stored metric batch is damaged (\(e)); restore the database from a backup")
        } catch let e as StoreError {
            throw e
        } catch {
            throw StoreError(.damaged, "a stored metric batch is damaged (\(error))")
        }
    }
}
