import Foundation
import Scoring
import Testing

/// MCD (Sources/Scoring/MelCepstralDistortion.swift, docs/EVALUATION.md): the distance and the DTW
/// on hand-made cepstra, then the whole measure on synthetic vowel sequences at 16 kHz.
@Suite("Mel-cepstral distortion")
struct MelCepstralDistortionTests {
    /// Kubichek's frame distance, written out again: (10 / ln 10) · sqrt(2 · Σ_{d=1}^{D} (x_d − y_d)²).
    static func kubichek(_ x: [Double], _ y: [Double]) -> Double {
        var sum = 0.0
        for d in 1..<x.count { sum += (x[d] - y[d]) * (x[d] - y[d]) }
        return 10 / log(10) * (2 * sum).squareRoot()
    }

    // MARK: distance and alignment on known cepstra

    @Test("the frame distance is (10/ln 10)·sqrt(2·Σ_{d≥1} Δc_d²) and ignores c0")
    func frameDistanceIsKubichek() {
        var state: UInt64 = 42
        func next() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Double(state >> 11) / Double(1 << 53) * 4 - 2
        }
        for _ in 0..<50 {
            let x = (0..<13).map { _ in next() }, y = (0..<13).map { _ in next() }
            #expect(abs(MelCepstralDistortion.frameDistance(x, y) - Self.kubichek(x, y)) < 1e-12)
            var shifted = y
            shifted[0] += 100 // the level (c0) is not part of the distance
            #expect(MelCepstralDistortion.frameDistance(x, shifted) == MelCepstralDistortion.frameDistance(x, y))
        }
        // One coefficient 1 apart: 10/ln 10 · sqrt 2 = 6.1418… dB.
        #expect(abs(MelCepstralDistortion.frameDistance([0, 0], [0, 1]) - 6.141_851_463_713_754) < 1e-12)
    }

    @Test("DTW on hand-computed cepstra: path (0,0) (1,1) (1,2), MCD = (0 + d(a1,b1) + 0) / 3")
    func handComputedAlignment() throws {
        // c1, c2 of a: (0,0) (1,1); of b: (0,0) (0,2) (1,1); c0 differs everywhere and must not matter.
        let a: [[Double]] = [[9, 0, 0], [-4, 1, 1]]
        let b: [[Double]] = [[0, 0, 0], [3, 0, 2], [7, 1, 1]]
        // Local Euclidean costs: d00 = 0, d01 = 2, d02 = √2, d10 = √2, d11 = √2, d12 = 0.
        // D00 = 0, D01 = 2, D02 = 2 + √2, D10 = √2, D11 = √2 + min(0, 2, √2) = √2,
        // D12 = 0 + min(D01 = 2, D02 = 2 + √2, D11 = √2) = √2 (from (1,1)). Back: (1,2) ← (1,1) ← (0,0).
        let path = try MelCepstralDistortion.alignment(a, b)
        #expect(path.map { [$0.0, $0.1] } == [[0, 0], [1, 1], [1, 2]])
        let r = try MelCepstralDistortion.distortion(cepstra: a, b)
        let expected = (Self.kubichek(a[0], b[0]) + Self.kubichek(a[1], b[1]) + Self.kubichek(a[1], b[2])) / 3
        #expect(abs(expected - 10 / log(10) * 2 / 3) < 1e-12) // sqrt(2 · 2) = 2
        #expect(abs(r.mcd - expected) < 1e-12)
        #expect(r.pathLength == 3 && r.synthesizedFrames == 2 && r.targetFrames == 3)
        #expect(abs(r.totalDistance - 3 * expected) < 1e-12)
    }

    @Test("a repeated frame costs nothing after DTW; without warping it would")
    func repetitionIsFree() throws {
        let a: [[Double]] = [[0, 1, 0], [0, 2, 0], [0, 3, 0]]
        let b: [[Double]] = [[5, 1, 0], [5, 1, 0], [5, 2, 0], [5, 2, 0], [5, 3, 0]]
        let r = try MelCepstralDistortion.distortion(cepstra: a, b)
        #expect(r.mcd == 0)
        #expect(r.pathLength == 5)
        // Mean over the path, not over frames: one very bad pair among 4 is a quarter of its distance.
        let c: [[Double]] = [[0, 1, 0], [0, 2, 0], [0, 2, 5], [0, 3, 0]]
        let s = try MelCepstralDistortion.distortion(cepstra: [[0, 1, 0], [0, 2, 0], [0, 2, 0], [0, 3, 0]], c)
        #expect(abs(s.mcd - Self.kubichek([0, 2, 0], [0, 2, 5]) / 4) < 1e-12)
    }

    @Test("bad cepstra and short or non-finite signals are errors that say why")
    func errors() throws {
        #expect(throws: MelCepstralDistortion.Failure.self) { try MelCepstralDistortion.alignment([], [[0, 1]]) }
        #expect(throws: MelCepstralDistortion.Failure.self) { try MelCepstralDistortion.alignment([[0, 1]], [[0, 1, 2]]) }
        let mcd = try MelCepstralDistortion()
        #expect(throws: MelCepstralDistortion.Failure.tooShort(which: "target", samples: 399, needed: 400)) {
            try mcd.distortion(synthesized: Self.vowels(Self.sequence), target: [Float](repeating: 0.1, count: 399))
        }
        var broken = Self.vowels(Self.sequence)
        broken[1234] = .nan
        #expect(throws: MelCepstralDistortion.Failure.notFinite(which: "synthesized", index: 1234)) {
            try mcd.distortion(synthesized: broken, target: Self.vowels(Self.sequence))
        }
        var c = MelCepstralDistortion.Configuration()
        c.fftSize = 300
        #expect(throws: MelCepstralDistortion.Failure.self) { try MelCepstralDistortion(configuration: c) }
    }

    // MARK: the whole measure on audio

    /// Vowel-like segments (F1, F2 in Hz, seconds): harmonics of a 120 Hz voice with a slow vibrato,
    /// each weighted by two resonances. Deterministic.
    static let sequence: [(Double, Double, Double)] = [
        (730, 1090, 0.45), (270, 2290, 0.4), (530, 1840, 0.5), (300, 870, 0.45), (660, 1720, 0.4), (440, 1020, 0.4),
    ]

    static func vowels(_ segments: [(Double, Double, Double)], stretch: Double = 1, rate: Double = 16_000) -> [Float] {
        var out: [Float] = []
        var phase = 0.0, t = 0.0
        for (f1, f2, seconds) in segments {
            let count = Int(seconds * stretch * rate)
            for _ in 0..<count {
                let f0 = 120 * (1 + 0.03 * sin(2 * Double.pi * 5 * t))
                phase += 2 * Double.pi * f0 / rate
                var s = 0.0
                var h = 1
                while Double(h) * f0 < 7_800 {
                    let f = Double(h) * f0
                    let g = 1 / (1 + pow((f - f1) / 80, 2)) + 0.7 / (1 + pow((f - f2) / 120, 2)) + 0.02
                    s += g * sin(Double(h) * phase)
                    h += 1
                }
                out.append(Float(0.05 * s))
                t += 1 / rate
            }
        }
        return out
    }

    /// Gaussian noise (Box–Muller over a fixed LCG) scaled to the given SNR against `signal`.
    static func addNoise(_ signal: [Float], snr: Double, seed: UInt64 = 7) -> [Float] {
        var state = seed
        func uniform() -> Double {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (Double(state >> 11) + 0.5) / Double(1 << 53)
        }
        let noise = (0..<signal.count).map { _ in (-2 * log(uniform())).squareRoot() * cos(2 * Double.pi * uniform()) }
        let ps = signal.reduce(0.0) { $0 + Double($1) * Double($1) } / Double(signal.count)
        let pn = noise.reduce(0.0) { $0 + $1 * $1 } / Double(noise.count)
        let gain = (ps / pn / pow(10, snr / 10)).squareRoot()
        return zip(signal, noise).map { Float(Double($0) + gain * $1) }
    }

    @Test("MCD of a signal with itself is 0, and a gain change is free (c0 is excluded)")
    func identityAndGain() throws {
        let mcd = try MelCepstralDistortion()
        let x = Self.vowels(Self.sequence)
        let same = try mcd.distortion(synthesized: x, target: x)
        #expect(same.mcd == 0)
        #expect(same.pathLength == same.targetFrames && same.synthesizedFrames == same.targetFrames)
        // × 0.25 is exact in Float, so only c0 moves (by ln 1/16); any other gain adds Float rounding.
        #expect(try mcd.distortion(synthesized: x.map { $0 * 0.25 }, target: x).mcd < 1e-9)
        #expect(try mcd.distortion(synthesized: x.map { $0 * 0.3 }, target: x).mcd < 1e-3)
    }

    @Test("MCD grows as the signal is distorted: white noise at 30, 20, 10, 0 dB SNR")
    func growsWithNoise() throws {
        let mcd = try MelCepstralDistortion()
        let x = Self.vowels(Self.sequence)
        let values = try [30.0, 20, 10, 0].map { try mcd.distortion(synthesized: Self.addNoise(x, snr: $0), target: x).mcd }
        print("MCD (dB) at SNR 30/20/10/0 dB: \(values.map { String(format: "%.3f", $0) })")
        #expect(values[0] > 0)
        for i in 1..<values.count { #expect(values[i] > values[i - 1], "SNR step \(i): \(values)") }
    }

    @Test("DTW makes a time-stretched copy closer than a different vowel sequence")
    func stretchedCopyIsCloser() throws {
        let mcd = try MelCepstralDistortion()
        let x = Self.vowels(Self.sequence)
        let slow = Self.vowels(Self.sequence, stretch: 1.3)
        let fast = Self.vowels(Self.sequence, stretch: 0.8)
        let other = Self.vowels([Self.sequence[3], Self.sequence[5], Self.sequence[1], Self.sequence[4], Self.sequence[0], Self.sequence[2]])
        let dSlow = try mcd.distortion(synthesized: slow, target: x)
        let dFast = try mcd.distortion(synthesized: fast, target: x)
        let dOther = try mcd.distortion(synthesized: other, target: x)
        print("MCD (dB): stretched x1.3 \(String(format: "%.3f", dSlow.mcd)), x0.8 \(String(format: "%.3f", dFast.mcd)), other vowel order \(String(format: "%.3f", dOther.mcd))")
        #expect(dSlow.synthesizedFrames > dSlow.targetFrames)
        #expect(dSlow.mcd < dOther.mcd / 2 && dFast.mcd < dOther.mcd / 2)
        // The same comparison without warping (frames paired by index over the common length) is
        // worse for the stretched copy: the alignment is what makes it close.
        let a = try mcd.voicedCepstra(slow), b = try mcd.voicedCepstra(x)
        let linear = zip(a, b).map { MelCepstralDistortion.frameDistance($0, $1) }.reduce(0, +) / Double(min(a.count, b.count))
        #expect(dSlow.mcd < linear / 2, "DTW \(dSlow.mcd) vs index pairing \(linear)")
    }

    @Test("silent frames (40 dB below the loudest) are left out: padding with digital silence adds only the few frames straddling the edges")
    func silenceIsDropped() throws {
        let mcd = try MelCepstralDistortion()
        let x = Self.vowels(Self.sequence)
        let padded = [Float](repeating: 0, count: 8_000) + x + [Float](repeating: 0, count: 12_000)
        let r = try mcd.distortion(synthesized: padded, target: x)
        var keepAll = MelCepstralDistortion.Configuration()
        keepAll.silenceThreshold = nil
        let kept = try MelCepstralDistortion(configuration: keepAll).distortion(synthesized: padded, target: x)
        print("MCD (dB) of x padded with 0.5 s + 0.75 s of silence vs x: \(String(format: "%.3f", r.mcd)) "
              + "(\(r.synthesizedFrames) vs \(r.targetFrames) frames); keeping silent frames: \(String(format: "%.3f", kept.mcd)) (\(kept.synthesizedFrames) frames)")
        // 125 frames of silence are dropped; the frames that straddle the edges (part signal, part
        // zeros) are within 40 dB and stay.
        #expect(r.synthesizedFrames <= r.targetFrames + 6)
        #expect(kept.synthesizedFrames >= r.synthesizedFrames + 120)
        #expect(r.mcd < 0.1, "\(r.mcd)")
        #expect(kept.mcd > 10 * r.mcd, "\(kept.mcd) vs \(r.mcd)")
    }

    @Test("time: MCD of two 3 s utterances")
    func timing() throws {
        let mcd = try MelCepstralDistortion()
        let x = Array(Self.vowels(Self.sequence).prefix(48_000))
        let y = Array(Self.addNoise(x, snr: 15).prefix(48_000))
        let start = Date()
        for _ in 0..<3 { _ = try mcd.distortion(synthesized: y, target: x) }
        let seconds = Date().timeIntervalSince(start) / 3
        print("MCD of 3 s vs 3 s at 16 kHz: \(String(format: "%.1f", seconds * 1000)) ms")
        #expect(seconds < 5)
    }
}

