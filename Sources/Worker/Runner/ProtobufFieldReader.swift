/// A malformed protocol-buffer message: what was being read and where it went wrong.
public struct ProtobufDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What was wrong, naming the message and the byte offset within it.
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Walks the fields of one encoded protocol-buffer message, in wire order, without a schema:
/// enough to pick the few fields of TensorBoard's `Event`, `Summary` and `TensorProto` this
/// package reads and skip everything else (graphs, histograms, images, unknown fields).
///
/// Varint (0), 64-bit (1), length-delimited (2) and 32-bit (5) wire types are read; the deprecated
/// group types (3, 4) are refused.
struct ProtobufFieldReader {
    /// One field as it appears on the wire.
    enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    private let bytes: ArraySlice<UInt8>
    private var position: Int
    /// Names the message in error texts (`"Event"`, `"Summary.Value"`).
    private let context: String

    init(_ bytes: ArraySlice<UInt8>, context: String) {
        self.bytes = bytes
        self.position = bytes.startIndex
        self.context = context
    }

    /// The next field (number and value), or nil at the end of the message.
    mutating func next() throws(ProtobufDecodeError) -> (field: UInt64, value: Value)? {
        guard position < bytes.endIndex else { return nil }
        let key = try varint()
        let field = key >> 3
        guard field != 0 else { throw error("field number 0") }
        switch key & 7 {
        case 0:
            return (field, .varint(try varint()))
        case 1:
            return (field, .fixed64(try fixed(8)))
        case 2:
            let length = try varint()
            guard length <= UInt64(bytes.endIndex - position) else {
                throw error("field \(field) claims \(length) bytes but only \(bytes.endIndex - position) remain")
            }
            let start = position
            position += Int(length)
            return (field, .bytes(bytes[start..<position]))
        case 5:
            return (field, .fixed32(UInt32(try fixed(4))))
        case let wire:
            throw error("field \(field) has unsupported wire type \(wire)")
        }
    }

    private mutating func varint() throws(ProtobufDecodeError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < bytes.endIndex else { throw error("truncated varint") }
            let b = bytes[position]
            position += 1
            guard shift < 64 else { throw error("varint longer than 10 bytes") }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    private mutating func fixed(_ count: Int) throws(ProtobufDecodeError) -> UInt64 {
        guard bytes.endIndex - position >= count else { throw error("truncated \(count * 8)-bit field") }
        var result: UInt64 = 0
        for i in 0..<count { result |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += count
        return result
    }

    private func error(_ what: String) -> ProtobufDecodeError {
        ProtobufDecodeError("malformed \(context) protobuf at byte \(position - bytes.startIndex): \(what)")
    }

    /// Reads a packed repeated field of fixed-width little-endian values (`repeated float` or
    /// `repeated double` with `[packed=true]`, the proto3 default).
    static func packedFixed(_ bytes: ArraySlice<UInt8>, width: Int, context: String) throws(ProtobufDecodeError) -> [UInt64] {
        guard bytes.count % width == 0 else {
            throw ProtobufDecodeError("malformed \(context) protobuf: packed field of \(bytes.count) bytes is not a multiple of \(width)")
        }
        var out: [UInt64] = []
        out.reserveCapacity(bytes.count / width)
        var i = bytes.startIndex
        while i < bytes.endIndex {
            var v: UInt64 = 0
            for k in 0..<width { v |= UInt64(bytes[i + k]) << (8 * UInt64(k)) }
            out.append(v)
            i += width
        }
        return out
    }
}
