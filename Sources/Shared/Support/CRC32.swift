/// CRC-32/IEEE, the zlib `crc32` (reflected polynomial 0xEDB88320, initial value and final XOR
/// 0xFFFFFFFF). The `.wandb` transaction log checksums every chunk with it, over the chunk's type
/// byte followed by its payload, unmasked (this is *not* LevelDB's masked CRC-32C).
public enum CRC32 {
    /// Slicing-by-8 tables: `tables[k][b]` is the CRC of byte `b` followed by `k` zero bytes
    /// (`tables[0]` is the classic byte-at-a-time table), flattened as `k * 256 + b`.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for n in 0..<256 {
            var c = UInt32(n)
            for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            t[n] = c
        }
        for k in 1..<8 {
            for n in 0..<256 {
                let prev = t[(k - 1) * 256 + n]
                t[k * 256 + n] = t[Int(prev & 0xFF)] ^ (prev >> 8)
            }
        }
        return t
    }()

    /// Continues a checksum the way zlib's `crc32(crc, buf, len)` does: `crc` is a previous
    /// result (0 to start), and the result is final, so `update(update(0, a), b) == checksum(a + b)`.
    public static func update<C: Collection>(_ crc: UInt32, _ data: C) -> UInt32 where C.Element == UInt8 {
        // Called from other modules this generic is not specialized: iterating `data` would cost
        // a witness call (or worse) per byte. Contiguous storage (arrays, slices, Data) takes the
        // buffer path.
        if let r = data.withContiguousStorageIfAvailable({ update(crc, UnsafeRawBufferPointer($0)) }) { return r }
        return Array(data).withUnsafeBytes { update(crc, $0) }
    }

    /// The loop over raw memory: eight bytes per step (slicing-by-8), then byte by byte.
    public static func update(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        var c = ~crc
        guard let base = bytes.baseAddress else { return crc }
        let n = bytes.count
        tables.withUnsafeBufferPointer { tp in
            let t = tp.baseAddress!
            var i = 0
            while i + 8 <= n {
                let lo = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i, as: UInt32.self)) ^ c
                let hi = UInt32(littleEndian: base.loadUnaligned(fromByteOffset: i + 4, as: UInt32.self))
                c = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                    ^ t[3 * 256 + Int(hi & 0xFF)] ^ t[2 * 256 + Int((hi >> 8) & 0xFF)]
                    ^ t[1 * 256 + Int((hi >> 16) & 0xFF)] ^ t[Int(hi >> 24)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(base.load(fromByteOffset: i, as: UInt8.self))) & 0xFF)] ^ (c >> 8)
                i += 1
            }
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
