import Shared

/// Merges the metrics a trainer reports twice — on stdout (``TrainerLogParser``) and in its
/// TensorBoard event files (``TensorBoardScalarReader``) — so that each `(run, key, step)` is
/// passed on exactly once, whichever source reports it first.
///
/// - **First report wins.** stdout usually arrives first (TensorBoard's writer flushes every few
///   seconds to minutes), so a value printed with 4 decimals may be kept over TensorBoard's float32;
///   a key only TensorBoard has (`train/samples_per_sec`) comes from TensorBoard.
/// - **Bounded memory.** Every source is declared up front. Each source reports steps in
///   non-decreasing order (a trainer logs step S before S+1), so once *every* declared source has
///   reported a step above S, no duplicate of a step ≤ S can come any more and those entries are
///   forgotten. While a declared source has reported nothing (TensorBoard not flushed yet), nothing
///   is forgotten.
/// - **Resume.** `deliveredThrough` gives, per key, the highest step the run already delivered
///   before this process (from the coordinator); `floor` does the same for every key. Points at or
///   below are dropped, so a run resumed from an earlier checkpoint does not log those steps twice.
public struct MetricDeduplicator: Sendable {
    /// Where a point came from.
    public struct Source: Hashable, Sendable, CustomStringConvertible {
        public let name: String
        public init(_ name: String) { self.name = name }
        public var description: String { name }
        /// The trainer's `[Train]`/`[Val]` stdout lines.
        public static let stdout = Source("stdout")
        /// The trainer's TensorBoard event files.
        public static let tensorboard = Source("tensorboard")
    }

    private struct Key: Hashable {
        var run: String
        var key: String
        var step: Int64
    }

    private let sources: Set<Source>
    private let floor: Int64?
    private let deliveredThrough: [String: Int64]
    private var emitted: Set<Key> = []
    private var highest: [Source: Int64] = [:]
    private var pruneBelow = Int64.min

    /// - Parameters:
    ///   - sources: every source that will report; pruning waits for all of them.
    ///   - floor: drop every point at or below this step (the run's last delivered step).
    ///   - deliveredThrough: per key, drop points at or below this step.
    public init(sources: Set<Source> = [.stdout, .tensorboard], floor: Int64? = nil,
                deliveredThrough: [String: Int64] = [:]) {
        self.sources = sources
        self.floor = floor
        self.deliveredThrough = deliveredThrough
    }

    /// How many `(run, key, step)` entries are remembered (for tests and diagnostics).
    public var rememberedCount: Int { emitted.count }

    /// Returns the points of `points` not reported before (by any source), in their order.
    public mutating func admit(_ points: [MetricPoint], from source: Source) -> [MetricPoint] {
        var out: [MetricPoint] = []
        out.reserveCapacity(points.count)
        for p in points {
            if let f = floor, p.step <= f { continue }
            if let f = deliveredThrough[p.key], p.step <= f { continue }
            if p.step < pruneBelow { continue } // every source moved past it: already handled
            if emitted.insert(Key(run: p.runId, key: p.key, step: p.step)).inserted { out.append(p) }
            highest[source] = max(highest[source] ?? .min, p.step)
        }
        prune()
        return out
    }

    private mutating func prune() {
        var low = Int64.max
        for s in sources {
            guard let h = highest[s] else { return }
            low = min(low, h)
        }
        for s in highest.keys where !sources.contains(s) { low = min(low, highest[s] ?? low) }
        guard low > pruneBelow else { return }
        pruneBelow = low
        emitted = emitted.filter { $0.step >= low }
    }
}
