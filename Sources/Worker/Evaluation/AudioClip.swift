/// Mono audio in memory: float samples in [-1, 1] at one sample rate.
public struct AudioClip: Sendable, Equatable {
    /// Mono samples, nominally in [-1, 1].
    public var samples: [Float]
    /// Samples per second.
    public var sampleRate: Int
    /// How many channels the source had before the mixdown (1 for mono).
    public var sourceChannels: Int

    public init(samples: [Float], sampleRate: Int, sourceChannels: Int = 1) {
        self.samples = samples
        self.sampleRate = sampleRate
        self.sourceChannels = sourceChannels
    }

    /// Length in seconds.
    public var duration: Double { sampleRate > 0 ? Double(samples.count) / Double(sampleRate) : 0 }

    /// The same audio at `rate`, through ``Resampler`` (unchanged when the rate already matches).
    public func resampled(to rate: Int) -> AudioClip {
        guard rate != sampleRate else { return self }
        return AudioClip(samples: Resampler(from: sampleRate, to: rate).process(samples), sampleRate: rate, sourceChannels: sourceChannels)
    }

    /// The samples as 16-bit PCM: `round(x · 32768)` clamped to [-32768, 32767], so 16-bit input
    /// read by libsndfile (which scales by 1/32768) comes back bit-exact.
    public var int16Samples: [Int16] {
        samples.map { x in
            let scaled = (Double(x) * 32768).rounded()
            return scaled.isNaN ? 0 : Int16(max(-32768, min(32767, scaled)))
        }
    }
}
