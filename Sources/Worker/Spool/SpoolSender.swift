import Foundation
import Logging
import Shared

/// Moves the spool to the coordinator: flushes (fsync) every `flushIntervalMs`, sends what is
/// durable and not yet acknowledged in `metrics` requests (one in flight, in order), and trims
/// on each acknowledgement. When the coordinator is away it keeps spooling and retries with
/// backoff; nothing is dropped.
public struct SpoolSender: Sendable {
    let spool: MetricSpool
    let connection: CoordinatorConnection
    let logger: Logger
    let flushIntervalMs: Int
    let maxPointsPerRequest: Int

    public init(spool: MetricSpool, connection: CoordinatorConnection, logger: Logger, flushIntervalMs: Int = 50, maxPointsPerRequest: Int = 20_000) {
        self.spool = spool
        self.connection = connection
        self.logger = logger
        self.flushIntervalMs = flushIntervalMs
        self.maxPointsPerRequest = maxPointsPerRequest
    }

    /// Runs until cancelled; on cancellation it makes a last flush and one last delivery attempt.
    public func run() async {
        var backoff = Backoff(baseMs: 100, capMs: 5_000)
        var warnedFlush = false
        var warnedSend = false
        while true {
            let cancelled = Task.isCancelled
            do {
                try spool.flush()
                if warnedFlush {
                    logger.notice("the spool is writable again")
                    warnedFlush = false
                }
            } catch {
                if !warnedFlush {
                    logger.error("\(error.message); metrics stay in memory and are retried")
                    warnedFlush = true
                }
            }
            var sentSomething = false
            do {
                let batch = try spool.records(after: spool.ackedSequence, maxPoints: maxPointsPerRequest)
                if !batch.isEmpty {
                    let timeout = cancelled ? 2_000 : 15_000
                    let request = EncodedMetricsRequest(entries: batch.map(\.bytes))
                    let (ack, _): (Ack, UInt64) = try await connection.call(.metrics, request, expect: .metricsAck, timeoutMs: timeout)
                    try spool.acknowledge(upTo: ack.highestSequence)
                    sentSomething = ack.highestSequence > 0
                    backoff.reset()
                    if warnedSend {
                        logger.notice("metrics reach the coordinator again (backlog \(spool.backlog) entries)")
                        warnedSend = false
                    }
                }
            } catch is CancellationError {
                return
            } catch {
                if cancelled { return }
                if !warnedSend {
                    logger.warning("cannot deliver metrics (\(error)); spooling \(spool.backlog) entries on disk and retrying")
                    warnedSend = true
                }
                try? await Task.sleep(for: .milliseconds(backoff.nextDelayMs()))
                continue
            }
            if cancelled { return }
            // Keep sending back-to-back while there is a backlog; otherwise wait for the next flush.
            if !sentSomething || spool.ackedSequence >= spool.durableSequence {
                try? await Task.sleep(for: .milliseconds(flushIntervalMs))
            }
        }
    }
}
