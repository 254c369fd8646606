import ArgumentParser
import Foundation
import Shared
import Worker

/// Issue 6: steps/s of the shim's training loop against the same TorchScript model trained by a
/// plain Python loop (Debian's python3-torch), same batches, same threads, in one run; and the
/// time a step waits on the data loader over the reference dataset.
struct TorchLoopBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "torch-loop",
        abstract: "Shim training loop vs a plain Python loop on the same model and batches (target ≥ 1.0×); data wait (target < 1 % of step time).",
        discussion: """
            Both sides train the reference model from the same file with AdamW (lr 1e-3, warmup 10, cosine to 0.1, \
            weight decay 0.01, clipping at 1.0) on the synthetic batches of Sources/TorchShim/CONTRACT.md, generated \
            before the clock starts; the first 5 steps are not timed. The sides alternate --repeat times; medians are \
            reported. With --dataset, a third run trains through the worker's BatchLoader (reference dataset, \
            prefetching) and reports the time steps waited for data.
            """)

    @Option(help: "libtts_torch_shim.so") var shim: String
    @Option(help: "The reference model (.pt).") var model: String
    @Option(help: "scripts/torch/python_loop_baseline.py") var baseline = "scripts/torch/python_loop_baseline.py"
    @Option(help: "Python with torch (Debian's python3-torch).") var python = "/usr/bin/python3"
    @Option(help: "Training steps per side (5 untimed).") var steps = 200
    @Option(help: "Torch threads on both sides.") var threads = 1
    @Option(help: "Batch size.") var batch = 8
    @Option(help: "Text length of the synthetic batches.") var textLength = 24
    @Option(help: "Code length of the synthetic batches.") var codeLength = 48
    @Option(help: "Alternating repetitions.") var `repeat` = 3
    @Option(help: "The reference dataset directory (gpt_pairs_train.jsonl) for the data-wait run.") var dataset: String?

    static let untimed = 5

    func run() throws {
        let lib = try TorchShim.load(path: shim)
        var config = TorchTrainConfig()
        config.learningRate = 1e-3
        config.warmupSteps = 10
        config.totalSteps = Int64(steps)
        config.schedule = .cosine
        config.minLearningRateRatio = 0.1
        config.weightDecay = 0.01
        config.gradClip = 1.0
        config.seed = 0
        config.threads = threads
        let batches = (0..<steps).map { SyntheticBatch.make(seed: 0, index: UInt64($0), rows: batch, textLength: textLength, codeLength: codeLength) }
        var ours: [Double] = []
        var theirs: [Double] = []
        var ourLosses: (Double, Double) = (0, 0)
        var pythonJSON: [String: JSONValue] = [:]
        for round in 0..<max(1, `repeat`) {
            progress("torch-loop: round \(round + 1): shim, \(steps) steps")
            let model = try lib.loadModel(self.model, config: config)
            var first = 0.0, last = 0.0
            var start = ContinuousClock.now
            for (i, b) in batches.enumerated() {
                if i == Self.untimed { start = .now }
                let r = try model.trainStep([b])
                if i == 0 { first = r["loss"] ?? .nan }
                last = r["loss"] ?? .nan
            }
            ours.append(Double(steps - Self.untimed) / seconds(ContinuousClock.now - start))
            ourLosses = (first, last)
            progress("torch-loop: round \(round + 1): python, \(steps) steps")
            pythonJSON = try runPython()
            theirs.append(pythonJSON["steps_per_second"]?.doubleValue ?? .nan)
        }
        let oursMedian = ours.sorted()[ours.count / 2], theirsMedian = theirs.sorted()[theirs.count / 2]
        print("\n### Torch training loop: the shim vs a plain Python loop (target ≥ 1.0×)\n")
        print("| loop | steps/s (median of \(ours.count)) | all runs | first loss | last loss |")
        print("|---|---|---|---|---|")
        print(String(format: "| shim (Swift → C ABI → libtorch) | %.2f | %@ | %.6f | %.6f |", oursMedian,
                     ours.map { String(format: "%.2f", $0) }.joined(separator: ", "), ourLosses.0, ourLosses.1))
        print(String(format: "| Python loop (python3-torch %@) | %.2f | %@ | %.6f | %.6f |", pythonJSON["torch"]?.stringValue ?? "?", theirsMedian,
                     theirs.map { String(format: "%.2f", $0) }.joined(separator: ", "),
                     pythonJSON["first_loss"]?.doubleValue ?? .nan, pythonJSON["last_loss"]?.doubleValue ?? .nan))
        print(String(format: "\n**ratio: %.2f×** (shim / Python), batch %d, text %d, codes %d, %d thread(s), %d steps (%d untimed).",
                     oursMedian / theirsMedian, batch, textLength, codeLength, threads, steps, Self.untimed))
        if let dataset { try dataWait(lib, config: config, dataset: dataset) }
    }

    private func runPython() throws -> [String: JSONValue] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [baseline, "--model", model, "--steps", String(steps), "--threads", String(threads), "--batch", String(batch),
                       "--text-len", String(textLength), "--code-len", String(codeLength), "--lr", "1e-3", "--warmup", "10",
                       "--min-lr-ratio", "0.1", "--weight-decay", "0.01", "--grad-clip", "1.0", "--seed", "0"]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0, let line = String(decoding: data, as: UTF8.self).split(separator: "\n").last,
              case .object(let o)? = try? JSONCoding.decode(JSONValue.self, from: Array(line.utf8)) else {
            throw BenchError("the Python baseline failed (status \(p.terminationStatus)): \(String(decoding: data, as: UTF8.self).suffix(500))")
        }
        return o
    }

    /// Trains through the BatchLoader on the reference dataset and reports how long steps waited.
    private func dataWait(_ lib: TorchShim, config: TorchTrainConfig, dataset: String) throws {
        let pairs = try PairManifest.read(ManifestSpec(parsing: dataset + "/gpt_pairs_train.jsonl::ko"))
        let model = try lib.loadModel(self.model, config: config)
        let loader = try BatchLoader(pairs: pairs, batchSize: batch, seed: 1)
        defer { loader.close() }
        let start = ContinuousClock.now
        for _ in 0..<steps { _ = try model.trainStep([TorchTensor.tensors(try loader.next().batch)]) }
        let total = seconds(ContinuousClock.now - start)
        let waited = loader.waitSeconds
        print("\n### Data wait: \(steps) steps through the worker's BatchLoader (reference dataset, \(pairs.count) pairs, batch \(batch)) (target < 1 %)\n")
        print("| steps | total s | steps/s | waited on data s | share of step time |")
        print("|---|---|---|---|---|")
        print(String(format: "| %d | %.2f | %.2f | %.4f | %.3f %% |", steps, total, Double(steps) / total, waited, 100 * waited / total))
    }

    private func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
}

