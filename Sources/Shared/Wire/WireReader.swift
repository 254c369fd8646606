/// Reads protocol fields written by ``WireWriter`` from a byte buffer, checking every length
/// against what remains so that garbage never traps.
public struct WireReader: Sendable {
    /// Largest string or byte string a single field may hold (a whole message is bounded by the
    /// listener's receive limit already; this bounds allocations from a lying length prefix).
    public static let maxFieldLength = 64 << 20
    /// Largest element count of a repeated field.
    public static let maxCount = 10_000_000

    private let buffer: [UInt8]
    /// Offset of the next unread byte.
    public private(set) var offset: Int
    /// Strings read with ``readInternedString(_:table:)`` so far, per table (at most
    /// ``maxInterned`` each).
    private var interned: [[String]] = []
    /// Per table, where the next look-up starts: after the last match (keys repeat in cycles).
    private var internedNext: [Int] = []
    /// How many distinct strings one reader interns per table (a message's run ids, its keys).
    public static let maxInterned = 64

    public init(_ bytes: [UInt8], offset: Int = 0) {
        buffer = bytes
        self.offset = offset
    }

    /// Bytes left to read.
    public var remaining: Int { buffer.count - offset }
    public var isAtEnd: Bool { offset >= buffer.count }

    public mutating func readByte(_ field: String) throws(WireError) -> UInt8 {
        guard offset < buffer.count else { throw WireError(field: field, reason: .truncated) }
        defer { offset += 1 }
        return buffer[offset]
    }

    public mutating func readBool(_ field: String) throws(WireError) -> Bool {
        switch try readByte(field) {
        case 0: return false
        case 1: return true
        case let b: throw WireError(field: field, reason: .invalid("boolean byte \(b)"))
        }
    }

