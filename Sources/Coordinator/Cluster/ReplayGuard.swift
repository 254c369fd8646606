import Foundation
import Shared
import Synchronization

/// Refuses token proofs that are too old, from the future, or already seen (a captured
/// `register` replayed from another host).
final class ReplayGuard: Sendable {
    private let window: Double
    private let seen = Mutex<[String: Double]>([:])

    init(windowSeconds: Double) { window = windowSeconds }

    /// nil when the proof is fresh and new; otherwise why it was refused.
    func admit(_ proof: TokenProof, now: Date = Date()) -> String? {
        let ts = Double(proof.timestampMs) / 1000
        let nowS = now.timeIntervalSince1970
        guard abs(nowS - ts) <= window else {
            return String(format: "the proof's clock is %.0f s off the coordinator's (allowed: %.0f s); check the worker's clock", nowS - ts, window)
        }
        let key = proof.nonce.hexString
        return seen.withLock { s -> String? in
            if s[key] != nil { return "this registration was already used (replayed request)" }
            if s.count > 100_000 { s = s.filter { nowS - $0.value <= 2 * window } }
            s[key] = nowS
            return nil
        }
    }
}
