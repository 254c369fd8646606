/// A message that could not be decoded: which field, and why.
///
/// Decoding never traps: every length and count is checked against what is left in the buffer,
/// so a truncated, oversized or garbage message becomes one of these and the caller answers it
/// with an error reply.
public struct WireError: Error, Equatable, Sendable, CustomStringConvertible {
    /// What went wrong.
    public enum Reason: Equatable, Sendable {
        /// The buffer ended before the field was complete.
        case truncated
        /// The field's bytes are not a valid value (bad UTF-8, an unknown enum tag, an overlong varint).
        case invalid(String)
        /// A length or count larger than the protocol allows.
        case tooLarge(Int)
    }

    /// The field being decoded, e.g. `envelope.workerId` or `heartbeat.progress.step`.
    public let field: String
    public let reason: Reason

    public init(field: String, reason: Reason) {
        self.field = field
        self.reason = reason
    }

    public var description: String {
        switch reason {
        case .truncated: return "message truncated while reading \(field)"
        case .invalid(let why): return "invalid \(field): \(why)"
        case .tooLarge(let n): return "\(field) too large (\(n))"
        }
    }
}
