/// A stored metric point with its ingest sequence (its place in the coordinator-wide arrival
/// order), as ``Store/pointsAfter(runId:cursor:limit:)`` reads it back.
public struct StoredPoint: Sendable, Equatable {
    /// Ingest sequence: W&B cursors refer to it.
    public var seq: Int64
    public var step: Int64
    public var key: String
    public var value: Double
    public var wallTime: Double

    public init(seq: Int64, step: Int64, key: String, value: Double, wallTime: Double) {
        self.seq = seq
        self.step = step
        self.key = key
        self.value = value
        self.wallTime = wallTime
    }
}
