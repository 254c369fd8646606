import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Delivers SIGINT/SIGTERM to a handler instead of killing the process.
public final class SignalWatcher {
    private let sources: [any DispatchSourceSignal]

    /// - Parameter handler: called on a private queue with the signal number, once per signal.
    public init(signals: [Int32] = [SIGINT, SIGTERM], handler: @escaping @Sendable (Int32) -> Void) {
        let queue = DispatchQueue(label: "tts.signals")
        sources = signals.map { sig in
            signal(sig, SIG_IGN)
            let s = DispatchSource.makeSignalSource(signal: sig, queue: queue)
            s.setEventHandler { handler(sig) }
            s.resume()
            return s
        }
    }

    deinit { sources.forEach { $0.cancel() } }
}
