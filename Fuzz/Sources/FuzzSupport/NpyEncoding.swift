/// Writes `.npy` (format 1.0) bytes, the way `numpy.save` lays them out, so that fuzz targets can
/// re-encode what the reader parsed and read it again.
public enum NpyEncoding {
    /// A little-endian, C-order array of `descr` (`<i4`, `<i8`, `<f4`) whose elements are the
    /// raw little-endian `data` bytes.
    public static func encode(descr: String, shape: [Int], data: [UInt8]) -> [UInt8] {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': (\(dims)), }"
        // Pad with spaces so that the data starts at a multiple of 64 bytes; end with a newline.
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let length = header.utf8.count
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, 1, 0, UInt8(length & 0xFF), UInt8(length >> 8)]
        out += Array(header.utf8)
        out += data
        return out
    }

    /// The little-endian bytes of `values`, each `width` bytes wide.
    public static func littleEndian(_ values: [UInt64], width: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(values.count * width)
        for v in values { for k in 0..<width { out.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(k)))) } }
        return out
    }
}
