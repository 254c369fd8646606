import Foundation

/// Mel-cepstral distortion (MCD) between synthesized and target speech, after dynamic time warping.
///
/// The exact definition (docs/EVALUATION.md says the same, with the reasons for each choice):
///
/// 1. **Input**: mono samples at ``Configuration/sampleRate`` (16 kHz by default). Resampling is
///    the caller's job (the worker's `Resampler`); both signals must have that rate.
/// 2. **Frames**: 25 ms periodic Hann window (400 samples, `w[n] = 0.5 − 0.5 cos(2πn/400)`), 10 ms
///    hop (160 samples), no padding: frame `t` is samples `[160t, 160t + 400)`, and a signal of `N`
///    samples has `1 + ⌊(N − 400) / 160⌋` frames (shorter than one window: an error). Each windowed
///    frame is zero-padded to 512 points for a radix-2 FFT; `P_k = |X_k|²`, `k = 0…256`.
/// 3. **Mel filterbank**: 40 triangular filters from 0 to 8 kHz on the Slaney mel scale (linear
///    below 1 kHz at 200/3 Hz per mel, logarithmic above with step ln(6.4)/27), area-normalised
///    (`2 / (f_{m+2} − f_m)`): librosa's `filters.mel(sr=16000, n_fft=512, n_mels=40)` (htk=False,
///    norm="slaney"). `E_m = Σ_k W_{m,k} P_k`. 40 bands rather than 80: with 13 coefficients only the
///    envelope is kept anyway, and at a 512-point FFT (31.25 Hz bins) 80 Slaney bands would have
///    low filters narrower than a bin (empty or one-bin filters); 40 bands give every filter at
///    least two bins.
/// 4. **Mel cepstrum**: `L_m = ln(max(E_m, 1e-10))`, then the DCT-II scaled by 1/M (M = 40):
///    `c_d = (1/M) Σ_{m=0}^{M−1} L_m cos(π d (m + ½) / M)`, `d = 0…12`. With this scaling
///    `L_m ≈ c_0 + 2 Σ_d c_d cos(π d (m + ½)/M)`, the same relation as between a log spectrum and its
///    real cepstrum, which is what Kubichek's formula assumes.
/// 5. **Silence**: frames whose energy `Σ_m E_m` is more than ``Configuration/silenceThreshold``
///    (40 dB by default) below the loudest frame *of the same signal* are dropped before the
///    alignment (leading, trailing and inner pauses; gain-independent). `nil` keeps every frame.
/// 6. **Frame distance**: `d(x, y) = (10 / ln 10) · sqrt(2 Σ_{d=1}^{12} (x_d − y_d)²)` dB; `c_0`
///    (the level) is excluded, so a gain change costs nothing. By Parseval over the cosine basis,
///    this is the RMS over the 40 bands of the difference, in dB, between the two cepstrally
///    smoothed (quefrencies 1–12), level-removed log-mel spectra.
/// 7. **DTW**: symmetric steps (i−1, j), (i, j−1), (i−1, j−1), each of weight 1, local cost the
///    Euclidean distance of `c_1…c_12` (∝ the frame distance), from (0, 0) to (N−1, M−1):
///    `D(i, j) = d(i, j) + min(D(i−1, j−1), D(i−1, j), D(i, j−1))`. The path is traced back from the
///    end, preferring the diagonal, then (i−1, j), then (i, j−1) on ties.
/// 8. **MCD** = the mean of the frame distance over the `K` frame pairs on that path
///    (`max(N, M) ≤ K ≤ N + M − 1`).
///
/// This is the MFCC-style MCD many TTS papers report, not the SPTK one (`mcep` with an all-pass
/// warping α = 0.42 and 24+ coefficients): numbers are comparable only under the same definition.
/// Cost: O(N·M) time; memory one byte per cell for the path plus two rows.
public struct MelCepstralDistortion: Sendable {
    public struct Configuration: Sendable, Equatable {
        public var sampleRate = 16_000
        /// Window length in samples (25 ms at 16 kHz).
        public var windowLength = 400
        /// Hop in samples (10 ms at 16 kHz).
        public var hopLength = 160
        /// FFT size, a power of two ≥ ``windowLength``.
        public var fftSize = 512
        public var melBands = 40
        /// Cepstral coefficients computed, c0 … c(n−1); the distance uses c1 … c(n−1).
        public var coefficients = 13
        public var minFrequency = 0.0
        /// nil: sampleRate / 2.
        public var maxFrequency: Double? = nil
        /// Frames more than this many dB below the signal's loudest frame are dropped; nil keeps all.
        public var silenceThreshold: Double? = 40
        /// Floor of the mel energies before the log.
        public var energyFloor = 1e-10

