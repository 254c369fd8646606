/// CRC-32C (Castagnoli: reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF)
/// and the *masked* form that TFRecord files (TensorBoard event files) store.
///
/// TFRecord masks each stored checksum, because a CRC computed over data that itself contains
/// CRCs is weak: `masked = ((crc >> 15) | (crc << 17)) &+ 0xa282ead8`.
public enum CRC32C {
    /// The byte-at-a-time lookup table for the reflected polynomial.
    private static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// The constant TFRecord adds after rotating a checksum.
    public static let maskDelta: UInt32 = 0xA282_EAD8

    /// Continues a checksum: `crc` is a previous result (0 to start) and the result is final, so
    /// `update(update(0, a), b) == checksum(a + b)`.
    public static func update<C: Collection>(_ crc: UInt32, _ data: C) -> UInt32 where C.Element == UInt8 {
        if let r = data.withContiguousStorageIfAvailable({ update(crc, UnsafeRawBufferPointer($0)) }) { return r }
        return Array(data).withUnsafeBytes { update(crc, $0) }
    }

    /// The byte loop over raw memory.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { t in
            for b in bytes { c = t[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    /// The CRC-32C of `data` (`checksum("123456789") == 0xE3069283`).
    public static func checksum<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        update(0, data)
    }

    /// Masks a checksum the way TFRecord stores it.
    public static func mask(_ crc: UInt32) -> UInt32 {
        ((crc >> 15) | (crc << 17)) &+ maskDelta
    }

    /// Undoes ``mask(_:)``.
    public static func unmask(_ masked: UInt32) -> UInt32 {
        let rotated = masked &- maskDelta
        return (rotated >> 17) | (rotated << 15)
    }

    /// The masked CRC-32C of `data`, as a TFRecord stores it.
    public static func maskedChecksum<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        mask(checksum(data))
    }
}
