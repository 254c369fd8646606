import ArgumentParser
import ClusterAdmin
import Foundation
import Scoring
import Shared
import Worker

/// Issue 7: scoring throughput against jiwer on the same pairs (identical results required).
struct ScoringBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scoring",
        abstract: "CER and WER of N sentence pairs, ours vs jiwer 4.0 on the same pairs in one run (target ≥ 5×, identical results).")

    @Option(help: "Python with jiwer 4 (Tests/Fixtures/eval/jiwer_env.sh prints it).") var python: String
    @Option(help: "Sentence pairs.") var pairs = 100_000

    func run() throws {
        var rng = SplitMix64(seed: 2026)
        let syllables = Array("가나다라마바사아자차카타파하고노도로모보소오조초코토포호구누두루무부수우주추쿠투푸후한국어음성합성평가")
        func sentence() -> String {
            (0..<Int(rng.next() % 6 + 2)).map { _ in String((0..<Int(rng.next() % 4 + 1)).map { _ in syllables[Int(rng.next() % UInt64(syllables.count))] }) }
                .joined(separator: " ")
        }
        func edit(_ s: String) -> String {
            var c = Array(s)
            for _ in 0..<Int(rng.next() % 4) where !c.isEmpty {
                let i = Int(rng.next() % UInt64(c.count))
                switch rng.next() % 3 {
                case 0: c[i] = syllables[Int(rng.next() % UInt64(syllables.count))]
                case 1: c.remove(at: i)
                default: c.insert(syllables[Int(rng.next() % UInt64(syllables.count))], at: i)
                }
            }
            return String(c)
        }
        let refs = (0..<pairs).map { _ in sentence() }
        let hyps = refs.map(edit)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-scoring-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try JSONCoding.encode(["refs": refs, "hyps": hyps]).withUnsafeBufferPointer { try Data(buffer: $0).write(to: URL(fileURLWithPath: dir + "/pairs.json")) }
        let script = """
            import json, sys, time, jiwer
            d = json.load(open(sys.argv[1]))
            refs, hyps = d["refs"], d["hyps"]
            t = time.perf_counter()
            c = jiwer.process_characters(refs, hyps)
            w = jiwer.process_words(refs, hyps)
            s = time.perf_counter() - t
            print(json.dumps({"seconds": s, "cer": repr(c.cer), "wer": repr(w.wer), "c": [c.hits, c.substitutions, c.deletions, c.insertions],
                              "w": [w.hits, w.substitutions, w.deletions, w.insertions]}))
            """
        try script.write(toFile: dir + "/bench.py", atomically: true, encoding: .utf8)

        progress("scoring: ours, \(pairs) pairs")
        let clock = ContinuousClock()
        let start = clock.now
        let cer = try Jiwer.processCharacters(reference: refs, hypothesis: hyps)
        let wer = try Jiwer.processWords(reference: refs, hypothesis: hyps)
        let ours = clock.now - start
        let oursSeconds = Double(ours.components.seconds) + Double(ours.components.attoseconds) / 1e18

        progress("scoring: jiwer, \(pairs) pairs")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [dir + "/bench.py", dir + "/pairs.json"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, case .object(let o)? = try? JSONCoding.decode(JSONValue.self, from: Array(data)),
              let theirs = o["seconds"]?.doubleValue else {
            throw BenchError("jiwer failed: \(String(decoding: data, as: UTF8.self))")
        }
        let c = cer.counts, w = wer.counts
        let mine: [JSONValue] = [c.hits, c.substitutions, c.deletions, c.insertions].map { .number(Double($0)) }
        let mineW: [JSONValue] = [w.hits, w.substitutions, w.deletions, w.insertions].map { .number(Double($0)) }
        let identical = o["c"] == .array(mine) && o["w"] == .array(mineW)
            && o["cer"]?.stringValue.flatMap(Double.init) == cer.cer && o["wer"]?.stringValue.flatMap(Double.init) == wer.wer
        print("\n### Scoring: CER + WER of \(pairs) Korean pairs (corpus), ours vs jiwer 4.0 (target ≥ 5×, identical)\n")
        print("| scorer | seconds | pairs/s | CER | WER | H/S/D/I (chars) |")
        print("|---|---|---|---|---|---|")
        print(String(format: "| tts-cluster (Swift) | %.3f | %.0f | %@ | %@ | %d/%d/%d/%d |", oursSeconds, Double(pairs) / oursSeconds,
                     "\(cer.cer)", "\(wer.wer)", c.hits, c.substitutions, c.deletions, c.insertions))
        print(String(format: "| jiwer 4.0 (rapidfuzz) | %.3f | %.0f | %@ | %@ | %@ |", theirs, Double(pairs) / theirs,
                     o["cer"]?.stringValue ?? "?", o["wer"]?.stringValue ?? "?", "\(o["c"].map { "\($0)" } ?? "?")"))
        print(String(format: "\n**ratio: %.1f× faster**; results identical: %@.", theirs / oursSeconds, identical ? "yes" : "NO"))
        if !identical { throw ExitCode(1) }
    }
}

