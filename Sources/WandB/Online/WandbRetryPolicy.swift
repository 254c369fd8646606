import CurlHTTP
import Foundation

/// When and how long to wait before re-sending a W&B request, as wandb-core does
/// (`core/internal/clients/retry_policy.go`, `backoff.go`; go-retryablehttp):
///
/// - wait `min(maxWait, minWait · 2^attempt · U[1, 1.25])` — attempt 0 is the first retry,
///   so 2 s, 4 s, 8 s … capped at 60 s — unless the response carries one `Retry-After`
///   header (seconds, possibly fractional, or an HTTP date), which wins;
/// - status rules per client (``Rules``); transport errors are retried unless permanent
///   (bad URL or scheme, TLS certificate, too many redirects);
/// - at most ``maxRetries`` retries (GraphQL 20, file_stream 10085 ≈ a week, file PUT 20),
///   each attempt limited to ``attemptTimeout`` (30 s, 180 s, none).
///
/// The waits are parameters so tests can run the same logic in milliseconds.
public struct WandbRetryPolicy: Sendable, Equatable {
    public enum Rules: String, Sendable, Equatable {
        /// `RetryMostFailures`: not retried 400, 401, 403, 404, 409, 410, 413, 422, 501; every other
        /// 4xx/5xx (429 included), status 0 and ≥ 600 retried.
        case mostFailures
        /// `UpsertBucketRetryPolicy`: 409 *is* retried; 400, 410, 422 are not; else as mostFailures.
        case upsertBucket
        /// go-retryablehttp `ErrorPropagatedRetryPolicy` (file PUTs): retried 429, 0 and 5xx
        /// except 501; every other status is final.
        case fileTransfer
    }

    public var rules: Rules
    public var maxRetries: Int
    public var minWait: Duration
    public var maxWait: Duration
    /// Per-attempt limit; nil = none.
    public var attemptTimeout: Duration?
    /// Statuses that count as success. file_stream accepts 2xx–300 (`filestreamimpl.go`).
    public var success: ClosedRange<Int>
    /// A safety bound on a server's `Retry-After` (wandb-core has none).
    public var maxRetryAfter: Duration

    public init(rules: Rules, maxRetries: Int, minWait: Duration = .seconds(2), maxWait: Duration = .seconds(60),
                attemptTimeout: Duration?, success: ClosedRange<Int> = 200...299, maxRetryAfter: Duration = .seconds(3600)) {
        self.rules = rules
        self.maxRetries = maxRetries
        self.minWait = minWait
        self.maxWait = maxWait
        self.attemptTimeout = attemptTimeout
        self.success = success
        self.maxRetryAfter = maxRetryAfter
    }

    /// GraphQL queries and mutations other than UpsertBucket.
    public static let graphQL = WandbRetryPolicy(rules: .mostFailures, maxRetries: 20, attemptTimeout: .seconds(30))
    public static let upsertBucket = WandbRetryPolicy(rules: .upsertBucket, maxRetries: 20, attemptTimeout: .seconds(30))
    public static let fileStream = WandbRetryPolicy(rules: .mostFailures, maxRetries: 10085, attemptTimeout: .seconds(180), success: 200...300)
    public static let fileTransfer = WandbRetryPolicy(rules: .fileTransfer, maxRetries: 20, attemptTimeout: nil)

    /// The same policy with other waits (tests: milliseconds instead of seconds).
    public func withWaits(min: Duration, max: Duration) -> WandbRetryPolicy {
        var p = self
        p.minWait = min
        p.maxWait = max
        return p
    }

    public func isSuccess(_ status: Int) -> Bool { success.contains(status) }

    public func shouldRetry(status: Int) -> Bool {
        if isSuccess(status) { return false }
        switch rules {
        case .mostFailures:
            return Self.retriesMostFailures(status)
        case .upsertBucket:
            if status == 409 { return true }
            if [400, 410, 422].contains(status) { return false }
            return Self.retriesMostFailures(status)
        case .fileTransfer:
            return status == 0 || status == 429 || (status >= 500 && status != 501)
        }
    }

