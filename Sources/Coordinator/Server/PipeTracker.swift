import Logging
import Shared
import Synchronization

/// Logs connections as they come and go (addresses are cached at connect: nng cannot read them
/// at disconnect).
final class PipeTracker: Sendable {
    private let logger: Logger
    private let addresses = Mutex<[UInt32: String]>([:])

    init(logger: Logger) { self.logger = logger }

    func record(_ e: PipeEvent) {
        switch e.kind {
        case .connected:
            addresses.withLock { $0[e.pipeID] = e.remoteAddress ?? "?" }
            logger.debug("connection \(e.pipeID) from \(e.remoteAddress ?? "?")")
        case .disconnected:
            let addr = addresses.withLock { $0.removeValue(forKey: e.pipeID) } ?? "?"
            logger.debug("connection \(e.pipeID) from \(addr) closed")
        }
    }
}

