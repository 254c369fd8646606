/// CRC-32/IEEE, the zlib `crc32` (reflected polynomial 0xEDB88320, initial value and final XOR
/// 0xFFFFFFFF). The `.wandb` transaction log checksums every chunk with it, over the chunk's type
/// byte followed by its payload, unmasked (this is *not* LevelDB's masked CRC-32C).
public enum CRC32 {
    /// The byte-at-a-time lookup table for the reflected polynomial.
    private static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// Continues a checksum the way zlib's `crc32(crc, buf, len)` does: `crc` is a previous
    /// result (0 to start), and the result is final, so `update(update(0, a), b) == checksum(a + b)`.
    public static func update<C: Collection>(_ crc: UInt32, _ data: C) -> UInt32 where C.Element == UInt8 {
        // Called from other modules this generic is not specialized: iterating `data` would cost
        // a witness call (or worse) per byte. Contiguous storage (arrays, slices, Data) takes the
        // buffer path.
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

    /// The CRC-32 of `data`.
    public static func checksum<C: Collection>(_ data: C) -> UInt32 where C.Element == UInt8 {
        update(0, data)
    }

    /// The checksum of a transaction-log chunk: CRC-32 over `[type] ++ payload`.
    public static func chunk<C: Collection>(type: UInt8, payload: C) -> UInt32 where C.Element == UInt8 {
        update(update(0, CollectionOfOne(type)), payload)
    }
}
