import CurlHTTP

/// Why a ``WandbAPI`` call failed. No case ever carries the API key: server text is redacted
/// before it is stored here.
public enum WandbAPIError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The settings are not online (offline, disabled, or no API key).
    case notOnline(reason: String)
    /// HTTP 401/403 from the W&B server: the key is wrong, revoked or lacks access. Not retried;
    /// the caller keeps its data queued.
    case unauthorized(operation: String, status: Int)
    /// A status the retry policy does not retry (400, 404, 409, 413, 422 …).
    case rejected(operation: String, status: Int, body: String)
    /// HTTP 200 with GraphQL `errors` (genqlient treats it as final too); messages joined by "; ".
    case graphQL(operation: String, message: String)
    /// Every allowed attempt failed with a retryable error; `lastFailure` describes the last one.
    case exhausted(operation: String, attempts: Int, lastFailure: String)
    /// A transport error the policy does not retry (TLS certificate, bad URL …).
    case transport(operation: String, error: HTTPError)
    /// A 2xx reply without the expected fields.
    case invalidResponse(operation: String, detail: String)
    /// A local file to upload could not be read.
    case localFile(path: String, detail: String)
    /// A file_stream body over 10 MiB: split it (``FileStreamRequest/linesFitting(_:budget:)``).
    case requestTooLarge(bytes: Int, limit: Int)
    /// The artifact flow met a state it cannot continue from.
    case artifact(String)
    case cancelled

    /// Whether retrying the same call later can succeed without anything changing locally
    /// (true for exhausted retries and transport problems; false for rejections).
    public var isTransient: Bool {
        switch self {
        case .exhausted, .cancelled: true
        case .transport(_, let e): !e.isPermanent
        default: false
        }
    }

    public var description: String {
        switch self {
        case .notOnline(let reason):
            "W&B is not online: \(reason)"
        case .unauthorized(let op, let status):
            "W&B rejected the API key (HTTP \(status) on \(op)): check WANDB_API_KEY (and the entity/project access); data stays queued"
        case .rejected(let op, let status, let body):
            "W&B \(op) failed with HTTP \(status)" + (body.isEmpty ? "" : ": \(body)")
        case .graphQL(let op, let message):
            "W&B \(op) returned GraphQL errors: \(message)"
        case .exhausted(let op, let attempts, let last):
            "W&B \(op) failed after \(attempts) attempts; last: \(last)"
        case .transport(let op, let error):
            "W&B \(op): \(error)"
        case .invalidResponse(let op, let detail):
            "W&B \(op) returned an unexpected reply: \(detail)"
        case .localFile(let path, let detail):
            "cannot read \(path) for upload: \(detail)"
        case .requestTooLarge(let bytes, let limit):
            "file_stream request of \(bytes) bytes is over the \(limit)-byte limit"
        case .artifact(let why):
            "W&B artifact upload: \(why)"
        case .cancelled:
            "W&B request cancelled"
        }
    }
}
