/// One durable entry of a worker's spool: a batch of metric points and events with the
/// worker-wide sequence number it was given when appended.
///
/// Spool sequences belong to the worker's durable identity (its state directory), not to a
/// session: after a worker restart the spool re-sends what was not acknowledged under the same
/// sequences, so the coordinator stores each entry exactly once.
public struct SpoolEntry: Sendable, Equatable, WireCodable {
    public var sequence: UInt64
    public var points: [MetricPoint]
    public var events: [EventRequest]

    public init(sequence: UInt64, points: [MetricPoint], events: [EventRequest] = []) {
        self.sequence = sequence
        self.points = points
        self.events = events
    }

    public init(from r: inout WireReader) throws(WireError) {
        sequence = try r.readVarint("spool.sequence")
        points = try r.readArray("spool.points") { (r) throws(WireError) in try MetricPoint(from: &r) }
        events = try r.readArray("spool.events") { (r) throws(WireError) in try EventRequest(from: &r) }
    }

    public func encode(to w: inout WireWriter) {
        w.writeVarint(sequence)
        w.writeArray(points) { $1.encode(to: &$0) }
        w.writeArray(events) { $1.encode(to: &$0) }
    }
}