        public init() {}
    }

    /// The outcome of one comparison.
    public struct Result: Sendable, Equatable {
        /// MCD in dB: the mean frame distance along the DTW path.
        public var mcd: Double
        /// Frame pairs on the path (K).
        public var pathLength: Int
        /// Frames compared on each side (after dropping silent frames).
        public var synthesizedFrames: Int
        public var targetFrames: Int
        /// The sum of the frame distances along the path (K · mcd).
        public var totalDistance: Double
    }

    public enum Failure: Error, Sendable, Equatable, CustomStringConvertible {
        /// A signal has fewer samples than one window.
        case tooShort(which: String, samples: Int, needed: Int)
        /// A sample is NaN or infinite.
        case notFinite(which: String, index: Int)
        /// A configuration that cannot work (the reason).
        case badConfiguration(String)
        /// Cepstra of different widths, fewer than 2 coefficients, or no frames.
        case badCepstra(String)

        public var description: String {
            switch self {
            case let .tooShort(which, samples, needed):
                "MCD: the \(which) signal has \(samples) samples, fewer than one analysis window (\(needed))"
            case let .notFinite(which, index): "MCD: sample \(index) of the \(which) signal is not finite"
            case let .badConfiguration(why): "MCD: bad configuration: \(why)"
            case let .badCepstra(why): "MCD: \(why)"
            }
        }
    }

    public let configuration: Configuration
    private let window: [Double]
    /// Per band: the first FFT bin with a non-zero weight and the weights from there.
    private let filters: [(start: Int, weights: [Double])]
    /// cos(π d (m + ½) / M) / M, [d][m].
    private let dct: [[Double]]
    private let fft: RadixTwoFFT

    public init(configuration: Configuration = Configuration()) throws(Failure) {
        let c = configuration
        guard c.sampleRate > 0, c.windowLength > 0, c.hopLength > 0 else { throw .badConfiguration("sampleRate, windowLength and hopLength must be > 0") }
        guard c.fftSize >= c.windowLength, c.fftSize & (c.fftSize - 1) == 0 else {
            throw .badConfiguration("fftSize \(c.fftSize) must be a power of two >= windowLength \(c.windowLength)")
        }
        guard c.melBands >= 2, c.coefficients >= 2, c.coefficients <= c.melBands else {
            throw .badConfiguration("need melBands >= 2 and 2 <= coefficients <= melBands")
        }
        let fmax = c.maxFrequency ?? Double(c.sampleRate) / 2
        guard c.minFrequency >= 0, fmax > c.minFrequency, fmax <= Double(c.sampleRate) / 2 else {
            throw .badConfiguration("need 0 <= minFrequency < maxFrequency <= sampleRate / 2")
        }
        guard c.energyFloor > 0 else { throw .badConfiguration("energyFloor must be > 0") }
        self.configuration = c
        window = (0..<c.windowLength).map { 0.5 - 0.5 * cos(2 * Double.pi * Double($0) / Double(c.windowLength)) }
        filters = Self.melFilterbank(sampleRate: Double(c.sampleRate), fftSize: c.fftSize, bands: c.melBands,
                                     minFrequency: c.minFrequency, maxFrequency: fmax)
        dct = (0..<c.coefficients).map { d in
            (0..<c.melBands).map { m in cos(Double.pi * Double(d) * (Double(m) + 0.5) / Double(c.melBands)) / Double(c.melBands) }
        }
        fft = RadixTwoFFT(size: c.fftSize)
    }

    // MARK: - the whole measure

    /// MCD of `synthesized` against `target` (both mono at ``Configuration/sampleRate``).
    public func distortion(synthesized: [Float], target: [Float]) throws(Failure) -> Result {
        let a = try voicedCepstra(synthesized, which: "synthesized")
        let b = try voicedCepstra(target, which: "target")
        return try Self.distortion(cepstra: a, b)
    }

    /// The mel cepstra `c_0…c_12` of every frame (steps 2–4), silent frames included.
    public func melCepstra(_ samples: [Float]) throws(Failure) -> [[Double]] {
        try analyse(samples, which: "input").cepstra
    }

