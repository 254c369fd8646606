import Shared

/// Reduces a metric series to at most `limit` points for a chart or an API answer without
/// hiding spikes: the steps are cut into `limit / 2` equal buckets and each bucket keeps its
/// lowest and its highest value (in step order); the first and the last point are always kept.
/// Non-finite values are kept (a NaN is what an operator needs to see).
public enum SeriesDownsampler {
    public static func downsample(_ points: [MetricPoint], limit: Int) -> [MetricPoint] {
        guard limit >= 2, points.count > limit else { return points }
        let buckets = max(1, (limit - 2) / 2)
        let first = points[0], last = points[points.count - 1]
        let inner = points[1..<(points.count - 1)]
        let lo = Double(inner.first!.step), hi = Double(inner.last!.step)
        let width = max(1, (hi - lo + 1) / Double(buckets))
        var out: [MetricPoint] = [first]
        var bucket = -1
        var minP: MetricPoint?, maxP: MetricPoint?
        func flush() {
            guard let a = minP, let b = maxP else { return }
            if a.step == b.step { out.append(a) } else if a.step < b.step { out.append(a); out.append(b) } else { out.append(b); out.append(a) }
        }
        for p in inner {
            let b = min(buckets - 1, Int((Double(p.step) - lo) / width))
            if b != bucket {
                flush()
                bucket = b
                minP = p
                maxP = p
                continue
            }
            if !p.value.isFinite {
                // A non-finite point replaces the bucket's maximum: it must stay visible.
                maxP = p
            } else {
                if let m = minP, m.value.isFinite, p.value < m.value { minP = p }
                if let m = maxP, m.value.isFinite, p.value > m.value { maxP = p }
            }
        }
        flush()
        out.append(last)
        return out
    }
}
