import Foundation
import Logging
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Keeps the store's per-series summaries (``Store/advanceRollups(maxBatches:)``) up with what
/// ingest stores: woken after each ingest commit, it waits a moment so that many ingest batches
/// fold at once, then folds until it has caught up. Its position is the store's durable
/// `rollups` cursor, so a restart continues where the last commit left it.
///
/// Folding runs on a thread of its own at a lower scheduling priority (nice 10): under load,
/// ingest, the alert rules and W&B delivery come first and the summaries lag behind (readers
/// stay exact: they add the batches not yet folded); the heavy part of a fold (reading and
/// summarising batches) holds no database lock, only its short write does.
public final class SeriesSummaryConsumer: Sendable {
    private let store: Store
    private let logger: Logger
    private let coalesce: Duration
    private let pending = Atomic<Bool>(false)
    private let stopped = Atomic<Bool>(false)
    private let signal = DispatchSemaphore(value: 0)

    /// - Parameter coalesce: how long a wake-up waits for more batches before folding.
    public init(store: Store, logger: Logger, coalesce: Duration = .seconds(1)) {
        self.store = store
        self.logger = logger
        self.coalesce = coalesce
    }

    /// Something was stored (callable from any thread; never blocks).
    public func wake() {
        if !pending.exchange(true, ordering: .acquiringAndReleasing) { signal.signal() }
    }

    /// Folds until cancelled: once at start (batches stored before a crash), then after each wake.
    public func run() async {
        let done = DispatchSemaphore(value: 0)
        let thread = Thread { [self] in
            #if canImport(Glibc)
            // On Linux the nice value is per thread: who = 0 is the calling thread (setpriority(2), NOTES).
            _ = setpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0, 10)
            #endif
            var failures = 0
            catchUp(&failures)
            while !stopped.load(ordering: .acquiring) {
                signal.wait()
                if stopped.load(ordering: .acquiring) { break }
                Thread.sleep(forTimeInterval: Double(coalesce.components.seconds) + Double(coalesce.components.attoseconds) / 1e18)
                pending.store(false, ordering: .releasing)
                catchUp(&failures)
                if failures > 0 {
                    Thread.sleep(forTimeInterval: Double(min(30, 1 << min(failures, 5))))
                    wake()
                }
            }
            done.signal()
        }
        thread.name = "tts-summaries"
        thread.start()
        await withTaskCancellationHandler {
            while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
        } onCancel: {
            stopped.store(true, ordering: .releasing)
            signal.signal()
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async { done.wait(); c.resume() }
        }
    }

    private func catchUp(_ failures: inout Int) {
        do {
            while !stopped.load(ordering: .acquiring), try store.advanceRollups(maxBatches: 500) > 0 {}
            failures = 0
        } catch {
            failures += 1
            if failures == 1 || failures % 10 == 0 {
                logger.error("series summaries: cannot fold stored points (\(error)); curves stay exact from the stored points, retrying")
            }
        }
    }
}