    public mutating func readVarint(_ field: String) throws(WireError) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let b = try readByte(field)
            if shift == 63 && b > 1 { throw WireError(field: field, reason: .invalid("varint overflows 64 bits")) }
            result |= UInt64(b & 0x7F) << shift
            if b & 0x80 == 0 { return result }
            shift += 7
            if shift > 63 { throw WireError(field: field, reason: .invalid("varint longer than 10 bytes")) }
        }
    }

    /// A varint that must fit in `Int` and be at most `max`.
    public mutating func readCount(_ field: String, max: Int = WireReader.maxCount) throws(WireError) -> Int {
        let v = try readVarint(field)
        guard v <= UInt64(max) else { throw WireError(field: field, reason: .tooLarge(Int(clamping: v))) }
        return Int(v)
    }

    public mutating func readInt(_ field: String) throws(WireError) -> Int {
        Int(Int64(bitPattern: try readVarint(field)))
    }

    public mutating func readSigned(_ field: String) throws(WireError) -> Int64 {
        let u = try readVarint(field)
        return Int64(bitPattern: (u >> 1) ^ (0 &- (u & 1)))
    }

    public mutating func readFixed64(_ field: String) throws(WireError) -> UInt64 {
        guard remaining >= 8 else { throw WireError(field: field, reason: .truncated) }
        var v: UInt64 = 0
        for i in 0..<8 { v |= UInt64(buffer[offset + i]) << (8 * UInt64(i)) }
        offset += 8
        return v
    }

    public mutating func readDouble(_ field: String) throws(WireError) -> Double {
        Double(bitPattern: try readFixed64(field))
    }

    public mutating func readBytes(_ field: String) throws(WireError) -> [UInt8] {
        let n = try readCount(field, max: WireReader.maxFieldLength)
        guard n <= remaining else { throw WireError(field: field, reason: .truncated) }
        defer { offset += n }
        return Array(buffer[offset..<offset + n])
    }

    public mutating func readString(_ field: String) throws(WireError) -> String {
        let n = try readCount(field, max: WireReader.maxFieldLength)
        guard n <= remaining else { throw WireError(field: field, reason: .truncated) }
        let s: String? = buffer.withUnsafeBufferPointer { p in
            let bytes = UnsafeBufferPointer(rebasing: p[offset..<offset + n])
            // Keys and ids are ASCII: check that cheaply and take the direct path (the generic
            // `String(validating:as:)` is not specialized and costs several times more).
            var high: UInt8 = 0
            for b in bytes { high |= b }
            if high < 0x80 { return String(decoding: bytes, as: UTF8.self) }
            return String(validating: bytes, as: UTF8.self)
        }
        guard let s else { throw WireError(field: field, reason: .invalid("not UTF-8")) }
        offset += n
        return s
    }

    /// Reads a string that is likely to repeat within the message (a run id, a metric key):
    /// when its bytes equal a string this reader returned before from the same `table`, that
    /// same string is returned (no allocation, and later comparisons of the two are
    /// pointer-fast). Use one table per field, so that each field's cycle is predicted on its
    /// own. The result equals what ``readString(_:)`` returns.
    public mutating func readInternedString(_ field: String, table: Int) throws(WireError) -> String {
        let start = offset
        let n = try readCount(field, max: WireReader.maxFieldLength)
        guard n <= remaining else { throw WireError(field: field, reason: .truncated) }
        while interned.count <= table {
            interned.append([])
            internedNext.append(0)
        }
        let count = interned[table].count
        if count > 0 {
            let from = internedNext[table]
            let found: Int? = buffer.withUnsafeBufferPointer { p -> Int? in
                let bytes = UnsafeBufferPointer(rebasing: p[offset..<offset + n])
                var i = from
                for _ in 0..<count {
                    if i >= count { i = 0 }
                    if Self.equal(interned[table][i], bytes) { return i }
                    i += 1
                }
                return nil
            }
            if let found {
                offset += n
                internedNext[table] = found + 1
                return interned[table][found]
            }
        }
        offset = start
        let s = try readString(field)
        if interned[table].count < Self.maxInterned {
            interned[table].append(s)
            internedNext[table] = interned[table].count
        }
        return s
    }

    /// Whether `s` is exactly the UTF-8 `bytes`.
    private static func equal(_ s: String, _ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        let utf8 = s.utf8
        guard utf8.count == bytes.count else { return false }
        let n = bytes.count
        if n == 0 { return true }
        return utf8.withContiguousStorageIfAvailable { stored -> Bool in
            let a = UnsafeRawPointer(stored.baseAddress!), b = UnsafeRawPointer(bytes.baseAddress!)
            var i = 0
            while i + 8 <= n {
                if a.loadUnaligned(fromByteOffset: i, as: UInt64.self) != b.loadUnaligned(fromByteOffset: i, as: UInt64.self) { return false }
                i += 8
            }
            while i < n {
                if a.load(fromByteOffset: i, as: UInt8.self) != b.load(fromByteOffset: i, as: UInt8.self) { return false }
                i += 1
            }
            return true
        } ?? false
    }

    /// All bytes from the current offset to the end.
    public mutating func readRest() -> [UInt8] {
        defer { offset = buffer.count }
        return Array(buffer[offset...])
    }

    public mutating func readOptional<T>(
        _ field: String, _ body: (inout WireReader) throws(WireError) -> T
    ) throws(WireError) -> T? {
        switch try readByte(field) {
        case 0: return nil
        case 1: return try body(&self)
        case let b: throw WireError(field: field, reason: .invalid("presence byte \(b)"))
        }
    }

    public mutating func readArray<T>(
        _ field: String, _ body: (inout WireReader) throws(WireError) -> T
    ) throws(WireError) -> [T] {
        let n = try readCount(field)
        // Each element takes at least one byte: a count beyond what is left is a lie.
        guard n <= remaining else { throw WireError(field: field, reason: .truncated) }
        var out: [T] = []
        out.reserveCapacity(n)
        for _ in 0..<n { out.append(try body(&self)) }
        return out
    }
}
