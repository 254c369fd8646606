/// Exponential backoff with full jitter: attempt n waits a random time in
/// `[0, min(cap, base · 2^n)]`, at least `floor`.
public struct Backoff: Sendable {
    public var baseMs: Double
    public var capMs: Double
    public var floorMs: Double
    public private(set) var attempt = 0

    public init(baseMs: Double = 100, capMs: Double = 5_000, floorMs: Double = 20) {
        self.baseMs = baseMs
        self.capMs = capMs
        self.floorMs = floorMs
    }

    /// The next delay in milliseconds; advances the attempt counter.
    public mutating func nextDelayMs() -> Int {
        let exp = min(capMs, baseMs * Double(1 << min(attempt, 30)))
        attempt += 1
        return Int(max(floorMs, Double.random(in: 0...exp)))
    }

    public mutating func reset() { attempt = 0 }
}
