/// A deterministic random number generator (SplitMix64) for property tests: a failing case is
/// reproduced by its seed, which every property test prints in its failure messages. One generator
/// for every test target (SharedTests, WorkerTests).
public struct PropertyRandom: RandomNumberGenerator {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A number in `0..<n` (the plain modulo the older tests use, so their data stays the same).
    public mutating func int(_ n: Int) -> Int { Int(next() % UInt64(n)) }

    /// True with probability `p`.
    public mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    /// A string of 0…`maxLength` characters mixing ASCII, Hangul, emoji, quotes, backslashes and
    /// control characters (everything a field may carry).
    public mutating func string(maxLength: Int = 24) -> String {
        let pools: [[Character]] = [
            Array("abcdefghijklmnopqrstuvwxyz0123456789_-./"),
            Array("안녕하세요감사합니다"),
            ["\"", "\\", "\n", "\t", "\u{0}", "é", "🎙", " ", "{", "}", ":"],
        ]
        let n = Int.random(in: 0...maxLength, using: &self)
        return String((0..<n).map { _ in pools.randomElement(using: &self)!.randomElement(using: &self)! })
    }

    /// Up to `maxLength` random bytes.
    public mutating func bytes(maxLength: Int = 32) -> [UInt8] {
        (0..<Int.random(in: 0...maxLength, using: &self)).map { _ in UInt8.random(in: 0...255, using: &self) }
    }

    /// Any 64-bit value, biased toward the edges where varints change width.
    public mutating func uint64() -> UInt64 {
        switch Int.random(in: 0..<4, using: &self) {
        case 0: return [0, 1, 127, 128, 16_383, 16_384, UInt64(UInt32.max), UInt64.max].randomElement(using: &self)!
        case 1: return UInt64.random(in: 0...300, using: &self)
        default: return next() >> UInt64.random(in: 0...63, using: &self)
        }
    }

    public mutating func int64() -> Int64 {
        let v = Int64(bitPattern: uint64())
        return chance(0.5) ? v : (v == .min ? v : -v)
    }

    /// Any double, NaN (with payload), ±Inf, ±0 and subnormals included.
    public mutating func double() -> Double {
        switch Int.random(in: 0..<5, using: &self) {
        case 0: return [.nan, -.nan, .infinity, -.infinity, 0, -0.0, .leastNonzeroMagnitude, .greatestFiniteMagnitude].randomElement(using: &self)!
        case 1: return Double(bitPattern: next())
        default: return Double.random(in: -1e6...1e6, using: &self)
        }
    }
}
