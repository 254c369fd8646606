/// The last `capacity` values of a series, kept both in arrival order (a ring) and sorted, so
/// the rolling median costs O(1) and a push costs one binary search and one short shift of
/// memory — no allocation once full. Values must be finite (NaN would break the ordering).
struct SortedWindow: Sendable {
    let capacity: Int
    private var ring: [Double]
    private var sorted: [Double]
    /// When full: the ring index of the oldest value.
    private var head = 0

    init(capacity: Int) {
        self.capacity = max(1, capacity)
        ring = []
        sorted = []
        ring.reserveCapacity(self.capacity)
        sorted.reserveCapacity(self.capacity)
    }

    var count: Int { sorted.count }
    var isEmpty: Bool { sorted.isEmpty }

    /// The median of the window (the mean of the two middle values for an even count); NaN when empty.
    var median: Double {
        let n = sorted.count
        if n == 0 { return .nan }
        if n & 1 == 1 { return sorted[n >> 1] }
        return (sorted[n >> 1 - 1] + sorted[n >> 1]) * 0.5
    }

    /// Adds `x`, evicting the oldest value once full.
    mutating func push(_ x: Double) {
        if ring.count < capacity {
            ring.append(x)
            sorted.insert(x, at: Self.lowerBound(sorted, x))
            return
        }
        let old = ring[head]
        ring[head] = x
        head += 1
        if head == capacity { head = 0 }
        if old == x { return }
        sorted.withUnsafeMutableBufferPointer { b in
            let i = Self.lowerBound(b, old) // b[i] == old: it is in the window
            let j = Self.lowerBound(b, x)
            if j > i {
                // Values in i+1..<j are in [old, x): shift them down, x goes just before j.
                var k = i
                while k < j - 1 { b[k] = b[k + 1]; k += 1 }
                b[j - 1] = x
            } else {
                // Values in j..<i are in [x, old]: shift them up, x goes at j.
                var k = i
                while k > j { b[k] = b[k - 1]; k -= 1 }
                b[j] = x
            }
        }
    }

    /// The first index whose value is >= `x`.
    private static func lowerBound<C: RandomAccessCollection>(_ c: C, _ x: Double) -> Int where C.Element == Double, C.Index == Int {
        var lo = c.startIndex, hi = c.endIndex
        while lo < hi {
            let mid = (lo + hi) >> 1
            if c[mid] < x { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }
}
