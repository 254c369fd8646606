import Foundation
import Shared

/// A summary of the points of one series within one bucket of steps: how many, the first and
/// the last (by step; arrival order within a step), the lowest and the highest value.
///
/// The store keeps these per series at several resolutions (``levels``), updated in the same
/// transaction that stores the points, so that a curve of a week-long run costs what it shows
/// rather than what is stored (see `Store+Rollups.swift`).
///
/// Extremes follow ``SeriesCurve``'s rules: the minimum is the lowest finite value (the first
/// point while the bucket has no finite one); a NaN or ±Inf replaces the maximum, so a
/// non-finite point is never hidden by a curve.
struct SeriesRollup: Sendable, Equatable {
    /// One point as the rollup keeps it.
    struct Sample: Sendable, Equatable {
        var step: Int64
        var value: Double
        var wallTime: Double

        static func == (a: Sample, b: Sample) -> Bool {
            a.step == b.step && a.value.bitPattern == b.value.bitPattern && a.wallTime.bitPattern == b.wallTime.bitPattern
        }
    }

    var count: Int64
    var first: Sample
    var last: Sample
    var min: Sample
    var max: Sample

    /// The bucket widths in steps, finest first. A level's bucket `b` holds steps
    /// `b·width ..< (b+1)·width`. Each level is 8× the one below, so a curve of B buckets reads at
    /// most 8·B rows of the level it uses (plus a few at its ends). The finest is 256 steps (it
    /// was 64 before schema v14): at saturation (3 M points/s) the finest level is most of the
    /// rows written, and a quarter of them costs a short range read at most 255 raw steps per end.
    static let levels: [Int64] = [256, 2_048, 16_384, 131_072, 1_048_576, 8_388_608]

    init(_ s: Sample) {
        count = 1
        first = s
        last = s
        min = s
        max = s
    }

    /// Adds a point that arrived after every point already summarised.
    mutating func add(_ s: Sample) {
        count += 1
        if s.step < first.step { first = s }
        if s.step >= last.step { last = s }
        if s.value.isFinite {
            if !min.value.isFinite || s.value < min.value { min = s }
            if max.value.isFinite, s.value > max.value { max = s }
        } else {
            max = s
        }
    }

    /// Merges `later`, whose points all arrived after this one's.
    mutating func merge(_ later: SeriesRollup) {
        count += later.count
        if later.first.step < first.step { first = later.first }
        if later.last.step >= last.step { last = later.last }
        if later.min.value.isFinite, !min.value.isFinite || later.min.value < min.value { min = later.min }
        if !later.max.value.isFinite {
            max = later.max
        } else if max.value.isFinite, later.max.value > max.value {
            max = later.max
        }
    }

    // MARK: encoding (a 104-byte blob: count, then first, last, min, max as step · value bits · wall bits, little-endian)

    static let encodedSize = 8 + 4 * 24

    func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(Self.encodedSize)
        func put(_ v: UInt64) { for i in 0..<8 { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        put(UInt64(bitPattern: count))
        for s in [first, last, min, max] {
            put(UInt64(bitPattern: s.step))
            put(s.value.bitPattern)
            put(s.wallTime.bitPattern)
        }
        return out
    }

    init(decoding bytes: [UInt8]) throws(StoreError) {
        guard bytes.count == Self.encodedSize else {
            throw StoreError(.damaged, "a series summary row holds \(bytes.count) bytes, not \(Self.encodedSize); rebuild the summaries (see docs/DECISIONS.md, \"Curves at week scale\")")
        }
        func get(_ at: Int) -> UInt64 {
            var v: UInt64 = 0
            for i in 0..<8 { v |= UInt64(bytes[at + i]) << (8 * UInt64(i)) }
            return v
        }
        func sample(_ at: Int) -> Sample {
            Sample(step: Int64(bitPattern: get(at)), value: Double(bitPattern: get(at + 8)), wallTime: Double(bitPattern: get(at + 16)))
        }
        count = Int64(bitPattern: get(0))
        first = sample(8)
        last = sample(32)
        min = sample(56)
        max = sample(80)
    }

    /// The bucket of `step` at a level of `width` steps (floor division: negative steps too).
    static func bucket(_ step: Int64, width: Int64) -> Int64 {
        step >= 0 ? step / width : -((-step + width - 1) / width)
    }
}
