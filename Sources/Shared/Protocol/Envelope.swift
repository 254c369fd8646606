/// The versioned frame around every message on the wire.
///
/// Layout (protocol v1): `"TC"` magic, version byte, type byte, then `workerId` (string),
/// `session` and `sequence` (varints), then the body, which runs to the end of the message.
///
/// - `workerId` names the worker's durable identity (empty for CLI/admin requests).
/// - `session` is issued by the coordinator at `register`; every later request carries it.
/// - `sequence` is the request's idempotency key within its session: the worker retries with the
///   same sequence, and the coordinator dedups by `(session, sequence)` where it matters.
public struct Envelope: Sendable, Equatable {
    public static let magic: (UInt8, UInt8) = (0x54, 0x43) // "TC"
    /// The protocol version this build speaks.
    public static let currentVersion: UInt8 = 1

    public var version: UInt8
    public var type: MessageType
    public var workerId: String
    public var session: UInt64
    public var sequence: UInt64
    public var body: [UInt8]

    public init(
        version: UInt8 = Envelope.currentVersion, type: MessageType, workerId: String = "",
        session: UInt64 = 0, sequence: UInt64 = 0, body: [UInt8] = []
    ) {
        self.version = version
        self.type = type
        self.workerId = workerId
        self.session = session
        self.sequence = sequence
        self.body = body
    }

    /// Builds an envelope whose body is `message` encoded.
    public init<M: WireCodable>(
        _ type: MessageType, _ message: M, workerId: String = "", session: UInt64 = 0, sequence: UInt64 = 0
    ) {
        self.init(type: type, workerId: workerId, session: session, sequence: sequence, body: message.wireBytes())
    }

    public func encoded() -> [UInt8] {
        var w = WireWriter(capacity: 32 + workerId.utf8.count + body.count)
        w.write(Envelope.magic.0)
        w.write(Envelope.magic.1)
        w.write(version)
        w.write(type.rawValue)
        w.write(workerId)
        w.writeVarint(session)
        w.writeVarint(sequence)
        w.writeRaw(body)
        return w.bytes
    }

    /// What decoding an envelope can fail with. The version is checked before anything else is
    /// read, so a peer from a newer protocol gets a precise answer.
    public enum DecodeFailure: Error, Equatable, Sendable, CustomStringConvertible {
        case notAnEnvelope
        case unsupportedVersion(UInt8)
        case unknownType(UInt8)
        case malformed(WireError)

        public var description: String {
            switch self {
            case .notAnEnvelope: return "not a tts-cluster message (bad magic bytes)"
            case .unsupportedVersion(let v):
                return "unsupported protocol version \(v); this coordinator speaks version \(Envelope.currentVersion)"
            case .unknownType(let t): return "unknown message type \(t)"
            case .malformed(let e): return "malformed message: \(e)"
            }
        }
    }

    public static func decode(_ bytes: [UInt8]) throws(DecodeFailure) -> Envelope {
        guard bytes.count >= 4, bytes[0] == magic.0, bytes[1] == magic.1 else { throw .notAnEnvelope }
        guard bytes[2] == currentVersion else { throw .unsupportedVersion(bytes[2]) }
        guard let type = MessageType(rawValue: bytes[3]) else { throw .unknownType(bytes[3]) }
        var r = WireReader(bytes, offset: 4)
        do throws(WireError) {
            let workerId = try r.readString("envelope.workerId")
            guard workerId.utf8.count <= 256 else {
                throw WireError(field: "envelope.workerId", reason: .tooLarge(workerId.utf8.count))
            }
            let session = try r.readVarint("envelope.session")
            let sequence = try r.readVarint("envelope.sequence")
            return Envelope(
                version: bytes[2], type: type, workerId: workerId, session: session, sequence: sequence,
                body: r.readRest())
        } catch {
            throw .malformed(error)
        }
    }

    /// Decodes the body as `M`, requiring the whole body to be used.
    public func decodeBody<M: WireCodable>(_: M.Type) throws(WireError) -> M {
        try M.decode(body)
    }
}