/// The synthetic batches of Sources/TorchShim/CONTRACT.md, bit for bit as
/// scripts/torch/synthetic_batches.py makes them.
enum SyntheticBatch {
    static func make(seed: UInt64, index: UInt64, rows: Int, textLength t: Int, codeLength c: Int, codes k: Int64 = 256) -> [TorchTensor] {
        var x = (seed << 32) &+ index
        x &+= 0x9E37_79B9_7F4A_7C15
        var z = x
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        var state = z ^ (z >> 31)
        func next() -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return state >> 33
        }
        var text: [Int64] = [], codes: [Int64] = [], tls: [Int64] = [], cls: [Int64] = []
        for _ in 0..<rows {
            let tl = t / 2 + Int(next() % UInt64(t - t / 2 + 1))
            var row: [Int64] = []
            for j in 0..<t {
                let v = Int64(2 + next() % 60)
                row.append(j < tl ? v : 0)
            }
            let cl = min(c, 2 * tl)
            for j in 0..<c { codes.append(j < cl ? (row[j / 2] * 7 + Int64(j % 2) * 3) % k : 0) }
            text += row
            tls.append(Int64(tl))
            cls.append(Int64(cl))
        }
        return [TorchTensor("text_ids", shape: [Int64(rows), Int64(t)], .int64(text)),
                TorchTensor("text_lengths", shape: [Int64(rows)], .int64(tls)),
                TorchTensor("code_ids", shape: [Int64(rows), Int64(c)], .int64(codes)),
                TorchTensor("code_lengths", shape: [Int64(rows)], .int64(cls))]
    }
}
