/// The typed error reply: a stable code, a message for humans, and whether retrying the same
/// request later can succeed.
public struct ProtocolError: Error, Equatable, Sendable, WireCodable, CustomStringConvertible {
    /// Stable error codes; new ones may be added, so decoders keep unknown values.
    public struct Code: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
        public let rawValue: UInt16
        public init(rawValue: UInt16) { self.rawValue = rawValue }

        public static let malformed = Code(rawValue: 1)
        public static let unsupportedVersion = Code(rawValue: 2)
        public static let tooLarge = Code(rawValue: 3)
        public static let unauthorized = Code(rawValue: 4)
        public static let unknownSession = Code(rawValue: 5)
        public static let staleLease = Code(rawValue: 6)
        public static let unknownType = Code(rawValue: 7)
        public static let notFound = Code(rawValue: 8)
        public static let invalidRequest = Code(rawValue: 9)
        public static let unavailable = Code(rawValue: 10)
        public static let `internal` = Code(rawValue: 11)

        public var description: String {
            switch self {
            case .malformed: return "malformed"
            case .unsupportedVersion: return "unsupported_version"
            case .tooLarge: return "too_large"
            case .unauthorized: return "unauthorized"
            case .unknownSession: return "unknown_session"
            case .staleLease: return "stale_lease"
            case .unknownType: return "unknown_type"
            case .notFound: return "not_found"
            case .invalidRequest: return "invalid_request"
            case .unavailable: return "unavailable"
            case .internal: return "internal"
            default: return "code_\(rawValue)"
            }
        }
    }

    public var code: Code
    public var message: String
    /// True when the same request may succeed later (e.g. the store is momentarily unavailable).
    public var retryable: Bool

    public init(_ code: Code, _ message: String, retryable: Bool = false) {
        self.code = code
        self.message = message
        self.retryable = retryable
    }

    public init(from r: inout WireReader) throws(WireError) {
        code = Code(rawValue: UInt16(truncatingIfNeeded: try r.readVarint("error.code")))
        message = try r.readString("error.message")
        retryable = try r.readBool("error.retryable")
    }

    public func encode(to w: inout WireWriter) {
        w.writeVarint(UInt64(code.rawValue))
        w.write(message)
        w.write(retryable)
    }

    public var description: String { "\(code): \(message)" }
}
