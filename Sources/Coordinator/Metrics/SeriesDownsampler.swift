import Shared

/// Reduces a metric series to at most `limit` points for a chart or an API answer without
/// hiding spikes: the steps from the first to the last point are cut into `(limit − 2) / 2`
/// equal buckets and each bucket keeps its lowest and its highest value (in step order); the
/// first and the last point are always kept. Non-finite values are kept (a NaN is what an
/// operator needs to see): one replaces its bucket's maximum.
///
/// This is the rule for points in hand; the store cuts long series from its per-bucket summaries
/// (``Store/metricCurve(runId:key:fromStep:toStep:limit:)``) by the same rule over buckets
/// aligned to its summary rows, without reading every point.
public enum SeriesDownsampler {
    public static func downsample(_ points: [MetricPoint], limit: Int) -> [MetricPoint] {
        guard limit >= 2, points.count > limit, let first = points.first, let last = points.last else { return points }
        let buckets = max(1, (limit - 2) / 2)
        let lo = Double(first.step), width = max(1, (Double(last.step) - lo + 1) / Double(buckets))
        return SeriesCurve.build(runId: first.runId, key: first.key,
                                 pieces: points.map { SeriesRollup(.init(step: $0.step, value: $0.value, wallTime: $0.wallTime)) },
                                 buckets: buckets) { step in Int((Double(step) - lo) / width) }
    }
}

/// Builds a curve from summaries of step ranges (``SeriesRollup``s in arrival order of their
/// points; a single point is a summary of one): the first and the last point, then per bucket
/// (`bucketOf(step)`, clamped to `0 ..< buckets`) the lowest finite and the highest value (a
/// non-finite value replaces the highest), in step order. A summary's extremes count in the bucket
/// of their own step, so the extremes of a bucket are exact when no summary straddles two buckets.
enum SeriesCurve {
    static func build(runId: String, key: String, pieces: [SeriesRollup], buckets: Int, bucketOf: (Int64) -> Int) -> [MetricPoint] {
        guard var first = pieces.first?.first, var last = pieces.first?.last else { return [] }
        // The ends: the lowest step (first to arrive) and the highest (last to arrive); pieces
        // come in step order except points not yet summarised, which come last.
        for piece in pieces.dropFirst() {
            if piece.first.step < first.step { first = piece.first }
            if piece.last.step >= last.step { last = piece.last }
        }
        func point(_ s: SeriesRollup.Sample) -> MetricPoint {
            MetricPoint(runId: runId, step: s.step, key: key, value: s.value, wallTime: s.wallTime)
        }
        guard first != last else { return [point(first)] }
        var extremes = [(min: SeriesRollup.Sample, max: SeriesRollup.Sample)?](repeating: nil, count: buckets)
        func place(_ s: SeriesRollup.Sample) {
            guard s != first, s != last else { return }
            let b = Swift.min(buckets - 1, Swift.max(0, bucketOf(s.step)))
            guard var e = extremes[b] else { extremes[b] = (s, s); return }
            if s.value.isFinite {
                if !e.min.value.isFinite || s.value < e.min.value { e.min = s }
                if e.max.value.isFinite, s.value > e.max.value { e.max = s }
            } else {
                e.max = s
            }
            extremes[b] = e
        }
        for piece in pieces {
            place(piece.min)
            if piece.max != piece.min { place(piece.max) }
        }
        var out = [point(first)]
        for case let e? in extremes {
            if e.min == e.max { out.append(point(e.min)) } else if e.min.step <= e.max.step {
                out.append(point(e.min)); out.append(point(e.max))
            } else {
                out.append(point(e.max)); out.append(point(e.min))
            }
        }
        out.append(point(last))
        return out
    }
}
