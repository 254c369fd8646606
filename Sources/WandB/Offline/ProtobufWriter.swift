import Foundation
import Shared

/// A minimal proto3 encoder, enough for `wandb_internal.Record`: varints, length-delimited
/// strings/bytes/nested messages, fixed64 doubles and `google.protobuf.Timestamp`.
///
/// Proto3 rules applied: a scalar equal to its default (0, false, "") is not written, so
/// readers see the default either way; a nested message is always written once asked for,
/// even when empty, because presence matters (`exit{}` selects the `exit` oneof case,
/// `step{}` is step 0). Repeated strings are written element by element, empty ones included.
/// Fields must be written in ascending number order for byte-identical output with the
/// reference encoders (readers accept any order).
public struct ProtobufWriter: Sendable {
    /// Protobuf wire types.
    public enum WireType: UInt8, Sendable {
        case varint = 0
        case fixed64 = 1
        case lengthDelimited = 2
        case fixed32 = 5
    }

    /// The encoded message so far.
    public private(set) var bytes: [UInt8] = []

    public init() {}

    /// Appends a base-128 varint.
    public mutating func writeVarint(_ value: UInt64) {
        ProtobufVarint.append(value, to: &bytes)
    }

    /// Appends a field key: `(field << 3) | wireType`.
    public mutating func writeTag(_ field: Int, _ wireType: WireType) {
        writeVarint(UInt64(field) << 3 | UInt64(wireType.rawValue))
    }

    /// An `int64` field (negative values take ten bytes, as in every proto3 encoder). Skipped when 0.
    public mutating func int64(_ field: Int, _ value: Int64) {
        guard value != 0 else { return }
        writeTag(field, .varint)
        writeVarint(UInt64(bitPattern: value))
    }

    /// An `int32` field; negative values are sign-extended to 64 bits. Skipped when 0.
    public mutating func int32(_ field: Int, _ value: Int32) {
        int64(field, Int64(value))
    }

    /// An enum field, by its number. Skipped when 0 (the default case).
    public mutating func enumValue(_ field: Int, _ value: Int32) {
        int64(field, Int64(value))
    }

    /// A `bool` field. Skipped when false.
    public mutating func bool(_ field: Int, _ value: Bool) {
        guard value else { return }
        writeTag(field, .varint)
        writeVarint(1)
    }

    /// A `double` field (fixed64, little-endian IEEE 754). Skipped when +0.0.
    public mutating func double(_ field: Int, _ value: Double) {
        guard value.bitPattern != 0 else { return }
        writeTag(field, .fixed64)
        let bits = value.bitPattern
        for i in 0..<8 { bytes.append(UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i)))) }
    }

    /// A `string` field (UTF-8). Skipped when empty; use ``repeatedString(_:_:)`` for lists.
    public mutating func string(_ field: Int, _ value: String) {
        guard !value.isEmpty else { return }
        lengthDelimited(field, Array(value.utf8))
    }

    /// An optional `string` field: written when non-nil and non-empty.
    public mutating func string(_ field: Int, _ value: String?) {
        if let value { string(field, value) }
    }

    /// A `repeated string` field: every element, empty ones included.
    public mutating func repeatedString(_ field: Int, _ values: [String]) {
        for v in values { lengthDelimited(field, Array(v.utf8)) }
    }

    /// A `bytes` field or any length-delimited payload, always written.
    public mutating func lengthDelimited(_ field: Int, _ payload: [UInt8]) {
        writeTag(field, .lengthDelimited)
        writeVarint(UInt64(payload.count))
        bytes.append(contentsOf: payload)
    }

    /// A nested message built by `build`, always written (an empty message marks presence).
    public mutating func message(_ field: Int, _ build: (inout ProtobufWriter) -> Void) {
        var inner = ProtobufWriter()
        build(&inner)
        lengthDelimited(field, inner.bytes)
    }

    /// A `google.protobuf.Timestamp{seconds=1 int64, nanos=2 int32}` with nanos in `0..<1e9`
    /// (times before 1970 carry negative seconds and positive nanos, as the spec requires).
    public mutating func timestamp(_ field: Int, _ date: Date) {
        let t = date.timeIntervalSince1970
        var seconds = Int64(t.rounded(.down))
        var nanos = Int32(((t - Double(seconds)) * 1e9).rounded())
        if nanos >= 1_000_000_000 { seconds += 1; nanos -= 1_000_000_000 }
        message(field) { m in
            m.int64(1, seconds)
            m.int32(2, nanos)
        }
    }
}

/// The inverse of ``ProtobufWriter`` for the little the package needs to read back (the record
/// number and step when reopening a `.wandb` file, and tests): splits one message into its
/// top-level fields without a schema, with Shared's ``ProtobufFieldReader``.
public struct ProtobufFields: Sendable {
    /// One decoded field.
    public enum Value: Sendable, Equatable {
        case varint(UInt64)
        case fixed64(UInt64)
        case fixed32(UInt32)
        case bytes([UInt8])
    }

    /// `(field number, value)` in wire order; repeated fields appear several times.
    public let fields: [(number: Int, value: Value)]

    /// Decodes `bytes`; throws ``ProtobufDecodingError`` on malformed input or groups.
    public init<C: Collection>(_ bytes: C) throws where C.Element == UInt8 {
        let b = Array(bytes)
        var reader = ProtobufFieldReader(b[...], context: "Record")
        var out: [(number: Int, value: Value)] = []
        do throws(ProtobufDecodeError) {
            while let (field, value) = try reader.next() {
                switch value {
                case .varint(let v): out.append((Int(field), .varint(v)))
                case .fixed64(let v): out.append((Int(field), .fixed64(v)))
                case .fixed32(let v): out.append((Int(field), .fixed32(v)))
                case .bytes(let v): out.append((Int(field), .bytes(Array(v))))
                }
            }
        } catch {
            let offset = error.offset ?? 0
            switch error.kind {
            case .badField: throw ProtobufDecodingError.badField(offset: offset)
            case .truncated, .varintTooLong, .other: throw ProtobufDecodingError.truncated(offset: offset)
            }
        }
        fields = out
    }

    /// The last varint of field `number` (proto3: the last occurrence wins), or nil.
    public func varint(_ number: Int) -> UInt64? {
        for f in fields.reversed() where f.number == number { if case .varint(let v) = f.value { return v } }
        return nil
    }

    /// The last length-delimited payload of field `number`, or nil.
    public func bytes(_ number: Int) -> [UInt8]? {
        for f in fields.reversed() where f.number == number { if case .bytes(let v) = f.value { return v } }
        return nil
    }

    /// The last field `number` as UTF-8 text, or nil.
    public func string(_ number: Int) -> String? {
        bytes(number).map { String(decoding: $0, as: UTF8.self) }
    }

    /// Every length-delimited payload of field `number`, in order (a repeated field).
    public func all(_ number: Int) -> [[UInt8]] {
        fields.compactMap { f in
            if f.number == number, case .bytes(let v) = f.value { return v }
            return nil
        }
    }

    /// The last field `number` decoded as a nested message, or nil.
    public func message(_ number: Int) throws -> ProtobufFields? {
        try bytes(number).map { try ProtobufFields($0) }
    }
}

/// Malformed protobuf bytes.
public enum ProtobufDecodingError: Error, Equatable, CustomStringConvertible {
    case truncated(offset: Int)
    case badField(offset: Int)

    public var description: String {
        switch self {
        case .truncated(let o): return "protobuf message is truncated at byte \(o)"
        case .badField(let o): return "protobuf message has an invalid field key or a group at byte \(o)"
        }
    }
}
