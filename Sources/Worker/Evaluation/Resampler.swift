import Foundation

/// A band-limited sample-rate converter: polyphase Kaiser-windowed sinc interpolation.
///
/// Why windowed sinc and not linear interpolation: going down (22.05 kHz → 16 kHz) linear
/// interpolation folds everything between 8 and 11 kHz back into the band the ASR listens to, and
/// going either way it dulls the top octave; a windowed sinc low-pass at the lower rate's Nyquist
/// frequency does neither.
///
/// Design: the low-pass cutoff (its −6 dB point) is ``rolloff`` × the lower rate's Nyquist
/// frequency; the kernel spans ``zeroCrossings`` zero crossings of that sinc on each side, shaped by a
/// Kaiser window (β = ``beta``). At 22.05 → 16 kHz that is 234 taps, flat to within 10⁻⁶ (−123 dB)
/// up to 7.2 kHz (0.9 × the new Nyquist frequency) and at least 122 dB down from 8 kHz on, so
/// nothing above the new Nyquist frequency aliases back audibly (the same design scales to every
/// ratio: the transition band is 0.9–1.0 × the lower Nyquist frequency).
///
/// Output sample n sits at input position n·from/to exactly; with the ratio reduced to up/down
/// (320/441 for 22.05 → 16 kHz), there are `up` distinct fractional positions, and their kernels are
/// tabulated once (when `up` ≤ 4,096, true of every common rate pair, e.g. 160 for 44.1 → 16 kHz,
/// 1 for 48 → 16 kHz) and applied with SIMD dot products; other ratios compute each kernel per
/// sample (slow but exact). Samples outside the signal count as zero. The output has
/// `round(count · to / from)` samples. Equal rates return the input unchanged.
public struct Resampler: Sendable {
    public static let rolloff = 0.95
    public static let zeroCrossings = 80
    public static let beta = 12.5

    public let inputRate: Int
    public let outputRate: Int
    private let up: Int
    private let down: Int
    /// Half-width of the kernel in input samples.
    private let halfWidth: Int
    /// Taps per phase (`2 * halfWidth` rounded up to a multiple of 8; the extra taps are zero).
    private let width: Int
    /// Cutoff as a fraction of the input sample rate (cycles per input sample).
    private let cutoff: Double
    /// `up` kernels of ``width`` taps, for input offsets `-halfWidth + 1 ...`; empty when computed
    /// per sample.
    private let table: [Float]

    /// A converter from `inputRate` to `outputRate` (both positive, in Hz).
    public init(from inputRate: Int, to outputRate: Int) {
        precondition(inputRate > 0 && outputRate > 0, "sample rates must be positive")
        self.inputRate = inputRate
        self.outputRate = outputRate
        let g = Self.gcd(inputRate, outputRate)
        up = outputRate / g
        down = inputRate / g
        cutoff = 0.5 * min(1.0, Double(outputRate) / Double(inputRate)) * Self.rolloff
        halfWidth = Int((Double(Self.zeroCrossings) / (2 * cutoff)).rounded(.up))
        width = (2 * halfWidth + 7) / 8 * 8
        if inputRate != outputRate && up <= 4096 {
            var table = [Float](repeating: 0, count: up * width)
            let norm = 1 / Self.besselI0(Self.beta)
            for phase in 0..<up {
                let frac = Double(phase) / Double(up)
                for t in 0..<(2 * halfWidth) {
                    table[phase * width + t] = Float(Self.kernel(Double(t - halfWidth + 1) - frac, cutoff: cutoff, halfWidth: halfWidth, norm: norm))
                }
            }
            self.table = table
        } else {
            table = []
        }
    }

