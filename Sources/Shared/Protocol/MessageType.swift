/// The type byte of an ``Envelope``. Requests travel worker → coordinator (or CLI → coordinator);
/// each has one reply type, and any request may instead be answered with ``error``.
public enum MessageType: UInt8, Sendable, CaseIterable, CustomStringConvertible {
    case register = 1
    case heartbeat = 2
    case poll = 3
    case metrics = 4
    case event = 5
    case result = 6
    case admin = 7

    case registered = 0x81
    case heartbeatReply = 0x82
    case pollReply = 0x83
    case metricsAck = 0x84
    case eventAck = 0x85
    case resultAck = 0x86
    case adminReply = 0x87
    case error = 0xFF

    /// The reply type that answers this request type.
    public var replyType: MessageType? {
        switch self {
        case .register: return .registered
        case .heartbeat: return .heartbeatReply
        case .poll: return .pollReply
        case .metrics: return .metricsAck
        case .event: return .eventAck
        case .result: return .resultAck
        case .admin: return .adminReply
        default: return nil
        }
    }

    public var description: String {
        switch self {
        case .register: return "register"
        case .heartbeat: return "heartbeat"
        case .poll: return "poll"
        case .metrics: return "metrics"
        case .event: return "event"
        case .result: return "result"
        case .admin: return "admin"
        case .registered: return "registered"
        case .heartbeatReply: return "heartbeat-reply"
        case .pollReply: return "poll-reply"
        case .metricsAck: return "metrics-ack"
        case .eventAck: return "event-ack"
        case .resultAck: return "result-ack"
        case .adminReply: return "admin-reply"
        case .error: return "error"
        }
    }
}
