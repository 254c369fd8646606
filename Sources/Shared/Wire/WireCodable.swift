/// A value with a hand-written, versioned binary encoding on the wire.
public protocol WireCodable: Sendable {
    /// Decodes the value; every failure names the field.
    init(from reader: inout WireReader) throws(WireError)
    /// Appends the value's encoding.
    func encode(to writer: inout WireWriter)
}

extension WireCodable {
    /// The value encoded on its own.
    public func wireBytes() -> [UInt8] {
        var w = WireWriter()
        encode(to: &w)
        return w.bytes
    }

    /// Decodes a value that must use the whole buffer.
    public static func decode(_ bytes: [UInt8]) throws(WireError) -> Self {
        var r = WireReader(bytes)
        let v = try Self(from: &r)
        guard r.isAtEnd else {
            throw WireError(field: String(describing: Self.self), reason: .invalid("\(r.remaining) trailing bytes"))
        }
        return v
    }
}
