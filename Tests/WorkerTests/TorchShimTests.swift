import Foundation
import Shared
import Synchronization
import Testing
@testable import Worker

/// The libtorch shim from Swift on CPU (Debian's libtorch), with the reference model and the
/// reference dataset (Korean speech from espeak-ng). Everything is built by
/// Tests/Fixtures/torch/torch_env.sh; if that fails the tests fail with its reason.
@Suite(.serialized, .timeLimit(.minutes(10))) struct TorchShimTests {
    struct Fixture {
        var shim: TorchShim
        var model: String
        var modules: String
        var dataset: String
    }

    nonisolated(unsafe) static var cached: Fixture? // set once, from the serialized suite only

    static func fixture() throws -> Fixture {
        if let f = cached { return f }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/torch/torch_env.sh").path
        let r = try TrainerFixture.run("/bin/bash", [script], timeout: 1_500)
        var values: [String: String] = [:]
        for line in r.stdout.split(separator: "\n") {
            if let eq = line.firstIndex(of: "=") { values[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        try #require(r.status == 0, "Tests/Fixtures/torch/torch_env.sh failed (\(r.status)): \(r.stderr.suffix(3_000))")
        let shim = try TorchShim.load(path: try #require(values["SHIM"]))
        let f = Fixture(shim: shim, model: try #require(values["MODEL"]), modules: try #require(values["MODULES"]),
                        dataset: try #require(values["DATASET"]))
        cached = f
        return f
    }

    static func config(lr: Double = 3e-3, steps: Int64 = 200, clip: Double = 1.0) -> TorchTrainConfig {
        var c = TorchTrainConfig()
        c.learningRate = lr
        c.schedule = .constant
        c.warmupSteps = 0
        c.totalSteps = steps
        c.gradClip = clip
        c.weightDecay = 0
        c.seed = 0
        c.threads = 2
        return c
    }

    func loader(_ f: Fixture, batch: Int = 8, start: LoaderPosition = LoaderPosition(epoch: 0, batch: 0)) throws -> BatchLoader {
        let pairs = try PairManifest.read(ManifestSpec(parsing: f.dataset + "/gpt_pairs_train.jsonl::ko"))
        return try BatchLoader(pairs: pairs, batchSize: batch, seed: 1, start: start)
    }

    /// `rows` samples with text and codes of equal lengths (so a mean over 8 rows equals the mean
    /// of four means over 2), values from a fixed linear congruential sequence.
    static func uniformBatch(rows: Int, offset: Int, textLength: Int = 12, codeLength: Int = 24) -> [TorchTensor] {
        var state = UInt64(0x2545_F491_4F6C_DD1D) &+ UInt64(offset)
        func next() -> Int64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int64(state >> 33)
        }
        let text = (0..<(rows * textLength)).map { _ in 2 + next() % 100 }
        let codes = (0..<(rows * codeLength)).map { _ in next() % 256 }
        return [TorchTensor("text_ids", shape: [Int64(rows), Int64(textLength)], .int64(text)),
                TorchTensor("text_lengths", shape: [Int64(rows)], .int64(Array(repeating: Int64(textLength), count: rows))),
                TorchTensor("code_ids", shape: [Int64(rows), Int64(codeLength)], .int64(codes)),
                TorchTensor("code_lengths", shape: [Int64(rows)], .int64(Array(repeating: Int64(codeLength), count: rows)))]
    }

    /// Rows `range` of a uniform batch.
    static func rows(_ batch: [TorchTensor], _ range: Range<Int>) -> [TorchTensor] {
        batch.map { t in
            guard case .int64(let v) = t.storage else { return t }
            let width = t.shape.count == 2 ? Int(t.shape[1]) : 1
            let slice = Array(v[(range.lowerBound * width)..<(range.upperBound * width)])
            return TorchTensor(t.name, shape: t.shape.count == 2 ? [Int64(range.count), t.shape[1]] : [Int64(range.count)], .int64(slice))
        }
    }

    @Test("the reference model trains: 200 steps on the reference dataset lower the loss clearly; metrics follow the contract")
    func trainingLowersTheLoss() throws {
        let f = try Self.fixture()
        let model = try f.shim.loadModel(f.model, config: Self.config())
        #expect(model.forwardArity == 5, "text_ids, text_lengths, code_ids, code_lengths, and the optional condition")
        #expect(model.parameterCount > 100_000)
        let data = try loader(f)
        defer { data.close() }
        var losses: [Double] = []
        var last: TorchStepResult?
        for _ in 0..<200 {
            let r = try model.trainStep([TorchTensor.tensors(try data.next().batch)])
            losses.append(r["loss"] ?? .nan)
            last = r
        }
        let r = try #require(last)
        #expect(r.step == 200 && model.step == 200)
        #expect(r.metrics.map(\.name) == ["loss", "text_loss", "mel_loss", "mel_top1"])
        #expect(abs((r["loss"] ?? 0) - (0.2 * (r["text_loss"] ?? 0) + 0.8 * (r["mel_loss"] ?? 0))) < 1e-4, "loss = 0.2 text + 0.8 mel")
        let first = losses.prefix(10).reduce(0, +) / 10
        let end = losses.suffix(10).reduce(0, +) / 10
        #expect(end < 0.7 * first, "loss fell from \(first) to \(end)")
        #expect(losses.allSatisfy { $0.isFinite })
        #expect(data.waitSeconds >= 0)
    }

    @Test("accumulation: 4 micro-batches of 2 make the same step as one batch of 8 (to 1e-5); clipping caps the norm and reports the norm before")
    func accumulationAndClipping() throws {
        let f = try Self.fixture()
        let eight = Self.uniformBatch(rows: 8, offset: 1)
        let probe = Self.uniformBatch(rows: 4, offset: 99)
        let a = try f.shim.loadModel(f.model, config: Self.config(clip: 0))
        let b = try f.shim.loadModel(f.model, config: Self.config(clip: 0))
        let ra = try a.trainStep([eight])
        let rb = try b.trainStep((0..<4).map { Self.rows(eight, ($0 * 2)..<($0 * 2 + 2)) })
        #expect(abs((ra["loss"] ?? 0) - (rb["loss"] ?? 1)) < 1e-5)
        #expect(abs(ra.gradNorm - rb.gradNorm) < 1e-5 * max(1, ra.gradNorm))
        let ea = try a.evalStep(probe), eb = try b.evalStep(probe)
        #expect(abs((ea["loss"] ?? 0) - (eb["loss"] ?? 1)) < 1e-5, "after the step the models agree: \(ea["loss"] ?? 0) vs \(eb["loss"] ?? 0)")
        #expect(ra.gradNormClipped == ra.gradNorm, "no clipping when grad_clip is 0")
        let clipped = try f.shim.loadModel(f.model, config: Self.config(clip: 0.05))
        let rc = try clipped.trainStep([eight])
        #expect(rc.gradNorm > 0.05)
        #expect(abs(rc.gradNorm - ra.gradNorm) < 1e-5 * max(1, ra.gradNorm), "the norm before clipping is reported")
        #expect(abs(rc.gradNormClipped - 0.05) < 1e-4, "clipped to 0.05, measured \(rc.gradNormClipped)")
    }

    @Test("data-parallel (ABI 5): two ranks in a gloo group, each with its half of a batch, take the steps one process takes with both halves (losses, grad norms, parameters to 1e-5); an OOM on one rank fails the step on both, uncounted, and the group goes on")
    func dataParallelGroup() throws {
        let f = try Self.fixture()
        let batches = (0..<3).map { Self.uniformBatch(rows: 8, offset: 20 + $0) }
        let probe = Self.uniformBatch(rows: 4, offset: 99)
        let single = try f.shim.loadModel(f.model, config: Self.config())
        var expected: [TorchStepResult] = []
        for b in batches { expected.append(try single.trainStep([Self.rows(b, 0..<4), Self.rows(b, 4..<8)])) }
        let expectedProbe = try single.evalStep(probe)
        let port = try #require(RendezvousPort.free(on: "127.0.0.1"))

        struct RankOutcome: Sendable {
            var steps: [TorchStepResult] = []
            var probe: TorchStepResult?
            var oom: TorchShimError?
            var stepAfterOOM: Int64 = -1
        }
        let outcomes = Mutex<[Int: Result<RankOutcome, TorchShimError>]>([:])
        let done = DispatchSemaphore(value: 0)
        for rank in 0..<2 {
            let thread = Thread {
                let result = Result { () throws(TorchShimError) -> RankOutcome in
                    var out = RankOutcome()
                    let group = try f.shim.joinGroup(masterAddress: "127.0.0.1", masterPort: port, localAddress: "127.0.0.1",
                                                     rank: rank, worldSize: 2, timeout: .seconds(60))
                    let model = try f.shim.loadModel(f.model, config: Self.config())
                    try model.join(group)
                    for b in batches { out.steps.append(try model.trainStep([Self.rows(b, (rank * 4)..<(rank * 4 + 4))])) }
                    out.probe = try model.evalStep(probe)
                    // Rank 1's card "runs out of memory" at 4 rows (the shim's stand-in).
                    var c = Self.config()
                    c.outOfMemoryAtBatch = rank == 1 ? 4 : 0
                    let other = try f.shim.loadModel(f.model, config: c)
                    try other.join(group)
                    _ = try other.trainStep([Self.rows(batches[0], 0..<2)])
                    do throws(TorchShimError) { _ = try other.trainStep([Self.rows(batches[1], 0..<4)]) } catch { out.oom = error }
                    _ = try other.trainStep([Self.rows(batches[1], 0..<2)])
                    out.stepAfterOOM = other.step
                    return out
                }
                outcomes.withLock { $0[rank] = result }
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in 0..<2 { done.wait() }
        let ranks = try outcomes.withLock { o in try (0..<2).map { try #require(o[$0]).get() } }
        for (rank, r) in ranks.enumerated() {
            #expect(r.steps.count == 3)
            for (got, want) in zip(r.steps, expected) {
                #expect(got.step == want.step)
                #expect(abs((got["loss"] ?? 0) - (want["loss"] ?? 1)) < 1e-5, "rank \(rank) step \(got.step): loss \(got["loss"] ?? 0) vs one process \(want["loss"] ?? 0)")
                #expect(abs(got.gradNorm - want.gradNorm) < 1e-5 * max(1, want.gradNorm), "rank \(rank) step \(got.step): grad norm \(got.gradNorm) vs \(want.gradNorm)")
            }
            let p = try #require(r.probe)
            #expect(abs((p["loss"] ?? 0) - (expectedProbe["loss"] ?? 1)) < 1e-5, "rank \(rank)'s parameters are the one process's: \(p["loss"] ?? 0) vs \(expectedProbe["loss"] ?? 0)")
            #expect(r.oom?.code == .outOfMemory, "rank \(rank): \(String(describing: r.oom))")
            #expect(r.stepAfterOOM == 2, "the OOM step was not counted on rank \(rank); the next one was")
        }
        #expect(ranks[0].oom?.message.contains("peer rank") == true, "rank 0 says the OOM was its peer's: \(ranks[0].oom?.message ?? "")")
        #expect(ranks[0].steps.map { $0["loss"] } == ranks[1].steps.map { $0["loss"] }, "both ranks report the group's mean")
    }

    @Test("a group whose peer never comes fails the rendezvous with .peer after its timeout, naming the rendezvous; bad arguments are refused")
    func groupErrors() throws {
        let f = try Self.fixture()
        let port = try #require(RendezvousPort.free(on: "127.0.0.1"))
        do {
            _ = try f.shim.joinGroup(masterAddress: "127.0.0.1", masterPort: port, localAddress: "127.0.0.1", rank: 0, worldSize: 2, timeout: .seconds(2))
            Issue.record("a group of 2 with one rank formed")
        } catch {
            #expect(error.code == .peer, "\(error)")
            #expect(error.message.contains("127.0.0.1:\(port)"), "\(error.message)")
        }
        do {
            _ = try f.shim.joinGroup(masterAddress: "127.0.0.1", masterPort: port, localAddress: nil, rank: 2, worldSize: 2, timeout: .seconds(1))
            Issue.record("rank 2 of 2 was accepted")
        } catch {
            #expect(error.code == .invalidArgument)
        }
    }

    @Test("warmup then cosine, linear, constant and warmup-stable-decay give the documented learning rates, and steps use them")
    func schedules() throws {
        let f = try Self.fixture()
        var c = Self.config(lr: 1e-3, steps: 100)
        c.warmupSteps = 10
        c.minLearningRateRatio = 0.1
        let lr = 1e-3, m = 1e-4
        for schedule in TorchSchedule.allCases {
            c.schedule = schedule
            #expect(abs(f.shim.learningRate(c, step: 0) - lr / 10) < 1e-12, "\(schedule): warmup starts at lr/W")
            #expect(abs(f.shim.learningRate(c, step: 9) - lr) < 1e-12, "\(schedule): warmup reaches lr at W-1")
        }
        c.schedule = .cosine
        #expect(abs(f.shim.learningRate(c, step: 55) - (m + (lr - m) * 0.5 * (1 + cos(Double.pi * 0.5)))) < 1e-12)
        #expect(abs(f.shim.learningRate(c, step: 100) - m) < 1e-12)
        c.schedule = .linear
        #expect(abs(f.shim.learningRate(c, step: 55) - (m + (lr - m) * 0.5)) < 1e-12)
        c.schedule = .constant
        #expect(f.shim.learningRate(c, step: 80) == lr)
        c.schedule = .warmupStableDecay
        c.decayFraction = 0.2 // decay over steps 80…100
        #expect(f.shim.learningRate(c, step: 79) == lr)
        #expect(abs(f.shim.learningRate(c, step: 90) - (lr - (lr - m) * 0.5)) < 1e-12)
        // Steps report the scheduled LR.
        c.schedule = .cosine
        let model = try f.shim.loadModel(f.model, config: c)
        let batch = Self.uniformBatch(rows: 2, offset: 3)
        for step in 0..<12 {
            let r = try model.trainStep([batch])
            #expect(abs(r.learningRate - f.shim.learningRate(c, step: Int64(step))) < 1e-15)
        }
    }

    @Test("exact resume: 2N steps straight equal N steps, a checkpoint, a fresh model and N more (to 1e-6), data position included")
    func exactResume() throws {
        let f = try Self.fixture()
        let n = 10
        let dir = TrainerFixture.temporaryDirectory("torch-resume")
        let straight = try f.shim.loadModel(f.model, config: Self.config())
        let data = try loader(f, batch: 4)
        var expected: [Double] = []
        for _ in 0..<(2 * n) { expected.append(try straight.trainStep([TorchTensor.tensors(try data.next().batch)])["loss"] ?? .nan) }
        data.close()

        let first = try f.shim.loadModel(f.model, config: Self.config())
        let firstData = try loader(f, batch: 4)
        var got: [Double] = []
        var position = LoaderPosition(epoch: 0, batch: 0)
        for _ in 0..<n {
            let (batch, next) = try firstData.next()
            position = next
            got.append(try first.trainStep([TorchTensor.tensors(batch)])["loss"] ?? .nan)
        }
        firstData.close()
        let path = dir + "/model_step\(n).pth"
        try first.saveCheckpoint(path, extra: String(decoding: try JSONCoding.encode(position), as: UTF8.self))
        #expect(!FileManager.default.fileExists(atPath: path + ".tmp"))
        let info = try f.shim.checkpointInfo(path)
        #expect(info.step == Int64(n))

        let resumed = try f.shim.loadModel(f.model, config: Self.config())
        let extra = try resumed.loadCheckpoint(path)
        #expect(resumed.step == Int64(n))
        let restored = try JSONCoding.decode(LoaderPosition.self, from: Array(extra.utf8))
        #expect(restored == position)
        let restData = try loader(f, batch: 4, start: restored)
        defer { restData.close() }
        for _ in 0..<n { got.append(try resumed.trainStep([TorchTensor.tensors(try restData.next().batch)])["loss"] ?? .nan) }
        #expect(zip(expected, got).allSatisfy { abs($0 - $1) < 1e-6 }, "straight \(expected)\nresumed  \(got)")
    }

    @Test("a bad model path, a module without `loss`, one that is not a dict, and a shape mismatch are clear errors, not crashes")
    func errors() throws {
        let f = try Self.fixture()
        func code(_ body: () throws -> Void) -> (TorchShimError.Code, String)? {
            do { try body(); return nil } catch let e as TorchShimError { return (e.code, e.description) } catch { return (.internal, "\(error)") }
        }
        let missing = code { _ = try f.shim.loadModel("/nonexistent/model.pt", config: Self.config()) }
        #expect(missing?.0 == .load && missing?.1.contains("/nonexistent/model.pt") == true, "\(String(describing: missing))")
        let notTorchScript = code { _ = try f.shim.loadModel(f.modules + "/not_torchscript.pt", config: Self.config()) }
        #expect(notTorchScript?.0 == .load)
        let plain = code { _ = try f.shim.loadModel(f.modules + "/plain_forward.pt", config: Self.config()) }
        #expect(plain?.0 == .contract, "\(String(describing: plain))")
        let batch = Self.uniformBatch(rows: 2, offset: 5)
        let noLoss = code {
            let m = try f.shim.loadModel(f.modules + "/no_loss.pt", config: Self.config())
            _ = try m.trainStep([batch])
        }
        #expect(noLoss?.0 == .contract && noLoss?.1.contains("loss") == true, "\(String(describing: noLoss))")
        let model = try f.shim.loadModel(f.model, config: Self.config())
        var wrong = batch
        wrong[0] = TorchTensor("text_ids", shape: [24], .int64(Array(repeating: 3, count: 24))) // 1-D instead of B×T
        let shape = code { _ = try model.trainStep([wrong]) }
        #expect(shape?.0 == .shape, "\(String(describing: shape))")
        let tooFew = code { _ = try model.trainStep([Array(batch.prefix(2))]) }
        #expect(tooFew?.0 == .shape)
        // The model is still usable after those errors.
        #expect(try model.trainStep([batch]).step == 1)
    }

    @Test("the OOM stand-in: a micro-batch at the limit fails as CUDA OOM would, the step is not counted, a smaller batch then works")
    func outOfMemoryStandIn() throws {
        let f = try Self.fixture()
        var c = Self.config()
        c.outOfMemoryAtBatch = 8
        let model = try f.shim.loadModel(f.model, config: c)
        do {
            _ = try model.trainStep([Self.uniformBatch(rows: 8, offset: 1)])
            Issue.record("batch 8 did not run out of memory")
        } catch {
            #expect(error.code == .outOfMemory)
        }
        #expect(model.step == 0)
        let r = try model.trainStep((0..<2).map { Self.rows(Self.uniformBatch(rows: 8, offset: 1), ($0 * 4)..<($0 * 4 + 4)) })
        #expect(r.step == 1)
    }

    @Test("the CPU is a device; a CPU libtorch sees no CUDA device")
    func devices() throws {
        let f = try Self.fixture()
        let cpu = try f.shim.device(-1)
        #expect(cpu.name == "cpu" && !cpu.isCUDA && cpu.totalBytes > 0 && cpu.freeBytes > 0)
        #expect(f.shim.cudaDeviceCount == 0)
        #expect(throws: TorchShimError.self) { try f.shim.device(0) }
        #expect(throws: TorchShimError.self) { try TorchShim.load(path: "/nonexistent/libtts_torch_shim.so") }
    }

    @Test("synthesis: the reference model's synthesize gives 16 kHz audio of whole 40 ms frames, the same twice, with the checkpoint's parameters after a reload; a module without it says so")
    func synthesis() throws {
        let f = try Self.fixture()
        let model = try f.shim.loadModel(f.model, config: Self.config())
        #expect(model.canSynthesize)
        let a = try model.synthesize("안녕하세요. 반갑습니다.", maxCodes: 20)
        let b = try model.synthesize("안녕하세요. 반갑습니다.", maxCodes: 20)
        #expect(a.sampleRate == 16_000)
        #expect(!a.samples.isEmpty && a.samples.count % 640 == 0 && a.samples.count <= 20 * 640, "\(a.samples.count) samples")
        #expect(a.samples == b.samples, "deterministic")
        #expect(a.samples.allSatisfy { $0.isFinite && abs($0) <= 1 })
        // Training changes what it says; a fresh model with the checkpoint says exactly the same.
        let batches = try loader(f)
        for _ in 0..<40 { _ = try model.trainStep([TorchTensor.tensors(try batches.next().batch)]) }
        #expect(model.canSynthesize, "still usable after training (back in training mode)")
        let trained = try model.synthesize("안녕하세요. 반갑습니다.", maxCodes: 20)
        #expect(trained.samples != a.samples, "40 steps of training change the decoded codes")
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-synth-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let ckpt = dir.appendingPathComponent("model_step40.pt").path
        try model.saveCheckpoint(ckpt, extra: "{}")
        let fresh = try f.shim.loadModel(f.model, config: Self.config())
        _ = try fresh.loadCheckpoint(ckpt)
        #expect(try fresh.synthesize("안녕하세요. 반갑습니다.", maxCodes: 20).samples == trained.samples)
        // Written with libsndfile and read back.
        let wav = dir.appendingPathComponent("u.wav").path
        try AudioFile.write(AudioClip(samples: trained.samples, sampleRate: trained.sampleRate), to: wav)
        let back = try AudioFile.read(wav)
        #expect(back.sampleRate == 16_000 && back.samples.count == trained.samples.count)
        #expect(zip(back.samples, trained.samples).allSatisfy { abs($0 - $1) <= 1.0 / 32_768 + 1e-6 }, "16-bit WAV round trip")
        // A module that keeps the training contract but exports no synthesize.
        let plain = try f.shim.loadModel(f.modules + "/no_loss.pt", config: Self.config())
        #expect(!plain.canSynthesize)
        do {
            _ = try plain.synthesize("안녕", maxCodes: 5)
            Issue.record("a module without synthesize synthesized")
        } catch {
            #expect(error.code == .contract && error.description.contains("synthesize"), "\(error)")
        }
        #expect(throws: TorchShimError.self) { try model.synthesize("안녕", maxCodes: 0) }
    }

    @Test("synthesis in a prompt's voice (ABI 4): the reference model trains on five-tensor batches (the prompts' conditions) and speaks a text differently for a male and a female prompt, each the same twice; a NaN prompt is refused; a module whose synthesize takes no prompt still synthesizes and refuses one")
    func synthesisWithPrompt() throws {
        let f = try Self.fixture()
        let model = try f.shim.loadModel(f.model, config: Self.config())
        #expect(model.forwardArity == 5, "text_ids, text_lengths, code_ids, code_lengths, condition")
        #expect(model.synthesizeAcceptsPrompt && model.synthesisSampleRate == 16_000)
        let pairs = try PairManifest.read(ManifestSpec(parsing: f.dataset + "/gpt_pairs_train.jsonl::ko"))
        #expect(try TrainingLoop.passesConditions(forwardArity: model.forwardArity, pairs: pairs))
        // The prompt reaches the module: with the exported (untrained) weights a male and a female
        // prompt steer the greedy codes differently, and no prompt differently again. (Telling the
        // voices apart by training takes ~150 demo steps: CONTRACT.md §7, measured there.)
        let male = try AudioFile.read(f.dataset + "/audio/espeak_m_0000.wav")
        let female = try AudioFile.read(f.dataset + "/audio/espeak_f_0000.wav")
        #expect(male.sampleRate == 16_000 && female.sampleRate == 16_000)
        let text = "오늘 날씨가 참 좋네요."
        let m1 = try model.synthesize(text, maxCodes: 60, prompt: male.samples)
        let m2 = try model.synthesize(text, maxCodes: 60, prompt: male.samples)
        let w = try model.synthesize(text, maxCodes: 60, prompt: female.samples)
        let none = try model.synthesize(text, maxCodes: 60)
        #expect(m1.sampleRate == 16_000 && !m1.samples.isEmpty && m1.samples.count % 640 == 0)
        let same = m1.samples == m2.samples, voicesDiffer = m1.samples != w.samples, promptMatters = m1.samples != none.samples
        let peak = m1.samples.reduce(Float(0)) { max($0, abs($1)) }
        #expect(same, "deterministic")
        #expect(voicesDiffer, "the two voices' prompts give different speech (peak \(peak))")
        #expect(promptMatters, "a prompt changes the speech (no prompt: the learned null condition)")
        // The five-tensor batch (with the prompts' conditions) trains.
        let batches = try BatchLoader(pairs: pairs, batchSize: 8, seed: 1, conditions: true)
        defer { batches.close() }
        let first = try TorchTensor.tensors(try batches.next().batch)
        #expect(first.count == 5 && first[4].name == "condition" && first[4].shape.dropFirst() == [32, 32])
        var losses: [Double] = []
        for _ in 0..<5 { losses.append(try #require(try model.trainStep([TorchTensor.tensors(try batches.next().batch)])["loss"])) }
        #expect(losses.allSatisfy(\.isFinite) && losses.last! < losses.first!, "\(losses)")
        do {
            _ = try model.synthesize(text, maxCodes: 5, prompt: [0.1, .nan, 0.2])
            Issue.record("a NaN prompt was accepted")
        } catch {
            #expect(error.code == .invalidArgument && error.description.contains("not finite"), "\(error)")
        }
        // An ABI 2 module: synthesize(text, max_codes) only.
        let old = try f.shim.loadModel(f.modules + "/promptless_synth.pt", config: Self.config())
        #expect(old.canSynthesize && !old.synthesizeAcceptsPrompt && old.synthesisSampleRate == 16_000)
        #expect(try old.synthesize("안녕", maxCodes: 5).samples.count == 5 * 640)
        #expect(try old.synthesize("안녕", maxCodes: 5, prompt: []).samples.count == 5 * 640, "an empty prompt is no prompt")
        do {
            _ = try old.synthesize("안녕", maxCodes: 5, prompt: male.samples)
            Issue.record("a promptless module took a prompt")
        } catch {
            #expect(error.code == .contract && error.description.contains("no voice prompt"), "\(error)")
        }
        let plain = try f.shim.loadModel(f.modules + "/no_loss.pt", config: Self.config())
        #expect(!plain.synthesizeAcceptsPrompt && plain.synthesisSampleRate == nil)
    }
}