    /// The cepstra of the frames that are not silent (step 5).
    public func voicedCepstra(_ samples: [Float], which: String = "input") throws(Failure) -> [[Double]] {
        let (cepstra, energies) = try analyse(samples, which: which)
        guard let threshold = configuration.silenceThreshold else { return cepstra }
        let loudest = energies.max() ?? 0
        guard loudest > 0 else { return cepstra } // digital silence: nothing to rank by
        let floor = loudest * pow(10, -threshold / 10)
        return zip(cepstra, energies).filter { $0.1 >= floor }.map(\.0)
    }

    // MARK: - distance and alignment (steps 6–8)

    /// The frame distance `(10 / ln 10) · sqrt(2 Σ_{d≥1} (x_d − y_d)²)` in dB (`x[0]`, `y[0]` = c0 ignored).
    public static func frameDistance(_ x: [Double], _ y: [Double]) -> Double {
        scale * euclidean(x, y)
    }

    /// `10 / ln 10 · sqrt 2`: the factor from the Euclidean distance of c1… to dB.
    static let scale = 10 / log(10.0) * 2.0.squareRoot()

    static func euclidean(_ x: [Double], _ y: [Double]) -> Double {
        var s = 0.0
        for d in 1..<min(x.count, y.count) {
            let e = x[d] - y[d]
            s += e * e
        }
        return s.squareRoot()
    }

    /// MCD between two sequences of cepstra (each frame `[c0, c1, …]`, c0 ignored) after DTW.
    public static func distortion(cepstra a: [[Double]], _ b: [[Double]]) throws(Failure) -> Result {
        let path = try alignment(a, b)
        var total = 0.0
        for (i, j) in path { total += frameDistance(a[i], b[j]) }
        return Result(mcd: total / Double(path.count), pathLength: path.count, synthesizedFrames: a.count,
                      targetFrames: b.count, totalDistance: total)
    }

    /// The DTW path (pairs of frame indices, in order from (0, 0) to (N−1, M−1)) of step 7.
    public static func alignment(_ a: [[Double]], _ b: [[Double]]) throws(Failure) -> [(Int, Int)] {
        guard !a.isEmpty, !b.isEmpty else { throw .badCepstra("no frames to compare (\(a.count) and \(b.count))") }
        let width = a[0].count
        guard width >= 2, a.allSatisfy({ $0.count == width }), b.allSatisfy({ $0.count == width }) else {
            throw .badCepstra("every frame must have the same number (>= 2) of coefficients")
        }
        let n = a.count, m = b.count
        // Moves: 0 diagonal, 1 from (i-1, j), 2 from (i, j-1). Two rows of cumulative cost.
        var moves = [UInt8](repeating: 0, count: n * m)
        var previous = [Double](repeating: .infinity, count: m)
        var current = [Double](repeating: .infinity, count: m)
        for i in 0..<n {
            for j in 0..<m {
                let cost = euclidean(a[i], b[j])
                if i == 0 && j == 0 { current[0] = cost; continue }
                var best = Double.infinity, move: UInt8 = 0
                if i > 0 && j > 0 { best = previous[j - 1]; move = 0 }
                if i > 0 && previous[j] < best { best = previous[j]; move = 1 }
                if j > 0 && current[j - 1] < best { best = current[j - 1]; move = 2 }
                current[j] = cost + best
                moves[i * m + j] = move
            }
            swap(&previous, &current)
        }
        var path: [(Int, Int)] = []
        path.reserveCapacity(n + m)
        var i = n - 1, j = m - 1
        path.append((i, j))
        while i > 0 || j > 0 {
            if i == 0 { j -= 1 } else if j == 0 { i -= 1 } else {
                switch moves[i * m + j] {
                case 0: i -= 1; j -= 1
                case 1: i -= 1
                default: j -= 1
                }
            }
            path.append((i, j))
        }
        return path.reversed()
    }

    // MARK: - analysis (steps 2–4)