    /// `samples` at `outputRate`.
    public func process(_ samples: [Float]) -> [Float] {
        guard inputRate != outputRate, !samples.isEmpty else { return samples }
        let count = (samples.count * up + down / 2) / down
        let width = self.width, halfWidth = self.halfWidth, up = self.up, down = self.down
        return [Float](unsafeUninitializedCapacity: count) { y, initialized in
            samples.withUnsafeBufferPointer { x in
                if table.isEmpty {
                    var kernel = [Float](repeating: 0, count: width)
                    let norm = 1 / Self.besselI0(Self.beta)
                    for n in 0..<count {
                        let position = n * down
                        let k = position / up, phase = position % up
                        let frac = Double(phase) / Double(up)
                        for t in 0..<(2 * halfWidth) {
                            kernel[t] = Float(Self.kernel(Double(t - halfWidth + 1) - frac, cutoff: cutoff, halfWidth: halfWidth, norm: norm))
                        }
                        y[n] = kernel.withUnsafeBufferPointer { Self.edgeDot(x, first: k - halfWidth + 1, $0.baseAddress!, width) }
                    }
                } else {
                    table.withUnsafeBufferPointer { h in
                        let xp = x.baseAddress!, hp = h.baseAddress!
                        // Output n sits at input k + phase/up with k·up + phase = n·down.
                        let step = down / up, stepPhase = down % up
                        var k = 0, phase = 0
                        for n in 0..<count {
                            defer {
                                k += step
                                phase += stepPhase
                                if phase >= up { phase -= up; k += 1 }
                            }
                            let first = k - halfWidth + 1
                            let taps = hp + phase * width
                            if first >= 0 && first + width <= x.count {
                                y[n] = Self.dot(xp + first, taps, width)
                            } else {
                                y[n] = Self.edgeDot(x, first: first, taps, width)
                            }
                        }
                    }
                }
            }
            initialized = count
        }
    }

    /// Σ a[t]·b[t] over `count` (a multiple of 8) samples, in 8-lane SIMD with four accumulators.
    @inline(__always)
    private static func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ count: Int) -> Float {
        let ra = UnsafeRawPointer(a), rb = UnsafeRawPointer(b)
        var acc0 = SIMD8<Float>(), acc1 = SIMD8<Float>(), acc2 = SIMD8<Float>(), acc3 = SIMD8<Float>()
        @inline(__always) func product(_ t: Int) -> SIMD8<Float> {
            ra.loadUnaligned(fromByteOffset: 4 * t, as: SIMD8<Float>.self) * rb.loadUnaligned(fromByteOffset: 4 * t, as: SIMD8<Float>.self)
        }
        var t = 0
        while t + 32 <= count {
            acc0 += product(t)
            acc1 += product(t + 8)
            acc2 += product(t + 16)
            acc3 += product(t + 24)
            t += 32
        }
        while t < count {
            acc0 += product(t)
            t += 8
        }
        acc0 += acc2
        acc1 += acc3
        return (acc0 + acc1).sum()
    }

    /// The dot product near the ends of the signal, where taps fall outside it (zeros there).
    private static func edgeDot(_ x: UnsafeBufferPointer<Float>, first: Int, _ taps: UnsafePointer<Float>, _ width: Int) -> Float {
        let lo = max(0, -first), hi = min(width, x.count - first)
        var acc: Float = 0
        if lo < hi { for t in lo..<hi { acc += x[first + t] * taps[t] } }
        return acc
    }

    /// The windowed-sinc low-pass at offset `tau` input samples from the output instant
    /// (`norm` = 1 / I₀(β)).
    private static func kernel(_ tau: Double, cutoff: Double, halfWidth: Int, norm: Double) -> Double {
        let r = tau / Double(halfWidth)
        guard abs(r) < 1 else { return 0 }
        let x = 2 * cutoff * tau
        let sinc = x == 0 ? 1 : sin(Double.pi * x) / (Double.pi * x)
        return 2 * cutoff * sinc * besselI0(beta * (1 - r * r).squareRoot()) * norm
    }

    /// The zeroth-order modified Bessel function of the first kind (power series).
    private static func besselI0(_ x: Double) -> Double {
        var sum = 1.0, term = 1.0
        let half = x / 2
        for k in 1..<200 {
            term *= (half / Double(k)) * (half / Double(k))
            sum += term
            if term < sum * 1e-17 { break }
        }
        return sum
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
