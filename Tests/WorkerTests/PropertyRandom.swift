/// A deterministic random number generator (SplitMix64) for the readers' property tests: a failing
/// case is reproduced by its seed, which the tests print in their failure messages.
struct PropertyRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// True with probability `p`.
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }

    /// A string of 0…`maxLength` characters: ASCII, Hangul, quotes, backslashes, controls, emoji.
    mutating func string(maxLength: Int = 16) -> String {
        let pool: [Character] = Array("abcxyz019_-./ 안녕하세요\"\\\n\t\u{1}é🎙")
        return String((0..<Int.random(in: 0...maxLength, using: &self)).map { _ in pool.randomElement(using: &self)! })
    }
}
