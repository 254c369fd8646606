import Foundation

/// A NumPy `.npy` array (format versions 1.0–3.0, C order, little-endian `int32`, `int64` or
/// `float32`): the trainer's feature files (`target_text_ids_path`, `target_codes_path`).
public struct NpyArray: Sendable, Equatable {
    /// The element types the trainer's files use.
    public enum DType: String, Sendable, Equatable {
        case int32 = "<i4"
        case int64 = "<i8"
        case float32 = "<f4"

        var size: Int { self == .int64 ? 8 : 4 }
    }

    public var dtype: DType
    public var shape: [Int]
    /// The elements in C order, widened to Int64 for the integer types (empty for float32).
    public var integers: [Int64]
    /// The elements for float32 (empty for the integer types).
    public var floats: [Float]

    public var count: Int { shape.reduce(1, *) }

    /// Reads `path`. - Throws: ``NpyError`` naming the file and what is wrong with it.
    public static func read(contentsOf path: String) throws(NpyError) -> NpyArray {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw NpyError(path: path, message: FileManager.default.fileExists(atPath: path) ? "cannot be read (permissions?)" : "does not exist")
        }
        return try parse(Array(data), path: path)
    }

    /// Parses the bytes of a `.npy` file (`path` names it in errors).
    public static func parse(_ bytes: [UInt8], path: String = "<bytes>") throws(NpyError) -> NpyArray {
        let magic: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59] // \x93NUMPY
        guard bytes.count >= 10, Array(bytes[0..<6]) == magic else {
            throw NpyError(path: path, message: "is not a .npy file (no \\x93NUMPY magic)")
        }
        let major = bytes[6]
        let headerLength: Int
        let headerStart: Int
        switch major {
        case 1:
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
            headerStart = 10
        case 2, 3:
            guard bytes.count >= 12 else { throw NpyError(path: path, message: "is truncated inside its header") }
            headerLength = Int(bytes[8]) | Int(bytes[9]) << 8 | Int(bytes[10]) << 16 | Int(bytes[11]) << 24
            headerStart = 12
        default:
            throw NpyError(path: path, message: "has .npy format version \(major).\(bytes[7]), which is not supported (1.0–3.0 are)")
        }
        guard headerLength >= 0, headerStart + headerLength <= bytes.count else {
            throw NpyError(path: path, message: "is truncated inside its header")
        }
        let header = String(decoding: bytes[headerStart..<(headerStart + headerLength)], as: UTF8.self)
        guard let descrValue = Self.value(of: "descr", in: header), let quote = descrValue.first, quote == "'" || quote == "\"",
              let end = descrValue.dropFirst().firstIndex(of: quote) else {
            throw NpyError(path: path, message: "has no 'descr' in its header: \(header.prefix(120))")
        }
        let descr = String(descrValue[descrValue.index(after: descrValue.startIndex)..<end])
        // A one-byte-aligned spelling of the same types (`|i4` does not exist; `=i4` means native).
        let normalized = descr.replacingOccurrences(of: "=", with: "<")
        guard let dtype = DType(rawValue: normalized) else {
            throw NpyError(path: path, message: "has dtype \(descr); expected int32 (<i4), int64 (<i8) or float32 (<f4), little-endian")
        }
        if let fortran = Self.value(of: "fortran_order", in: header), fortran.hasPrefix("True") {
            throw NpyError(path: path, message: "is in Fortran order; save it in C order (numpy.ascontiguousarray)")
        }
        guard let shapeText = Self.value(of: "shape", in: header), shapeText.hasPrefix("("), let close = shapeText.firstIndex(of: ")") else {
            throw NpyError(path: path, message: "has no shape in its header: \(header.prefix(120))")
        }
        var shape: [Int] = []
        for part in shapeText[shapeText.index(after: shapeText.startIndex)..<close].split(separator: ",") {
            let t = part.trimmingCharacters(in: .whitespaces)
            if t.isEmpty { continue }
            guard let n = Int(t), n >= 0 else { throw NpyError(path: path, message: "has a bad shape \(shapeText[...close])") }
            shape.append(n)
        }
        // A shape whose element or byte count overflows `Int` describes no array a file can hold
        // (and `count` could not be computed for it).
        var count = 1
        for n in shape {
            let (product, overflow) = count.multipliedReportingOverflow(by: n)
            guard !overflow else { throw NpyError(path: path, message: "has a shape \(shape) with more elements than fit in memory") }
            count = product
        }
        let dataStart = headerStart + headerLength
        let (needed, overflow) = count.multipliedReportingOverflow(by: dtype.size)
        guard !overflow else { throw NpyError(path: path, message: "has a shape \(shape) of \(dtype) larger than fits in memory") }
        guard bytes.count - dataStart >= needed else {
            throw NpyError(path: path, message: "holds \(bytes.count - dataStart) data bytes, but shape \(shape) of \(dtype) needs \(needed) (truncated file?)")
        }
        var out = NpyArray(dtype: dtype, shape: shape, integers: [], floats: [])
        bytes.withUnsafeBytes { raw in
            let base = raw.baseAddress!.advanced(by: dataStart)
            switch dtype {
            case .int32:
                out.integers = (0..<count).map { Int64(Int32(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
            case .int64:
                out.integers = (0..<count).map { Int64(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self)) }
            case .float32:
                out.floats = (0..<count).map { Float(bitPattern: UInt32(littleEndian: base.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }
        return out
    }

    /// The text after `'key':` in a header dict, up to the end of the header.
    private static func value(of key: String, in header: String) -> Substring? {
        for quote in ["'", "\""] {
            if let r = header.range(of: "\(quote)\(key)\(quote)") {
                var rest = header[r.upperBound...].drop { $0 == " " }
                guard rest.first == ":" else { continue }
                rest = rest.dropFirst().drop { $0 == " " }
                return rest
            }
        }
        return nil
    }
}

/// A `.npy` file that cannot be used, naming the file and what to do.
public struct NpyError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "\(path) \(message)" }
}
