/// Spacing of the POSTs to one webhook: at most one per `interval` (Slack: "1 per second"),
/// and nothing at all until a 429's `Retry-After` has passed.
public struct SlackRateLimiter: Sendable {
    public let interval: Duration
    private var nextAllowed: ContinuousClock.Instant?

    public init(interval: Duration = .seconds(1)) { self.interval = interval }

    /// Reserves the next slot: the instant at which the caller may POST (`now` or later).
    public mutating func reserve(now: ContinuousClock.Instant) -> ContinuousClock.Instant {
        let at = nextAllowed.map { max($0, now) } ?? now
        nextAllowed = at + interval
        return at
    }

    /// A 429: no POST before `until` (whichever is later of it and the next slot).
    public mutating func pause(until: ContinuousClock.Instant) {
        nextAllowed = nextAllowed.map { max($0, until) } ?? until
    }
}