/// Issue 7: our band-limited resampler against sox on the same signal, speed and quality.
struct ResampleBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resample",
        abstract: "22.05 → 16 kHz: our resampler vs sox on the same signal; speed ratio and SNR against the exact (float64) signal.")

    @Option(help: "Seconds of audio.") var seconds = 600.0
    @Option(help: "sox binary.") var sox = "/usr/bin/sox"

    func run() throws {
        let inRate = 22_050.0, outRate = 16_000.0
        // A sum of tones below the new Nyquist frequency: the exact output is the same tones at 16 kHz.
        let tones: [(f: Double, a: Double)] = [(220, 0.2), (1_000, 0.2), (3_150, 0.15), (5_500, 0.1), (7_200, 0.05)]
        func signal(_ t: Double) -> Double { tones.reduce(0) { $0 + $1.a * sin(2 * Double.pi * $1.f * t) } }
        let n = Int(seconds * inRate)
        let input = (0..<n).map { Float(signal(Double($0) / inRate)) }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-resample-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try input.withUnsafeBufferPointer { try Data(buffer: $0).write(to: URL(fileURLWithPath: dir + "/in.raw")) }

        let clock = ContinuousClock()
        progress("resample: ours, \(Int(seconds)) s of audio")
        let t0 = clock.now
        let ours = Resampler(from: Int(inRate), to: Int(outRate)).process(input)
        let oursSeconds = Self.seconds(clock.now - t0)

        progress("resample: sox, \(Int(seconds)) s of audio")
        let t1 = clock.now
        let p = Process()
        p.executableURL = URL(fileURLWithPath: sox)
        p.arguments = ["-t", "raw", "-r", "22050", "-e", "floating-point", "-b", "32", "-c", "1", dir + "/in.raw",
                       "-t", "raw", "-e", "floating-point", "-b", "32", dir + "/out.raw", "rate", "16000"]
        try p.run()
        p.waitUntilExit()
        let soxSeconds = Self.seconds(clock.now - t1)
        guard p.terminationStatus == 0, let raw = FileManager.default.contents(atPath: dir + "/out.raw") else { throw BenchError("sox failed") }
        let theirs: [Float] = raw.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }

        func snr(_ out: [Float]) -> Double {
            // Skip the first and last 0.1 s (edge effects of any finite filter).
            let skip = Int(0.1 * outRate)
            var sig = 0.0, err = 0.0
            for i in skip..<(min(out.count, Int(seconds * outRate)) - skip) {
                let exact = signal(Double(i) / outRate)
                sig += exact * exact
                err += (Double(out[i]) - exact) * (Double(out[i]) - exact)
            }
            return 10 * log10(sig / max(err, 1e-300))
        }
        print("\n### Resampling 22.05 → 16 kHz, \(Int(seconds)) s of a five-tone signal (220 Hz – 7.2 kHz)\n")
        print("| resampler | seconds | × real time | output samples | SNR vs the exact signal |")
        print("|---|---|---|---|---|")
        print(String(format: "| tts-cluster (windowed sinc, in process) | %.3f | %.0f | %d | %.1f dB |", oursSeconds, seconds / oursSeconds, ours.count, snr(ours)))
        print(String(format: "| sox `rate` (default quality, incl. file I/O and process start) | %.3f | %.0f | %d | %.1f dB |", soxSeconds, seconds / soxSeconds, theirs.count, snr(theirs)))
        print(String(format: "\n**speed ratio: %.2f×** (sox time / ours); SNR difference %.1f dB (ours − sox).", soxSeconds / oursSeconds, snr(ours) - snr(theirs)))
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
}

