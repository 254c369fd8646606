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

    /// A sum of tones sampled at `rate`.
    func tones(_ tones: [(f: Double, a: Double)], rate: Int, seconds: Double) -> [Float] {
        (0..<Int(Double(rate) * seconds)).map { i in Float(tones.reduce(0.0) { $0 + $1.a * sin(2 * Double.pi * $1.f * Double(i) / Double(rate)) }) }
    }

    /// SNR of `out` against the exact tones at `rate`, away from the first and last 0.1 s.
    func snr(_ out: [Float], _ tones: [(f: Double, a: Double)], rate: Int) -> Double {
        var signal = 0.0, noise = 0.0
        for i in (rate / 10)..<(out.count - rate / 10) {
            let exact = tones.reduce(0.0) { $0 + $1.a * sin(2 * Double.pi * $1.f * Double(i) / Double(rate)) }
            signal += exact * exact
            noise += (Double(out[i]) - exact) * (Double(out[i]) - exact)
        }
        return 10 * log10(signal / noise)
    }

    @Test("22.05 → 16 kHz: five tones up to 7.2 kHz (0.9 × the new Nyquist frequency) come out exact to ≥ 125 dB SNR")
    func multiTone() {
        // tts-bench resample's signal; measured 139.6 dB (sox's default `rate`: 107.8 dB).
        let five: [(f: Double, a: Double)] = [(220, 0.2), (1_000, 0.2), (3_150, 0.15), (5_500, 0.1), (7_200, 0.05)]
        let out = Resampler(from: 22_050, to: 16_000).process(tones(five, rate: 22_050, seconds: 1))
        #expect(out.count == 16_000)
        let measured = snr(out, five, rate: 16_000)
        #expect(measured > 125, "SNR \(measured) dB")
    }

    @Test("22.05 → 16 kHz: tones from 8.1 to 11 kHz (above the new Nyquist frequency) are attenuated ≥ 120 dB (measured 134–143 dB)")
    func stopbandAttenuation() {
        let resampler = Resampler(from: 22_050, to: 16_000)
        for f in [8_100.0, 8_500, 9_000, 10_000, 11_000] {
            let out = resampler.process(sine(f, rate: 22_050))
            let attenuation = 20 * log10(rms(out) / (0.5 / 2.0.squareRoot()))
            #expect(attenuation < -120, "\(f) Hz: \(attenuation) dB")
        }
    }

    @Test("other rates to 16 kHz (44.1, 48, 24, 8 kHz, and a ratio without a table): lengths and ≥ 120 dB SNR in the passband (measured 131.6–139.6 dB)")
    func otherRates() {
        for rate in [44_100, 48_000, 24_000, 8_000, 22_051] {
            // Tones up to 0.9 × the lower Nyquist frequency.
            let top = 0.9 * Double(min(rate, 16_000)) / 2
            let mix: [(f: Double, a: Double)] = [(300, 0.3), (top / 3, 0.2), (top, 0.1)]
            let seconds = rate == 22_051 ? 0.4 : 1.0
            let input = tones(mix, rate: rate, seconds: seconds)
            let out = Resampler(from: rate, to: 16_000).process(input)
            #expect(out.count == (input.count * 16_000 + rate / 2) / rate, "\(rate) Hz")
            let measured = snr(out, mix, rate: 16_000)
            #expect(measured > 120, "\(rate) Hz → 16 kHz: SNR \(measured) dB")
        }
    }

    @Test("16-bit conversion round-trips libsndfile's 1/32768 scaling and clamps")
    func int16() {
        let clip = AudioClip(samples: [0, 1.0 / 32768, -1, 0.999_969_5, 2, -2], sampleRate: 16_000)
        #expect(clip.int16Samples == [0, 1, -32768, 32767, 32767, -32768])
    }
}
