import Shared

/// One decoded TensorBoard `Event` (tensorflow/core/util/event.proto), reduced to what a metrics
/// reader needs: its time, step, and the scalar values of its `Summary`.
///
/// Fields read: `wall_time` (1, double), `step` (2, int64), `file_version` (3, string),
/// `summary` (5) → `Summary.value` (1, repeated) → `tag` (1), `simple_value` (2, float) or
/// `tensor` (8) → `TensorProto` `dtype` (1), `tensor_content` (4), `float_val` (5),
/// `double_val` (6), `int_val` (7), `int64_val` (10), `half_val` (13). Everything else (graphs,
/// histograms, images, audio, metadata) is skipped.
public struct TensorBoardEvent: Sendable, Equatable {
    /// One `Summary.Value` that held a single number.
    public struct Scalar: Sendable, Equatable {
        public var tag: String
        public var value: Double
        public init(tag: String, value: Double) {
            self.tag = tag
            self.value = value
        }
        public static func == (a: Scalar, b: Scalar) -> Bool {
            a.tag == b.tag && a.value.bitPattern == b.value.bitPattern
        }
    }

    /// Seconds since the Unix epoch.
    public var wallTime: Double
    public var step: Int64
    /// Set on the first event of a file (`"brain.Event:2"`).
    public var fileVersion: String?
    /// The scalar values of the event's summary, in order. Non-scalar values are left out.
    public var scalars: [Scalar]

    public init(wallTime: Double, step: Int64, fileVersion: String? = nil, scalars: [Scalar] = []) {
        self.wallTime = wallTime
        self.step = step
        self.fileVersion = fileVersion
        self.scalars = scalars
    }

    /// Decodes an encoded `Event` (one TFRecord's data).
    public init(decoding bytes: [UInt8]) throws(ProtobufDecodeError) {
        self.init(wallTime: 0, step: 0)
        var r = ProtobufFieldReader(bytes[...], context: "Event")
        while let (field, value) = try r.next() {
            switch (field, value) {
            case (1, .fixed64(let bits)): wallTime = Double(bitPattern: bits)
            case (2, .varint(let v)): step = Int64(bitPattern: v)
            case (3, .bytes(let s)): fileVersion = String(decoding: s, as: UTF8.self)
            case (5, .bytes(let summary)): scalars += try Self.summaryScalars(summary)
            default: continue
            }
        }
    }

    private static func summaryScalars(_ bytes: ArraySlice<UInt8>) throws(ProtobufDecodeError) -> [Scalar] {
        var out: [Scalar] = []
        var r = ProtobufFieldReader(bytes, context: "Summary")
        while let (field, value) = try r.next() {
            guard field == 1, case .bytes(let v) = value else { continue }
            if let s = try summaryValue(v) { out.append(s) }
        }
        return out
    }

    private static func summaryValue(_ bytes: ArraySlice<UInt8>) throws(ProtobufDecodeError) -> Scalar? {
        var tag = ""
        var simple: Double?
        var tensor: Double?
        var r = ProtobufFieldReader(bytes, context: "Summary.Value")
        while let (field, value) = try r.next() {
            switch (field, value) {
            case (1, .bytes(let s)): tag = String(decoding: s, as: UTF8.self)
            case (2, .fixed32(let bits)): simple = Double(Float(bitPattern: bits))
            case (8, .bytes(let t)): tensor = try tensorScalar(t)
            default: continue
            }
        }
        guard let v = simple ?? tensor else { return nil }
        return Scalar(tag: tag, value: v)
    }

    // TensorFlow DataType values.
    private static let dtFloat: UInt64 = 1, dtDouble: UInt64 = 2, dtInt32: UInt64 = 3,
        dtInt64: UInt64 = 9, dtBFloat16: UInt64 = 14, dtHalf: UInt64 = 19

