/// One scalar a trainer produced: `(run, step, key, value, wall time)`. NaN and ±Inf are
/// carried bit for bit.
public struct MetricPoint: Sendable, Equatable, WireCodable {
    /// The key prefix of system metrics (`system/gpu.0.gpu`): samples over time from the worker,
    /// not trainer steps; W&B gets them as `stats`, and they are exempt from the one point per
    /// (run, key, step) rule.
    public static let systemPrefix = "system/"

    /// True for a system metric (``systemPrefix``).
    public var isSystem: Bool { key.hasPrefix(Self.systemPrefix) }

    public var runId: String
    public var step: Int64
    public var key: String
    public var value: Double
    /// Seconds since the Unix epoch when the trainer produced it.
    public var wallTime: Double

    public init(runId: String, step: Int64, key: String, value: Double, wallTime: Double) {
        self.runId = runId
        self.step = step
        self.key = key
        self.value = value
        self.wallTime = wallTime
    }

    public init(from r: inout WireReader) throws(WireError) {
        runId = try r.readInternedString("metric.runId", table: 0)
        step = try r.readSigned("metric.step")
        key = try r.readInternedString("metric.key", table: 1)
        value = try r.readDouble("metric.value")
        wallTime = try r.readDouble("metric.wallTime")
    }

    public func encode(to w: inout WireWriter) {
        w.write(runId)
        w.writeSigned(step)
        w.write(key)
        w.write(value)
        w.write(wallTime)
    }

    // NaN != NaN, but a carried NaN is the same point.
    public static func == (a: MetricPoint, b: MetricPoint) -> Bool {
        a.runId == b.runId && a.step == b.step && a.key == b.key
            && a.value.bitPattern == b.value.bitPattern && a.wallTime == b.wallTime
    }
}

/// `metrics`: spool entries in sequence order. The coordinator stores the entries above the
/// worker's spool high-water mark in one transaction, and the reply's `highestSequence` is the
/// worker's new high-water mark: everything up to it is durable and may be trimmed.
public struct MetricsRequest: Sendable, Equatable, WireCodable {
    public var entries: [SpoolEntry]

    public init(entries: [SpoolEntry]) { self.entries = entries }

    public init(from r: inout WireReader) throws(WireError) {
        entries = try r.readArray("metrics.entries") { (r) throws(WireError) in try SpoolEntry(from: &r) }
    }

    public func encode(to w: inout WireWriter) { w.writeArray(entries) { $1.encode(to: &$0) } }

    public var pointCount: Int { entries.reduce(0) { $0 + $1.points.count } }
}

/// A `metrics` request built from spool records as they are on disk: the same bytes on the wire
/// as ``MetricsRequest`` (a count, then each entry's encoding), without decoding and
/// re-encoding every point on the worker.
public struct EncodedMetricsRequest: Sendable, Equatable, WireCodable {
    /// Each element is one ``SpoolEntry``'s wire encoding.
    public var entries: [ArraySlice<UInt8>]

    public init(entries: [ArraySlice<UInt8>]) { self.entries = entries }

    public init(from r: inout WireReader) throws(WireError) {
        entries = try r.readArray("metrics.entries") { (r) throws(WireError) in
            ArraySlice(try SpoolEntry(from: &r).wireBytes())
        }
    }

    public func encode(to w: inout WireWriter) {
        w.writeVarint(UInt64(entries.count))
        for e in entries { w.writeRaw(e) }
    }
}

/// The reply to `metrics`, `event` and `result`: the request was stored (or had been already).
public struct Ack: Sendable, Equatable, WireCodable {
    /// The highest sequence of this session that is durably stored.
    public var highestSequence: UInt64
    /// False when the request was understood but refused (for a `result`: the lease moved on).
    public var accepted: Bool
    public var note: String

    public init(highestSequence: UInt64, accepted: Bool = true, note: String = "") {
        self.highestSequence = highestSequence
        self.accepted = accepted
        self.note = note
    }

    public init(from r: inout WireReader) throws(WireError) {
        highestSequence = try r.readVarint("ack.highestSequence")
        accepted = try r.readBool("ack.accepted")
        note = try r.readString("ack.note")
    }

    public func encode(to w: inout WireWriter) {
        w.writeVarint(highestSequence)
        w.write(accepted)
        w.write(note)
    }
}