/// Issue 7: utterances per second of a whole evaluation (reference synthesizer + Vosk) over real
/// processes, with 1 and with 2 workers.
struct EvalThroughputBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-throughput",
        abstract: "Utterances/s of a full evaluation (reference audio + Vosk Korean) with 1 and 2 workers.")

    @Option(help: "tts-coordinator binary.") var coordinatorBin: String
    @Option(help: "tts-worker binary.") var workerBin: String
    @Option(help: "libvosk.so") var voskLibrary: String
    @Option(help: "The Vosk Korean model directory.") var voskModel: String
    @Option(help: "A test manifest (path.jsonl::ko) with target_audio_path.") var manifest: String
    @Option(help: "Utterances.") var utterances = 24
    @Option(help: "The torch shim: with --speaker-encoder, the workers also measure SIM (otherwise --no-torch: MCD only).") var torchShim: String?
    @Option(help: "The exported speaker encoder (speaker_encoder.pt) for the workers' SIM.") var speakerEncoder: String?

    func run() async throws {
        let sim = torchShim != nil && speakerEncoder != nil
        let measures = sim ? " + SIM (GE2E) + MCD" : " + MCD"
        var speakerArguments = ["--no-torch"]
        if let torchShim, let speakerEncoder { speakerArguments = ["--torch-shim", torchShim, "--speaker-encoder", speakerEncoder] }
        print("\n### Evaluation throughput: reference audio → Vosk Korean\(measures) → jiwer-exact scores, \(utterances) utterances\n")
        print("| workers | shards | seconds (submit → scored) | utterances/s |")
        print("|---|---|---|---|")
        var rates: [Double] = []
        for workers in [1, 2] {
            let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-eval-\(getpid())-\(workers)").path
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: dir) }
            let url = "tcp://127.0.0.1:\(Int.random(in: 30_000..<60_000))"
            let coordinator = try ServerProcess(name: "coordinator", executable: coordinatorBin,
                                                arguments: ["serve", "--listen", url, "--db", dir + "/c.sqlite", "--no-wandb"], logPath: dir + "/c.log")
            var ws: [ServerProcess] = []
            for i in 0..<workers {
                ws.append(try ServerProcess(name: "worker\(i)", executable: workerBin,
                                            arguments: ["join", url, "--name", "w\(i)", "--state-dir", dir + "/w\(i)", "--poll-wait-ms", "1000",
                                                        "--vosk-library", voskLibrary, "--vosk-model", voskModel]
                                                + speakerArguments,
                                            logPath: dir + "/w\(i).log"))
            }
            let admin = try NNGClusterClient(url: url, token: nil, timeoutMs: 30_000)
            var ready = false
            for _ in 0..<100 where !ready {
                try await Task.sleep(for: .milliseconds(200))
                ready = ((try? await admin.workers()) ?? []).filter { $0.capabilities.contains("shard:eval") }.count == workers
            }
            guard ready else { throw BenchError("workers did not register: \(coordinator.log.suffix(1_000))") }
            // Warm: each worker loads the model once (its first shard), as a long-lived worker has.
            let warm = try await admin.eval(EvalRequest(checkpoint: "/bench/warm.pth", manifests: [manifest], numSamples: workers,
                                                        outputDir: dir + "/warm", shards: workers, seed: "warm"))
            try await waitDone(admin, warm.id)
            let start = Date()
            let e = try await admin.eval(EvalRequest(checkpoint: "/bench/model.pth", manifests: [manifest], numSamples: utterances,
                                                     outputDir: dir + "/eval", shards: 2 * workers))
            let done = try await waitDone(admin, e.id)
            let seconds = Date().timeIntervalSince(start)
            rates.append(Double(done.utterances) / seconds)
            print(String(format: "| %d | %d | %.2f | %.2f |", workers, 2 * workers, seconds, Double(done.utterances) / seconds))
            for w in ws { _ = await w.stop() }
            _ = await coordinator.stop()
        }
        if rates.count == 2 { print(String(format: "\n2 workers / 1 worker: **%.2f×** (both on this 2-core machine).", rates[1] / rates[0])) }
    }

    @discardableResult
    private func waitDone(_ admin: NNGClusterClient, _ id: Int64) async throws -> EvalSummary {
        for _ in 0..<3_000 {
            if let e = try await admin.evals().first(where: { $0.id == id }), e.state != .running {
                guard e.state == .succeeded else { throw BenchError("evaluation \(id) \(e.state): \(e.message)") }
                return e
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw BenchError("evaluation \(id) did not finish")
    }
}
