import Foundation
import Testing
@testable import Worker

@Suite("Audio resampler (windowed sinc)")
struct AudioResamplerTests {
    func sine(_ frequency: Double, rate: Int, seconds: Double = 1) -> [Float] {
        (0..<Int(Double(rate) * seconds)).map { Float(0.5 * sin(2 * Double.pi * frequency * Double($0) / Double(rate))) }
    }

    /// RMS over the middle half (away from the zero-padded edges).
    func rms(_ x: [Float]) -> Double {
        let middle = x[(x.count / 4)..<(3 * x.count / 4)]
        return (middle.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(middle.count)).squareRoot()
    }

    @Test("22.05 → 16 kHz keeps a 1 kHz tone (length, level, and sample values against the exact sine)")
    func passband() {
        let out = Resampler(from: 22_050, to: 16_000).process(sine(1000, rate: 22_050))
        #expect(out.count == 16_000)
        let expected = sine(1000, rate: 16_000)
        var noise = 0.0, signal = 0.0
        for i in 2000..<14_000 { noise += pow(Double(out[i] - expected[i]), 2); signal += pow(Double(expected[i]), 2) }
        let snr = 10 * log10(signal / noise)
        #expect(snr > 60, "SNR \(snr) dB")
    }

    @Test("22.05 → 16 kHz removes a 10 kHz tone (above the new Nyquist frequency) instead of aliasing it to 6 kHz")
    func stopband() {
        let out = Resampler(from: 22_050, to: 16_000).process(sine(10_000, rate: 22_050))
        let attenuation = 20 * log10(rms(out) / (0.5 / 2.0.squareRoot()))
        #expect(attenuation < -60, "attenuation \(attenuation) dB")
    }

    @Test("upsampling 8 → 16 kHz and equal rates")
    func upAndEqual() {
        let x = sine(440, rate: 8_000)
        #expect(Resampler(from: 8_000, to: 16_000).process(x).count == 16_000)
        #expect(abs(rms(Resampler(from: 8_000, to: 16_000).process(x)) - rms(x)) < 0.01)
        #expect(Resampler(from: 16_000, to: 16_000).process(x) == x)
    }

    @Test("16-bit conversion round-trips libsndfile's 1/32768 scaling and clamps")
    func int16() {
        let clip = AudioClip(samples: [0, 1.0 / 32768, -1, 0.999_969_5, 2, -2], sampleRate: 16_000)
        #expect(clip.int16Samples == [0, 1, -32768, 32767, 32767, -32768])
    }
}