    private func analyse(_ samples: [Float], which: String) throws(Failure) -> (cepstra: [[Double]], energies: [Double]) {
        let c = configuration
        guard samples.count >= c.windowLength else { throw .tooShort(which: which, samples: samples.count, needed: c.windowLength) }
        if let bad = samples.firstIndex(where: { !$0.isFinite }) { throw .notFinite(which: which, index: bad) }
        let frames = 1 + (samples.count - c.windowLength) / c.hopLength
        var cepstra: [[Double]] = []
        var energies: [Double] = []
        cepstra.reserveCapacity(frames)
        energies.reserveCapacity(frames)
        var re = [Double](repeating: 0, count: c.fftSize)
        var im = [Double](repeating: 0, count: c.fftSize)
        var power = [Double](repeating: 0, count: c.fftSize / 2 + 1)
        var logMel = [Double](repeating: 0, count: c.melBands)
        for t in 0..<frames {
            let start = t * c.hopLength
            for n in 0..<c.fftSize {
                re[n] = n < c.windowLength ? Double(samples[start + n]) * window[n] : 0
                im[n] = 0
            }
            fft.transform(&re, &im)
            for k in power.indices { power[k] = re[k] * re[k] + im[k] * im[k] }
            var energy = 0.0
            for (m, filter) in filters.enumerated() {
                var e = 0.0
                for (offset, w) in filter.weights.enumerated() { e += w * power[filter.start + offset] }
                energy += e
                logMel[m] = log(max(e, c.energyFloor))
            }
            energies.append(energy)
            cepstra.append(dct.map { row in
                var s = 0.0
                for m in 0..<c.melBands { s += row[m] * logMel[m] }
                return s
            })
        }
        return (cepstra, energies)
    }

    /// Slaney-scale triangular filters with area normalisation (librosa `filters.mel`, htk=False,
    /// norm="slaney").
    static func melFilterbank(sampleRate: Double, fftSize: Int, bands: Int, minFrequency: Double, maxFrequency: Double)
        -> [(start: Int, weights: [Double])]
    {
        let lowMel = hzToMel(minFrequency), highMel = hzToMel(maxFrequency)
        let edges = (0..<(bands + 2)).map { melToHz(lowMel + (highMel - lowMel) * Double($0) / Double(bands + 1)) }
        let bins = fftSize / 2 + 1
        let binHz = (0..<bins).map { Double($0) * sampleRate / Double(fftSize) }
        return (0..<bands).map { m in
            let lo = edges[m], mid = edges[m + 1], hi = edges[m + 2]
            let norm = 2 / (hi - lo)
            let weights = binHz.map { f in max(0, min((f - lo) / (mid - lo), (hi - f) / (hi - mid))) * norm }
            let first = weights.firstIndex { $0 > 0 } ?? 0
            let last = weights.lastIndex { $0 > 0 } ?? 0
            return (first, Array(weights[first...max(first, last)]))
        }
    }

    static let slaneyHzPerMel = 200.0 / 3
    static let slaneyLogStep = log(6.4) / 27

    static func hzToMel(_ f: Double) -> Double {
        f < 1000 ? f / slaneyHzPerMel : 1000 / slaneyHzPerMel + log(f / 1000) / slaneyLogStep
    }

    static func melToHz(_ mel: Double) -> Double {
        let breakMel = 1000 / slaneyHzPerMel
        return mel < breakMel ? mel * slaneyHzPerMel : 1000 * exp(slaneyLogStep * (mel - breakMel))
    }
}

/// An in-place iterative radix-2 complex FFT (decimation in time), `X_k = Σ_n x_n e^{−2πi kn/N}`.
struct RadixTwoFFT: Sendable {
    let size: Int
    private let cosines: [Double]
    private let sines: [Double]
    private let reversed: [Int]

    init(size: Int) {
        precondition(size >= 1 && size & (size - 1) == 0, "FFT size must be a power of two")
        self.size = size
        cosines = (0..<(size / 2)).map { cos(2 * Double.pi * Double($0) / Double(size)) }
        sines = (0..<(size / 2)).map { -sin(2 * Double.pi * Double($0) / Double(size)) }
        var bits = 0
        while (1 << bits) < size { bits += 1 }
        reversed = (0..<size).map { i in
            var r = 0
            for b in 0..<bits where i & (1 << b) != 0 { r |= 1 << (bits - 1 - b) }
            return r
        }
    }

    func transform(_ re: inout [Double], _ im: inout [Double]) {
        for i in 0..<size where i < reversed[i] {
            re.swapAt(i, reversed[i])
            im.swapAt(i, reversed[i])
        }
        var length = 2
        while length <= size {
            let half = length / 2, stride = size / length
            var start = 0
            while start < size {
                for k in 0..<half {
                    let wr = cosines[k * stride], wi = sines[k * stride]
                    let a = start + k, b = a + half
                    let tr = re[b] * wr - im[b] * wi
                    let ti = re[b] * wi + im[b] * wr
                    re[b] = re[a] - tr
                    im[b] = im[a] - ti
                    re[a] += tr
                    im[a] += ti
                }
                start += length
            }
            length *= 2
        }
    }
}