    /// The single number of a `TensorProto`, or nil if it holds none, several, or a type that is
    /// not a number.
    private static func tensorScalar(_ bytes: ArraySlice<UInt8>) throws(ProtobufDecodeError) -> Double? {
        var dtype: UInt64 = 0
        var content: ArraySlice<UInt8>?
        var values: [Double] = []
        var r = ProtobufFieldReader(bytes, context: "TensorProto")
        while let (field, value) = try r.next() {
            switch (field, value) {
            case (1, .varint(let d)): dtype = d
            case (4, .bytes(let c)): content = c
            case (5, .fixed32(let bits)): values.append(Double(Float(bitPattern: bits)))
            case (5, .bytes(let packed)):
                values += try ProtobufFieldReader.packedFixed(packed, width: 4, context: "TensorProto.float_val")
                    .map { Double(Float(bitPattern: UInt32(truncatingIfNeeded: $0))) }
            case (6, .fixed64(let bits)): values.append(Double(bitPattern: bits))
            case (6, .bytes(let packed)):
                values += try ProtobufFieldReader.packedFixed(packed, width: 8, context: "TensorProto.double_val")
                    .map { Double(bitPattern: $0) }
            case (7, .varint(let v)): values.append(Double(Int32(truncatingIfNeeded: v)))
            case (7, .bytes(let packed)): values += try varints(packed).map { Double(Int32(truncatingIfNeeded: $0)) }
            case (10, .varint(let v)): values.append(Double(Int64(bitPattern: v)))
            case (10, .bytes(let packed)): values += try varints(packed).map { Double(Int64(bitPattern: $0)) }
            case (13, .varint(let v)): values.append(halfOrBFloat(UInt16(truncatingIfNeeded: v), dtype: dtype))
            case (13, .bytes(let packed)): values += try varints(packed).map { halfOrBFloat(UInt16(truncatingIfNeeded: $0), dtype: dtype) }
            default: continue
            }
        }
        if let c = content {
            // Raw little-endian element bytes, the form tf.make_tensor_proto uses for arrays.
            switch (dtype, c.count) {
            case (dtFloat, 4): return Double(Float(bitPattern: UInt32(truncatingIfNeeded: le(c))))
            case (dtDouble, 8): return Double(bitPattern: le(c))
            case (dtInt32, 4): return Double(Int32(truncatingIfNeeded: le(c)))
            case (dtInt64, 8): return Double(Int64(bitPattern: le(c)))
            case (dtHalf, 2), (dtBFloat16, 2): return halfOrBFloat(UInt16(truncatingIfNeeded: le(c)), dtype: dtype)
            default: return nil
            }
        }
        guard values.count == 1 else { return nil }
        return values[0]
    }

    private static func le(_ b: ArraySlice<UInt8>) -> UInt64 {
        var v: UInt64 = 0
        for (i, byte) in b.enumerated() { v |= UInt64(byte) << (8 * UInt64(i)) }
        return v
    }

    private static func halfOrBFloat(_ bits: UInt16, dtype: UInt64) -> Double {
        if dtype == dtBFloat16 { return Double(Float(bitPattern: UInt32(bits) << 16)) }
        return Double(Float16Bits(bits).float)
    }

    private static func varints(_ b: ArraySlice<UInt8>) throws(ProtobufDecodeError) -> [UInt64] {
        do throws(ProtobufVarint.Failure) {
            return try ProtobufVarint.decodeAll(b)
        } catch {
            switch error {
            case .tooLong: throw ProtobufDecodeError("malformed TensorProto protobuf: packed varint longer than 10 bytes")
            case .truncated: throw ProtobufDecodeError("malformed TensorProto protobuf: truncated packed varint")
            }
        }
    }
}

/// IEEE 754 half precision decoded by hand (`Float16` is not available on every Linux target).
private struct Float16Bits {
    let bits: UInt16
    init(_ bits: UInt16) { self.bits = bits }
    var float: Float {
        let sign: Float = bits & 0x8000 != 0 ? -1 : 1
        let exponent = Int((bits >> 10) & 0x1F)
        let fraction = Float(bits & 0x3FF)
        switch exponent {
        case 0: return sign * fraction * Float(sign: .plus, exponent: -24, significand: 1)
        case 31: return fraction == 0 ? sign * .infinity : .nan
        default: return sign * (1 + fraction / 1024) * Float(sign: .plus, exponent: exponent - 15, significand: 1)
        }
    }
}
