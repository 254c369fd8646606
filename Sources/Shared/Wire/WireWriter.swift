/// Appends protocol fields to a byte buffer: little-endian fixed-width integers, LEB128 varints,
/// length-prefixed strings and byte strings.
///
/// The encoding is deliberately small and explicit so that the coordinator's hot path (decode a
/// heartbeat, update memory, reply) costs microseconds, and so that the decoder can be fuzzed.
public struct WireWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 128) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    public mutating func write(_ v: UInt8) { bytes.append(v) }

    public mutating func write(_ v: Bool) { bytes.append(v ? 1 : 0) }

    /// Unsigned LEB128 (the protobuf varint).
    public mutating func writeVarint(_ value: UInt64) { ProtobufVarint.append(value, to: &bytes) }

    public mutating func writeVarint(_ value: Int) { writeVarint(UInt64(bitPattern: Int64(value))) }

    /// Zig-zag signed varint (small negative numbers stay small).
    public mutating func writeSigned(_ value: Int64) {
        writeVarint(UInt64(bitPattern: (value << 1) ^ (value >> 63)))
    }

    public mutating func writeFixed64(_ value: UInt64) {
        var v = value.littleEndian
        withUnsafeBytes(of: &v) { bytes.append(contentsOf: $0) }
    }

    /// IEEE-754 binary64, bit for bit (NaN and ±Inf are carried, not dropped).
    public mutating func write(_ value: Double) { writeFixed64(value.bitPattern) }

    public mutating func write(_ value: String) {
        var s = value
        s.withUTF8 { utf8 in
            writeVarint(UInt64(utf8.count))
            bytes.append(contentsOf: utf8)
        }
    }

    public mutating func writeBytes<C: Collection>(_ value: C) where C.Element == UInt8 {
        writeVarint(UInt64(value.count))
        bytes.append(contentsOf: value)
    }

    /// Appends raw bytes with no length prefix (used for the envelope body, which runs to the end).
    public mutating func writeRaw<C: Collection>(_ value: C) where C.Element == UInt8 {
        bytes.append(contentsOf: value)
    }

    /// Writes a presence byte, then the value when there is one.
    public mutating func writeOptional<T>(_ value: T?, _ body: (inout WireWriter, T) -> Void) {
        if let value {
            write(UInt8(1))
            body(&self, value)
        } else {
            write(UInt8(0))
        }
    }

    public mutating func writeArray<T>(_ values: [T], _ body: (inout WireWriter, T) -> Void) {
        writeVarint(UInt64(values.count))
        for v in values { body(&self, v) }
    }
}