/// The mel cepstra against an independent numpy/librosa/scipy computation of the same definition
/// (Tests/Fixtures/eval/mel_cepstrum_oracle.py, run in the venv of speaker_env.sh --venv, which
/// has librosa). A missing venv makes the test FAIL with the reason; it never skips.
@Suite("Mel cepstrum against numpy/librosa", .serialized, .timeLimit(.minutes(20)))
struct MelCepstrumOracleTests {
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// Runs a process (output through files), killed after `timeout` seconds.
    static func run(_ arguments: [String], timeout: Double) throws -> (status: Int32, stdout: Data, stderr: String) {
        let tmp = FileManager.default.temporaryDirectory.path + "/tts-mcd-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        _ = FileManager.default.createFile(atPath: tmp + "/out", contents: nil)
        _ = FileManager.default.createFile(atPath: tmp + "/err", contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + "/out"))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + "/err"))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        while p.isRunning {
            if Date() > deadline { kill(p.processIdentifier, SIGKILL); break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        p.waitUntilExit()
        try out.close(); try err.close()
        return (p.terminationStatus, (try? Data(contentsOf: URL(fileURLWithPath: tmp + "/out"))) ?? Data(),
                (try? String(contentsOfFile: tmp + "/err", encoding: .utf8)) ?? "")
    }

    struct Oracle: Decodable {
        var cepstra: [[String]]
        var energies: [String]
    }

    @Test("c0…c12 of every frame equal numpy/librosa's to 1e-9 (a vowel sequence with noise and digital silence)")
    func cepstraMatchNumpy() throws {
        let env = try Self.run(["/bin/bash", Self.root + "/Tests/Fixtures/eval/speaker_env.sh", "--venv"], timeout: 1_800)
        let python = env.stdout.split(separator: UInt8(ascii: "\n")).map { String(decoding: $0, as: UTF8.self) }
            .last { $0.hasPrefix("PYTHON=") }.map { String($0.dropFirst("PYTHON=".count)) }
        try #require(env.status == 0 && python != nil, """
            Tests/Fixtures/eval/speaker_env.sh --venv failed (\(env.status)): the MCD oracle needs a venv with librosa \
            (PyPI) over Debian's python3-scipy. It said: \(env.stderr.suffix(3_000))
            """)
        let signal = [Float](repeating: 0, count: 3_000)
            + MelCepstralDistortionTests.addNoise(MelCepstralDistortionTests.vowels(MelCepstralDistortionTests.sequence), snr: 25)
            + [Float](repeating: 0, count: 2_345)
        let path = FileManager.default.temporaryDirectory.path + "/tts-mcd-\(UUID().uuidString).f32"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try signal.withUnsafeBufferPointer { Data(buffer: $0) }.write(to: URL(fileURLWithPath: path)) // little-endian host
        let out = try Self.run([python!, Self.root + "/Tests/Fixtures/eval/mel_cepstrum_oracle.py", path], timeout: 300)
        try #require(out.status == 0, "mel_cepstrum_oracle.py failed: \(out.stderr.suffix(3_000))")
        let oracle = try JSONDecoder().decode(Oracle.self, from: out.stdout)
        let ours = try MelCepstralDistortion().melCepstra(signal)
        try #require(ours.count == oracle.cepstra.count, "frames: ours \(ours.count), numpy \(oracle.cepstra.count)")
        var worst = 0.0
        for (t, (a, b)) in zip(ours, oracle.cepstra).enumerated() {
            try #require(a.count == 13 && b.count == 13)
            for d in 0..<13 {
                let diff = abs(a[d] - (Double(b[d]) ?? .nan))
                worst = max(worst, diff)
                #expect(diff < 1e-9, "frame \(t) c\(d): ours \(a[d]), numpy \(b[d])")
            }
        }
        print("mel cepstra vs numpy/librosa: \(ours.count) frames, largest difference \(worst)")
    }
}