    /// Statuses `RetryMostFailures` gives up on at once.
    public static let notRetried: Set<Int> = [400, 401, 403, 404, 409, 410, 413, 422, 501]

    private static func retriesMostFailures(_ status: Int) -> Bool {
        if notRetried.contains(status) { return false }
        if status == 0 || status >= 600 { return true }
        return (400...599).contains(status)
    }

    public func shouldRetry(error: HTTPError) -> Bool { !error.isPermanent }

    /// The wait after failed attempt number `attempt` (0 = before the first retry).
    /// `jitter` in [0, 1] picks the point in `U[1, 1.25]`.
    public func delay(attempt: Int, response: HTTPResponse?, now: Date = Date(),
                      jitter: Double = Double.random(in: 0...1)) -> Duration {
        if let response {
            if let after = Self.retryAfter(response.headers, now: now) { return min(after, maxRetryAfter) }
            // W&B's documented rate-limit reply: wait out the window when the quota is spent.
            if response.status == 429, response.headers["RateLimit-Remaining"] == "0",
               let reset = response.headers["RateLimit-Reset"].flatMap(Double.init), reset.isFinite, reset > 0 {
                return max(backoff(attempt: attempt, jitter: jitter), min(.seconds(reset), maxRetryAfter))
            }
        }
        return backoff(attempt: attempt, jitter: jitter)
    }

    /// `min(maxWait, minWait · 2^attempt · (1 + 0.25·jitter))`.
    public func backoff(attempt: Int, jitter: Double) -> Duration {
        let n = Swift.min(Swift.max(attempt, 0), 32)
        let j = Swift.min(Swift.max(jitter, 0), 1)
        let seconds = Self.seconds(minWait) * pow(2, Double(n)) * (1 + 0.25 * j)
        return Swift.min(maxWait, .seconds(seconds))
    }

    /// A single `Retry-After` header as a wait: seconds (`"120"`, `"1.5"`) or an RFC 1123 date
    /// (`"Fri, 31 Dec 1999 23:59:59 GMT"`, a past date waits 0). nil when absent, repeated or
    /// unparseable (then the exponential backoff applies).
    public static func retryAfter(_ headers: HTTPHeaders, now: Date = Date()) -> Duration? {
        let values = headers.values(for: "Retry-After")
        guard values.count == 1 else { return nil }
        let text = values[0].trimmingCharacters(in: .whitespaces)
        if let s = Double(text), s.isFinite { return .seconds(Swift.max(0, s)) }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        if let date = f.date(from: text) { return .seconds(Swift.max(0, date.timeIntervalSince(now))) }
        return nil
    }

    static func seconds(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) + Double(atto) * 1e-18
    }
}

/// The four policies a ``WandbAPI`` uses.
public struct WandbRetryPolicies: Sendable, Equatable {
    public var graphQL: WandbRetryPolicy
    public var upsertBucket: WandbRetryPolicy
    public var fileStream: WandbRetryPolicy
    public var fileTransfer: WandbRetryPolicy

    public init(graphQL: WandbRetryPolicy = .graphQL, upsertBucket: WandbRetryPolicy = .upsertBucket,
                fileStream: WandbRetryPolicy = .fileStream, fileTransfer: WandbRetryPolicy = .fileTransfer) {
        self.graphQL = graphQL
        self.upsertBucket = upsertBucket
        self.fileStream = fileStream
        self.fileTransfer = fileTransfer
    }

    /// wandb-core's values.
    public static let standard = WandbRetryPolicies()

    /// The standard rules and budgets with other waits (tests).
    public func withWaits(min: Duration, max: Duration) -> WandbRetryPolicies {
        WandbRetryPolicies(graphQL: graphQL.withWaits(min: min, max: max),
                           upsertBucket: upsertBucket.withWaits(min: min, max: max),
                           fileStream: fileStream.withWaits(min: min, max: max),
                           fileTransfer: fileTransfer.withWaits(min: min, max: max))
    }
}
