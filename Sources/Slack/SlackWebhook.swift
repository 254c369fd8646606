import CurlHTTP
import Foundation
import Shared

/// A Slack incoming webhook: POSTs ``SlackMessage``s over the project's ``HTTPClient`` and
/// classifies the answers (``SlackPostOutcome``).
///
/// - One message at a time, in call order (a FIFO of callers), so alerts arrive in order.
/// - At most one POST per ``Configuration/minimumInterval`` (1 s, Slack's limit); a 429 pauses
///   the whole webhook for `Retry-After`.
/// - ``deliver(_:)`` retries 429, 5xx and network errors (exponential backoff with full jitter,
///   1 s → 60 s) until ``Configuration/maxAttempts`` or ``Configuration/maxAge``; Slack's refusals
///   (`invalid_payload`, `no_service`, `channel_is_archived` …) fail at once.
/// - The URL is a secret: no description, error or outcome contains any part of its path.
///
/// The durable outbox (what to send, what was sent) is the caller's: ``post(_:)`` makes exactly
/// one attempt for a sender that schedules its own retries; ``deliver(_:)`` does them in memory.
public actor SlackWebhook: CustomStringConvertible {
    public struct Configuration: Sendable, Equatable {
        /// Minimum spacing of POSTs. Default 1 s.
        public var minimumInterval: Duration
        public var connectTimeout: Duration
        /// Limit of one POST. Default 10 s.
        public var requestTimeout: Duration
        /// ``deliver(_:)`` gives up after this many attempts. Default 20.
        public var maxAttempts: Int
        /// ``deliver(_:)`` gives up when the next try would start later than this after the first. Default 15 min.
        public var maxAge: Duration
        /// Backoff after a retryable failure: full jitter in [0, min(cap, base · 2^n)], at least `floor`.
        public var backoffBase: Duration
        public var backoffCap: Duration
        public var backoffFloor: Duration

        public init(minimumInterval: Duration = .seconds(1), connectTimeout: Duration = .seconds(5),
                    requestTimeout: Duration = .seconds(10), maxAttempts: Int = 20, maxAge: Duration = .seconds(900),
                    backoffBase: Duration = .seconds(1), backoffCap: Duration = .seconds(60),
                    backoffFloor: Duration = .milliseconds(100)) {
            self.minimumInterval = minimumInterval
            self.connectTimeout = connectTimeout
            self.requestTimeout = requestTimeout
            self.maxAttempts = max(1, maxAttempts)
            self.maxAge = maxAge
            self.backoffBase = backoffBase
            self.backoffCap = backoffCap
            self.backoffFloor = backoffFloor
        }
    }

    /// A delivered message.
    public struct Receipt: Sendable, Equatable {
        /// POSTs it took (1 = first try).
        public var attempts: Int
        /// Rate-limit answers among them.
        public var rateLimited: Int
    }

    public nonisolated let url: SlackWebhookURL
    public nonisolated let configuration: Configuration
    private let client: HTTPClient
    private let clock = ContinuousClock()
    private var limiter: SlackRateLimiter
    /// FIFO of callers waiting for their turn; `busy` while one holds it.
    private var busy = false
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public init(url: SlackWebhookURL, client: HTTPClient, configuration: Configuration = Configuration()) {
        self.url = url
        self.client = client
        self.configuration = configuration
        limiter = SlackRateLimiter(interval: configuration.minimumInterval)
    }

    public nonisolated var description: String { "SlackWebhook(\(url))" }

    /// One POST of `message` (after the rate limiter's wait), classified. Never throws: every
    /// failure is an outcome. A 429 also pauses later POSTs for `Retry-After`.
    public func post(_ message: SlackMessage) async -> SlackPostOutcome {
        await acquireTurn()
        defer { releaseTurn() }
        return await attempt(message)
    }

    /// Delivers `message`, retrying what can be retried. Returns when Slack answered `ok`.
    /// - Throws: the permanent error (``SlackWebhookError/disposition`` says whether to drop the
    ///   message or disable the webhook), or the last retryable one once attempts or age ran out,
    ///   or `.cancelled` when the task is cancelled.
    public func deliver(_ message: SlackMessage) async throws(SlackWebhookError) -> Receipt {
        await acquireTurn()
        defer { releaseTurn() }
        let start = clock.now
        var backoff = Backoff(baseMs: Self.ms(configuration.backoffBase), capMs: Self.ms(configuration.backoffCap),
                              floorMs: Self.ms(configuration.backoffFloor))
        var attempts = 0
        var rateLimited = 0
        while true {
            attempts += 1
            let outcome = await attempt(message)
            let delay: Duration
            let lastError: SlackWebhookError
            switch outcome {
            case .delivered:
                return Receipt(attempts: attempts, rateLimited: rateLimited)
            case .permanent(let e):
                throw e
            case .rateLimited(let retryAfter):
                rateLimited += 1
                delay = retryAfter // the limiter already holds every POST until then
                lastError = outcome.error!
            case .retryable(let e):
                if e.code == .cancelled { throw e }
                delay = .milliseconds(backoff.nextDelayMs())
                lastError = e
            }
            if attempts >= configuration.maxAttempts || (clock.now - start) + delay > configuration.maxAge {
                var e = lastError
                e.message += " (gave up after \(attempts) attempts)"
                throw e
            }
            do {
                try await Task.sleep(for: delay)
            } catch {
                throw SlackWebhookError(code: .cancelled, status: nil, message: "delivery cancelled after \(attempts) attempts")
            }
        }
    }

    // MARK: - One attempt

    private func attempt(_ message: SlackMessage) async -> SlackPostOutcome {
        let at = limiter.reserve(now: clock.now)
        if at > clock.now {
            do { try await Task.sleep(until: at, clock: clock) } catch {
                return .retryable(SlackWebhookError(code: .cancelled, status: nil, message: "cancelled before the POST"))
            }
        }
        var headers = HTTPHeaders()
        headers.add("Content-Type", "application/json")
        let request = HTTPRequest(method: .post, url: url.secretValue, headers: headers, body: .bytes(message.jsonBody()),
                                  connectTimeout: configuration.connectTimeout, timeout: configuration.requestTimeout,
                                  stallTimeout: nil)
        let outcome: SlackPostOutcome
        do {
            outcome = SlackPostOutcome(response: try await client.send(request))
        } catch {
            outcome = SlackPostOutcome(error: error)
        }
        if case .rateLimited(let retryAfter) = outcome { limiter.pause(until: clock.now + retryAfter) }
        return redacted(outcome)
    }

    /// The outcome with any part of the URL scrubbed from its messages (a proxy or a mock could echo it).
    private func redacted(_ outcome: SlackPostOutcome) -> SlackPostOutcome {
        switch outcome {
        case .delivered, .rateLimited: return outcome
        case .retryable(var e):
            e.message = url.redact(e.message)
            return .retryable(e)
        case .permanent(var e):
            e.message = url.redact(e.message)
            return .permanent(e)
        }
    }

    // MARK: - Turns (FIFO)

    private func acquireTurn() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiting.append($0) }
        // The releaser handed the turn over with `busy` still set.
    }

    private func releaseTurn() {
        if waiting.isEmpty {
            busy = false
        } else {
            waiting.removeFirst().resume()
        }
    }

    private static func ms(_ d: Duration) -> Double {
        let (s, atto) = d.components
        return Double(s) * 1000 + Double(atto) / 1e15
    }
}
