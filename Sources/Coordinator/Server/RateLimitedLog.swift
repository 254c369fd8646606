import Logging
import Synchronization

/// Logs at most `limit` lines per window and then one summary of what was suppressed, so a
/// flood of garbage cannot flood the log.
final class RateLimitedLog: Sendable {
    private struct State { var windowStart = ContinuousClock.now; var count = 0; var suppressed = 0 }
    private let limit: Int
    private let window: Duration
    private let level: Logger.Level
    private let state = Mutex(State())

    init(limit: Int, perSeconds: Int, level: Logger.Level = .warning) {
        self.limit = limit
        window = .seconds(perSeconds)
        self.level = level
    }

    func log(_ logger: Logger, _ message: String) {
        let (emit, summary) = state.withLock { s -> (Bool, Int) in
            let now = ContinuousClock.now
            var summary = 0
            if now - s.windowStart > window {
                summary = s.suppressed
                s = State(windowStart: now, count: 0, suppressed: 0)
            }
            s.count += 1
            if s.count > limit { s.suppressed += 1; return (false, summary) }
            return (true, summary)
        }
        if summary > 0 { logger.log(level: level, "\(summary) similar messages suppressed") }
        if emit { logger.log(level: level, "\(message)") }
    }
}
