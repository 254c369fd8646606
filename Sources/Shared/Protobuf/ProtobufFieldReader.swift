/// Protocol-buffer wire format, the little of it this package needs: base-128 varints
/// (``ProtobufVarint``) and a schema-less field reader (``ProtobufFieldReader``). Used by the W&B
/// `.wandb` writer and reader (WandB) and the worker's TensorBoard event decoder, which each had
/// their own copy of these loops.

/// Base-128 varints, the one definition of the encoding, size and decoding.
public enum ProtobufVarint {
    /// How a varint failed to decode, and the offset (from the start of the bytes given) of the byte
    /// that was missing or, for ``Failure/tooLong``, of the eleventh byte.
    public enum Failure: Error, Sendable, Equatable {
        case truncated(at: Int)
        case tooLong(at: Int)
    }

    /// Bytes `value` takes as a varint (1…10).
    @inlinable
    public static func size(_ value: UInt64) -> Int {
        var n = 1, x = value
        while x >= 0x80 { x >>= 7; n += 1 }
        return n
    }

    /// Appends `value` as a varint.
    @inlinable
    public static func append(_ value: UInt64, to out: inout [UInt8]) {
        var x = value
        while x >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: x) | 0x80)
            x >>= 7
        }
        out.append(UInt8(x))
    }

    /// Decodes the varint that starts at `index` and moves `index` past it. At most ten bytes are
    /// read (bits beyond 64 are dropped, as protobuf does); an eleventh continuation is refused.
    @inlinable
    public static func decode<C: Collection>(_ bytes: C, at index: inout C.Index) throws(Failure) -> UInt64
    where C.Element == UInt8, C.Index == Int {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard index < bytes.endIndex else { throw .truncated(at: index - bytes.startIndex) }
            guard shift < 64 else { throw .tooLong(at: index - bytes.startIndex) }
            let b = bytes[index]
            index += 1
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
        }
    }

    /// Every varint of a packed repeated field (`repeated int64`, `repeated bool` …).
    public static func decodeAll(_ bytes: ArraySlice<UInt8>) throws(Failure) -> [UInt64] {
        var out: [UInt64] = []
        var i = bytes.startIndex
        while i < bytes.endIndex { out.append(try decode(bytes, at: &i)) }
        return out
    }
}

/// A malformed protocol-buffer message: what was being read and where it went wrong.
public struct ProtobufDecodeError: Error, Sendable, Equatable, CustomStringConvertible {
    /// What went wrong, for readers that report it in their own terms.
    public enum Kind: Sendable, Equatable {
        /// The message ends inside a varint, a fixed-width field or a length-delimited payload.
        case truncated
        /// A varint of more than ten bytes.
        case varintTooLong
        /// Field number 0 or a wire type other than 0, 1, 2 and 5 (groups included).
        case badField
        /// Anything a caller reports itself.
        case other
    }

    /// What was wrong, naming the message and the byte offset within it.
    public let message: String
    public let kind: Kind
    /// The offset (from the start of the message) at which the problem was found: the missing
    /// byte, the eleventh varint byte, or the byte after a bad field key. Nil for ``Kind/other``.
    public let offset: Int?

    public init(_ message: String) {
        self.message = message
        kind = .other
        offset = nil
    }

    public init(_ message: String, kind: Kind, offset: Int) {
        self.message = message
        self.kind = kind
        self.offset = offset
    }

    public var description: String { message }
}

/// Walks the fields of one encoded protocol-buffer message, in wire order, without a schema:
/// enough to pick the few fields of TensorBoard's `Event`, `Summary` and `TensorProto` or of
/// W&B's `Record` a reader needs and skip everything else (graphs, histograms, unknown fields).
///
/// Varint (0), 64-bit (1), length-delimited (2) and 32-bit (5) wire types are read; the deprecated
/// group types (3, 4) are refused.
public struct ProtobufFieldReader {
    /// One field as it appears on the wire.
    public enum Value {
        case varint(UInt64)
        case fixed64(UInt64)
        case bytes(ArraySlice<UInt8>)
        case fixed32(UInt32)
    }

    private let bytes: ArraySlice<UInt8>
    private var position: Int
    /// Names the message in error texts (`"Event"`, `"Summary.Value"`).
    private let context: String

    public init(_ bytes: ArraySlice<UInt8>, context: String) {
        self.bytes = bytes
        self.position = bytes.startIndex
        self.context = context
    }

    /// The next field (number and value), or nil at the end of the message.
    public mutating func next() throws(ProtobufDecodeError) -> (field: UInt64, value: Value)? {
        guard position < bytes.endIndex else { return nil }
        let key = try varint()
        let field = key >> 3
        guard field != 0 else { throw error("field number 0", .badField) }
        switch key & 7 {
        case 0:
            return (field, .varint(try varint()))
        case 1:
            return (field, .fixed64(try fixed(8)))
        case 2:
            let length = try varint()
            guard length <= UInt64(bytes.endIndex - position) else {
                throw error("field \(field) claims \(length) bytes but only \(bytes.endIndex - position) remain", .truncated)
            }
            let start = position
            position += Int(length)
            return (field, .bytes(bytes[start..<position]))
        case 5:
            return (field, .fixed32(UInt32(try fixed(4))))
        case let wire:
            throw error("field \(field) has unsupported wire type \(wire)", .badField)
        }
    }

    private mutating func varint() throws(ProtobufDecodeError) -> UInt64 {
        do throws(ProtobufVarint.Failure) {
            return try ProtobufVarint.decode(bytes, at: &position)
        } catch {
            switch error {
            case .truncated(let at):
                position = bytes.startIndex + at
                throw self.error("truncated varint", .truncated)
            case .tooLong(let at):
                // The message counts the eleventh byte as read.
                position = bytes.startIndex + at + 1
                throw ProtobufDecodeError("malformed \(context) protobuf at byte \(at + 1): varint longer than 10 bytes",
                                          kind: .varintTooLong, offset: at)
            }
        }
    }

    private mutating func fixed(_ count: Int) throws(ProtobufDecodeError) -> UInt64 {
        guard bytes.endIndex - position >= count else { throw error("truncated \(count * 8)-bit field", .truncated) }
        var result: UInt64 = 0
        for i in 0..<count { result |= UInt64(bytes[position + i]) << (8 * UInt64(i)) }
        position += count
        return result
    }

    private func error(_ what: String, _ kind: ProtobufDecodeError.Kind) -> ProtobufDecodeError {
        let offset = position - bytes.startIndex
        return ProtobufDecodeError("malformed \(context) protobuf at byte \(offset): \(what)", kind: kind, offset: offset)
    }

    /// Reads a packed repeated field of fixed-width little-endian values (`repeated float` or
    /// `repeated double` with `[packed=true]`, the proto3 default).
    public static func packedFixed(_ bytes: ArraySlice<UInt8>, width: Int, context: String) throws(ProtobufDecodeError) -> [UInt64] {
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
