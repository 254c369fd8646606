import Foundation

/// A band-limited sample-rate converter: polyphase Kaiser-windowed sinc interpolation.
///
/// Why windowed sinc and not linear interpolation: going down (22.05 kHz → 16 kHz) linear
/// interpolation folds everything between 8 and 11 kHz back into the band the ASR listens to, and
/// going either way it dulls the top octave; a windowed sinc low-pass at the lower rate's Nyquist
/// frequency does neither, at a cost (about 90 multiply-adds per output sample at 22.05 → 16 kHz)
/// that is negligible next to recognition.
///
/// Design: the low-pass cutoff is ``rolloff`` × the lower rate's Nyquist frequency; the kernel
/// spans ``zeroCrossings`` zero crossings of that sinc on each side, shaped by a Kaiser window
/// (β = ``beta``). Output sample n sits at input position n·from/to; with the ratio reduced to
/// up/down, there are `up` distinct fractional positions, and their kernels are computed once
/// (when `up` ≤ 4,096, true of every common rate pair, e.g. 160 for 44.1 → 16 kHz) or per sample
/// otherwise. Samples outside the signal count as zero. The output has
/// `round(count · to / from)` samples. Equal rates return the input unchanged.
public struct Resampler: Sendable {
    public static let rolloff = 0.945
    public static let zeroCrossings = 24
    public static let beta = 8.6

    public let inputRate: Int
    public let outputRate: Int
    private let up: Int
    private let down: Int
    /// Half-width of the kernel in input samples.
    private let halfWidth: Int
    /// Cutoff as a fraction of the input sample rate (cycles per input sample).
    private let cutoff: Double
    /// `up` kernels of `2 * halfWidth` taps, for input offsets `-halfWidth + 1 ... halfWidth`; empty
    /// when computed per sample.
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
        if inputRate != outputRate && up <= 4096 {
            var table = [Float](repeating: 0, count: up * 2 * halfWidth)
            for phase in 0..<up {
                let frac = Double(phase) / Double(up)
                for t in 0..<(2 * halfWidth) {
                    table[phase * 2 * halfWidth + t] = Float(Self.kernel(Double(t - halfWidth + 1) - frac, cutoff: cutoff, halfWidth: halfWidth))
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
        var out = [Float](repeating: 0, count: count)
        let width = 2 * halfWidth
        samples.withUnsafeBufferPointer { x in
            out.withUnsafeMutableBufferPointer { y in
                for n in 0..<count {
                    let position = n * down
                    let k = position / up           // input sample at or before the output instant
                    let phase = position % up
                    let first = k - halfWidth + 1
                    var acc: Float = 0
                    if !table.isEmpty {
                        table.withUnsafeBufferPointer { h in
                            let base = phase * width
                            let lo = max(0, -first), hi = min(width, x.count - first)
                            if lo < hi { for t in lo..<hi { acc += x[first + t] * h[base + t] } }
                        }
                    } else {
                        let frac = Double(phase) / Double(up)
                        for t in 0..<width where first + t >= 0 && first + t < x.count {
                            acc += x[first + t] * Float(Self.kernel(Double(t - halfWidth + 1) - frac, cutoff: cutoff, halfWidth: halfWidth))
                        }
                    }
                    y[n] = acc
                }
            }
        }
        return out
    }

    /// The windowed-sinc low-pass at offset `tau` input samples from the output instant.
    private static func kernel(_ tau: Double, cutoff: Double, halfWidth: Int) -> Double {
        let r = tau / Double(halfWidth)
        guard abs(r) < 1 else { return 0 }
        let x = 2 * cutoff * tau
        let sinc = x == 0 ? 1 : sin(Double.pi * x) / (Double.pi * x)
        return 2 * cutoff * sinc * besselI0(beta * (1 - r * r).squareRoot()) / besselI0(beta)
    }

    /// The zeroth-order modified Bessel function of the first kind (power series).
    private static func besselI0(_ x: Double) -> Double {
        var sum = 1.0, term = 1.0
        let half = x / 2
        for k in 1..<60 {
            term *= (half / Double(k)) * (half / Double(k))
            sum += term
            if term < sum * 1e-17 { break }
        }
        return sum
    }

    private static func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
}
