/// One HTTP request for ``HTTPClient``.
public struct HTTPRequest: Sendable, Equatable {
    public enum Method: String, Sendable, Equatable {
        case get = "GET", head = "HEAD", post = "POST", put = "PUT", patch = "PATCH", delete = "DELETE"
    }

    /// What to send after the headers.
    public enum Body: Sendable, Equatable {
        case none
        case bytes([UInt8])
        /// `length` bytes of a local file starting at `offset`, streamed (checkpoints can be
        /// gigabytes); re-read from the start on every attempt.
        case file(path: String, offset: Int64, length: Int64)

        public var count: Int64 {
            switch self {
            case .none: 0
            case .bytes(let b): Int64(b.count)
            case .file(_, _, let length): length
            }
        }
    }

    public var method: Method
    /// Absolute `http://` or `https://` URL.
    public var url: String
    /// Sent exactly as given. libcurl's own defaults (`Accept`, `Expect`, the form
    /// `Content-Type` of a POST body) are suppressed unless given here.
    public var headers: HTTPHeaders
    public var body: Body
    /// Limit for establishing the connection (TCP + TLS).
    public var connectTimeout: Duration
    /// Limit for the whole attempt; nil = none (large uploads).
    public var timeout: Duration?
    /// Abort when less than one byte per second moved for this long (a stalled connection),
    /// even without a total ``timeout``; nil = never.
    public var stallTimeout: Duration?

    public init(method: Method, url: String, headers: HTTPHeaders = [:], body: Body = .none,
                connectTimeout: Duration = .seconds(30), timeout: Duration? = .seconds(60),
                stallTimeout: Duration? = .seconds(120)) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.connectTimeout = connectTimeout
        self.timeout = timeout
        self.stallTimeout = stallTimeout
    }
}
