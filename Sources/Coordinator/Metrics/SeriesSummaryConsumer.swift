import Foundation
import Logging

/// Keeps the store's per-series summaries (``Store/advanceRollups(maxBatches:)``) up with what
/// ingest stores: woken after each ingest commit, it waits a moment so that many ingest batches
/// fold in one transaction, then folds until it has caught up. Its position is the store's
/// durable `rollups` cursor, so a restart continues where the last commit left it.
public final class SeriesSummaryConsumer: Sendable {
    private let store: Store
    private let logger: Logger
    private let coalesce: Duration
    private let wakes: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation

    /// - Parameter coalesce: how long a wake-up waits for more batches before folding.
    public init(store: Store, logger: Logger, coalesce: Duration = .milliseconds(200)) {
        self.store = store
        self.logger = logger
        self.coalesce = coalesce
        (wakes, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Something was stored (callable from any thread; never blocks).
    public func wake() { continuation.yield() }

    /// Folds until cancelled: once at start (batches stored before a crash), then after each wake.
    public func run() async {
        var failures = 0
        catchUp(&failures)
        for await _ in wakes {
            if Task.isCancelled { break }
            try? await Task.sleep(for: coalesce)
            catchUp(&failures)
            if failures > 0 { try? await Task.sleep(for: .seconds(min(30, 1 << min(failures, 5)))) ; wake() }
        }
    }

    private func catchUp(_ failures: inout Int) {
        do {
            while try store.advanceRollups() > 0 {}
            failures = 0
        } catch {
            failures += 1
            if failures == 1 || failures % 10 == 0 {
                logger.error("series summaries: cannot fold stored points (\(error)); curves stay exact from the stored points, retrying")
            }
        }
    }
}
