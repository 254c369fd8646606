import Foundation

extension AudioClip {
    /// The RMS level in dBFS, `20 log10 sqrt(mean(x²))` with full scale 1.0 (Resemblyzer's
    /// `normalize_volume` measure); `-infinity` for an empty or all-zero clip.
    public var rmsDBFS: Double {
        guard !samples.isEmpty else { return -.infinity }
        let meanSquare = samples.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(samples.count)
        return meanSquare > 0 ? 10 * log10(meanSquare) : -.infinity
    }

    /// The same audio scaled (up or down) so that its ``rmsDBFS`` is `level`; a silent clip is
    /// returned unchanged. Samples are not clipped (a float clip may exceed ±1 after raising).
    public func normalizedLoudness(to level: Double) -> AudioClip {
        let current = rmsDBFS
        guard current.isFinite else { return self }
        let gain = Float(pow(10, (level - current) / 20))
        var out = self
        out.samples = samples.map { $0 * gain }
        return out
    }
}
