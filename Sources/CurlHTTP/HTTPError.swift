/// Why ``HTTPClient/send(_:)`` produced no response. HTTP error statuses are *not* errors here.
///
/// Messages never contain request headers or bodies (so never an `Authorization` value).
public enum HTTPError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The request could not be attempted: bad URL, unreadable body file, libcurl setup failure.
    case invalidRequest(String)
    /// libcurl failed the transfer: `code` is the `CURLcode` (7 couldn't connect, 28 timed out,
    /// 52 empty reply, 56 receive failure, 60 TLS certificate …), `message` its explanation.
    case transport(code: Int, message: String)
    /// The calling task was cancelled.
    case cancelled
    /// The client was shut down.
    case shutdown

    /// libcurl result codes the client tells apart.
    public enum Code {
        public static let unsupportedProtocol = 1
        public static let urlMalformat = 3
        public static let couldntResolveHost = 6
        public static let couldntConnect = 7
        public static let operationTimedOut = 28
        public static let tooManyRedirects = 47
        public static let gotNothing = 52
        public static let sendError = 55
        public static let recvError = 56
        public static let sslCertProblem = 58
        public static let peerFailedVerification = 60
        public static let sslCACertBadFile = 77
        public static let readError = 26
    }

    public var isTimeout: Bool {
        if case .transport(let code, _) = self { return code == Code.operationTimedOut }
        return false
    }

    public var isConnectionRefused: Bool {
        if case .transport(let code, _) = self { return code == Code.couldntConnect }
        return false
    }

    /// Failures a retry cannot fix (go-retryablehttp's permanent errors: bad scheme or URL, TLS
    /// certificate problems, too many redirects; plus local problems with the request itself).
    public var isPermanent: Bool {
        switch self {
        case .invalidRequest, .cancelled, .shutdown: return true
        case .transport(let code, _):
            return [Code.unsupportedProtocol, Code.urlMalformat, Code.tooManyRedirects, Code.sslCertProblem,
                    Code.peerFailedVerification, Code.sslCACertBadFile, Code.readError].contains(code)
        }
    }

    public var description: String {
        switch self {
        case .invalidRequest(let why): "invalid HTTP request: \(why)"
        case .transport(let code, let message): "HTTP transport error \(code): \(message)"
        case .cancelled: "HTTP request cancelled"
        case .shutdown: "HTTP client shut down"
        }
    }
}
