/// Encodes TensorBoard `Event` messages (the fields ``TensorBoardEvent`` reads) for seeds.
public enum EventEncoding {
    /// An `Event` with `wall_time` (1), `step` (2), `file_version` (3) when given, and a
    /// `summary` (5) of `simple_value` scalars when `scalars` is not empty.
    public static func event(wallTime: Double, step: Int64, fileVersion: String? = nil, scalars: [(tag: String, value: Float)] = []) -> [UInt8] {
        var out: [UInt8] = []
        key(1, 1, &out)
        out += littleEndian(wallTime.bitPattern, 8)
        key(2, 0, &out)
        varint(UInt64(bitPattern: step), &out)
        if let fileVersion { bytes(3, Array(fileVersion.utf8), &out) }
        if !scalars.isEmpty {
            var summary: [UInt8] = []
            for s in scalars {
                var value: [UInt8] = []
                bytes(1, Array(s.tag.utf8), &value)
                key(2, 5, &value)
                value += littleEndian(UInt64(s.value.bitPattern), 4)
                bytes(1, value, &summary)
            }
            bytes(5, summary, &out)
        }
        return out
    }

    static func key(_ field: UInt64, _ wireType: UInt64, _ out: inout [UInt8]) { varint(field << 3 | wireType, &out) }

    static func bytes(_ field: UInt64, _ payload: [UInt8], _ out: inout [UInt8]) {
        key(field, 2, &out)
        varint(UInt64(payload.count), &out)
        out += payload
    }

    static func varint(_ value: UInt64, _ out: inout [UInt8]) {
        var v = value
        while v >= 0x80 {
            out.append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        out.append(UInt8(v))
    }

    static func littleEndian(_ v: UInt64, _ width: Int) -> [UInt8] {
        (0..<width).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) }
    }
}
