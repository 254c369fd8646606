import Shared
import WandB

/// Turns stored points, in arrival order, into W&B history rows.
///
/// - A row holds everything logged at one step. A step is *closed* (its row emitted) when a point
///   for a later step arrives, or when the run is over.
/// - `_step` never rewinds: a point that arrives for a step already delivered (or older than the
///   open row) is *late*: it joins the next row under its own key, with its step recorded as a
///   value (`eval/cer` at step 5000 arriving at step 5400 → `eval/cer` and `eval/step = 5000`
///   in the row of step 5400).
/// - The builder is pure: given the points after the durable cursor it always produces the same
///   rows and the same new cursor, so a crash between delivering and recording the cursor
///   re-delivers exactly the same rows.
public struct HistoryBuilder: Sendable {
    /// A stored point in arrival order (the store's record of it).
    public typealias Point = StoredPoint

    public struct Output: Sendable, Equatable {
        public var rows: [WandbHistoryRow]
        /// Points with `seq <= cursor` are covered by `rows` (nil: unchanged).
        public var cursor: Int64?
        public var lastStep: Int64?
    }

    /// The value key under which a late point's step is recorded.
    public static func stepKey(for key: String) -> String {
        if let slash = key.lastIndex(of: "/") { return String(key[..<slash]) + "/step" }
        return key + "_step"
    }

    /// - Parameters:
    ///   - points: points after the cursor, in arrival (`seq`) order.
    ///   - lastStep: the last step already delivered.
    ///   - final: the run is over: emit the open row too.
    ///   - startTime: the run's start (unix seconds), for `_runtime`.
    public static func build(points: [Point], lastStep: Int64?, final: Bool, startTime: Double) -> Output {
        struct Open {
            var step: Int64
            var values: [(key: String, value: WandbValue)] = []
            /// Only for wide rows: a step usually has a handful of keys, found faster by a scan.
            var index: [String: Int]?
            var wall: Double = 0
            mutating func set(_ key: String, _ value: WandbValue) {
                if let index {
                    if let i = index[key] { values[i].value = value; return }
                } else if let i = values.firstIndex(where: { $0.key == key }) {
                    values[i].value = value
                    return
                }
                values.append((key, value))
                if index != nil {
                    index![key] = values.count - 1
                } else if values.count == 32 {
                    index = Dictionary(uniqueKeysWithValues: values.enumerated().map { ($1.key, $0) })
                }
            }
        }
        var rows: [WandbHistoryRow] = []
        var cursor: Int64?
        var last = lastStep
        var open: Open?
        var pendingLate: [Point] = []
        var previousSeq: Int64?

        func row(_ o: Open) -> WandbHistoryRow {
            WandbHistoryRow(step: o.step, timestamp: o.wall, runtime: max(0, o.wall - startTime), values: o.values)
        }
        func addLate(_ p: Point, to o: inout Open) {
            o.set(p.key, .number(p.value))
            o.set(stepKey(for: p.key), .integer(p.step))
            o.wall = max(o.wall, p.wallTime)
        }

        for p in points {
            if var o = open {
                if p.step == o.step {
                    o.set(p.key, .number(p.value))
                    o.wall = max(o.wall, p.wallTime)
                    open = o
                } else if p.step > o.step {
                    rows.append(row(o))
                    last = o.step
                    cursor = previousSeq
                    var n = Open(step: p.step)
                    n.set(p.key, .number(p.value))
                    n.wall = p.wallTime
                    open = n
                } else {
                    addLate(p, to: &o)
                    open = o
                }
            } else if let l = last, p.step <= l {
                pendingLate.append(p)
            } else {
                var n = Open(step: p.step)
                n.set(p.key, .number(p.value))
                n.wall = p.wallTime
                for lp in pendingLate { addLate(lp, to: &n) }
                pendingLate = []
                open = n
            }
            previousSeq = p.seq
        }
        if final {
            if open == nil, !pendingLate.isEmpty {
                // Late points after the last step (a final evaluation): one more row past it.
                var n = Open(step: (last ?? -1) + 1)
                for lp in pendingLate { addLate(lp, to: &n) }
                open = n
            }
            if let o = open {
                rows.append(row(o))
                last = o.step
                cursor = previousSeq
            }
        }
        return Output(rows: rows, cursor: cursor, lastStep: last)
    }
}
