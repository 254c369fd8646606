import Foundation
import Shared
import Testing
@testable import Worker

/// The torch runner's data path: `.npy` files, pair manifests, and a seeded, bucketed,
/// prefetching batch loader that resumes exactly.
@Suite struct DataLoaderTests {
    /// A `.npy` file as `numpy.save` writes it (version 1.0, header padded to 64 bytes).
    static func npy(_ values: [Int32], descr: String = "<i4", shape: String? = nil, version: UInt8 = 1) -> [UInt8] {
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape ?? "(\(values.count),)"), }"
        let prefix = version == 1 ? 10 : 12
        while (prefix + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
        let n = header.utf8.count
        out += version == 1 ? [UInt8(n & 0xFF), UInt8(n >> 8)] : [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), 0, 0]
        out += Array(header.utf8)
        for v in values { withUnsafeBytes(of: v.littleEndian) { out += $0 } }
        return out
    }

    /// A dataset of `count` pairs: text i has i % 7 + 3 ids, codes i % 11 + 5 codes (values encode i).
    static func dataset(count: Int) throws -> (dir: String, manifest: String) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-data-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir + "/feat", withIntermediateDirectories: true)
        var lines: [String] = []
        for i in 0..<count {
            let text = (0..<(i % 7 + 3)).map { Int32(i * 100 + $0) }
            let codes = (0..<(i % 11 + 5)).map { Int32(i * 1000 + $0) }
            try Data(npy(text)).write(to: URL(fileURLWithPath: "\(dir)/feat/t\(i).npy"))
            try Data(npy(codes)).write(to: URL(fileURLWithPath: "\(dir)/feat/c\(i).npy"))
            lines.append(#"{"id": "u\#(i)", "target_text": "문장 \#(i)", "target_text_ids_path": "feat/t\#(i).npy", "target_text_len": \#(text.count), "target_codes_path": "feat/c\#(i).npy", "target_code_len": \#(codes.count), "prompt_condition_path": "x.npy"}"#)
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: dir + "/gpt_pairs_train.jsonl", atomically: true, encoding: .utf8)
        return (dir, dir + "/gpt_pairs_train.jsonl")
    }

    @Test("a .npy file as numpy writes it is read with its dtype and shape; versions 1 and 2")
    func npyRoundTrip() throws {
        let a = try NpyArray.parse(Self.npy([1, -2, 300_000]))
        #expect(a.dtype == .int32 && a.shape == [3] && a.integers == [1, -2, 300_000])
        let b = try NpyArray.parse(Self.npy([1, 2, 3, 4, 5, 6], shape: "(2, 3)", version: 2))
        #expect(b.shape == [2, 3] && b.count == 6 && b.integers == [1, 2, 3, 4, 5, 6])
    }

    @Test("bad .npy files are errors naming the file and the problem")
    func npyErrors() {
        func message(_ bytes: [UInt8]) -> String {
            do { _ = try NpyArray.parse(bytes, path: "/d/x.npy"); return "accepted" } catch { return error.description }
        }
        #expect(message(Array("hello".utf8)).contains("/d/x.npy is not a .npy file"))
        #expect(message(Self.npy([1, 2], descr: "<f8")).contains("dtype <f8"))
        #expect(message(Self.npy([1, 2], descr: ">i4")).contains("dtype >i4"))
        #expect(message(Array(Self.npy([1, 2, 3]).dropLast(2))).contains("truncated"))
        #expect(message(Self.npy([1, 2], shape: "(4,)")).contains("needs 16"))
        #expect(message(Array(Self.npy([1]).prefix(20))).contains("truncated inside its header"))
        do {
            _ = try NpyArray.read(contentsOf: "/nonexistent/t.npy")
            Issue.record("a missing file was accepted")
        } catch {
            #expect(error.description == "/nonexistent/t.npy does not exist")
        }
    }

    @Test("a pair manifest resolves paths relative to itself; bad lines and escaping paths are refused with file and line")
    func manifests() throws {
        let (dir, manifest) = try Self.dataset(count: 3)
        let pairs = try PairManifest.read(ManifestSpec(parsing: manifest + "::ko"))
        #expect(pairs.map(\.id) == ["u0", "u1", "u2"])
        #expect(pairs[1].textIdsPath == URL(fileURLWithPath: dir).standardizedFileURL.path + "/feat/t1.npy")
        #expect(pairs[1].language == "ko" && pairs[1].text == "문장 1" && pairs[1].codeLength == 6)
        let bad = dir + "/bad.jsonl"
        try "{\"id\": \"a\", \"target_text_ids_path\": \"feat/t0.npy\", \"target_codes_path\": \"feat/c0.npy\"}\nnot json\n".write(toFile: bad, atomically: true, encoding: .utf8)
        #expect(throws: ManifestError(path: bad, line: 2, message: "is not a JSON object")) { try PairManifest.read(ManifestSpec(path: bad)) }
        try "{\"id\": \"a\", \"target_text_ids_path\": \"feat/t0.npy\"}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        #expect((try? PairManifest.read(ManifestSpec(path: bad))) == nil)
        try "{\"id\": \"a\", \"target_text_ids_path\": \"../../etc/passwd\", \"target_codes_path\": \"feat/c0.npy\"}\n".write(toFile: bad, atomically: true, encoding: .utf8)
        do {
            _ = try PairManifest.read(ManifestSpec(path: bad))
            Issue.record("a path outside the manifest's directory was accepted")
        } catch {
            #expect(error.description.contains("../../etc/passwd, which is outside the manifest's directory"))
        }
    }

    @Test("every pair appears once per epoch, batches are length-bucketed, and the order depends only on the seed")
    func epochPlan() throws {
        let (_, manifest) = try Self.dataset(count: 100)
        let pairs = try PairManifest.read(ManifestSpec(path: manifest))
        let loader = try BatchLoader(pairs: pairs, batchSize: 8, seed: 42, bucketBatches: 4)
        defer { loader.close() }
        let plan = loader.plan(epoch: 0)
        #expect(plan.count == 12, "100 pairs in batches of 8: 12 full batches, the short one dropped")
        #expect(Set(plan.flatMap { $0 }).count == 96)
        #expect(plan.allSatisfy { $0.count == 8 })
        let again = try BatchLoader(pairs: pairs, batchSize: 8, seed: 42, bucketBatches: 4)
        defer { again.close() }
        #expect(again.plan(epoch: 0) == plan && again.plan(epoch: 1) == loader.plan(epoch: 1))
        #expect(loader.plan(epoch: 1) != plan, "each epoch has its own order")
        let other = try BatchLoader(pairs: pairs, batchSize: 8, seed: 43, bucketBatches: 4)
        defer { other.close() }
        #expect(other.plan(epoch: 0) != plan)
        // Bucketing: code lengths within a batch spread less than in random batches.
        let lengths = pairs.map { $0.codeLength ?? 0 }
        let spread = plan.map { b in (b.map { lengths[$0] }.max() ?? 0) - (b.map { lengths[$0] }.min() ?? 0) }
        #expect(Double(spread.reduce(0, +)) / Double(spread.count) < 6, "mean in-batch length spread \(spread)")
    }

    @Test("batches are padded with their lengths; the loader continues into the next epoch and resumes exactly from a position")
    func batchesAndResume() throws {
        let (_, manifest) = try Self.dataset(count: 20)
        let pairs = try PairManifest.read(ManifestSpec(path: manifest))
        let loader = try BatchLoader(pairs: pairs, batchSize: 4, seed: 7)
        var produced: [(PaddedBatch, LoaderPosition)] = []
        for _ in 0..<12 { produced.append(try loader.next()) }
        loader.close()
        let (first, _) = produced[0]
        #expect(first.size == 4)
        #expect(first.textIds.count == 4 * first.maxTextLength && first.codeIds.count == 4 * first.maxCodeLength)
        for (row, id) in first.ids.enumerated() {
            let i = Int(id.dropFirst())!
            let n = Int(first.codeLengths[row])
            #expect(n == i % 11 + 5)
            #expect(Array(first.codeIds[(row * first.maxCodeLength)..<(row * first.maxCodeLength + n)]) == (0..<n).map { Int64(i * 1000 + $0) })
            #expect(first.codeIds[(row * first.maxCodeLength + n)..<((row + 1) * first.maxCodeLength)].allSatisfy { $0 == 0 }, "padding is 0")
        }
        #expect(produced[4].1 == LoaderPosition(epoch: 1, batch: 0), "5 batches an epoch, then the next epoch")
        // Resume from the position after batch 6: the same batches follow.
        let resumed = try BatchLoader(pairs: pairs, batchSize: 4, seed: 7, start: produced[6].1)
        defer { resumed.close() }
        for k in 7..<12 { #expect(try resumed.next().batch == produced[k].0) }
    }

    @Test("a data-parallel rank's share: of every N batches one process would take, rank r gets the r-th, across epochs, and every rank's position after a batch is the one process's after all N")
    func rankShare() throws {
        let (_, manifest) = try Self.dataset(count: 20) // 5 batches of 4 an epoch: groups of 2 straddle epochs
        let pairs = try PairManifest.read(ManifestSpec(path: manifest))
        let one = try BatchLoader(pairs: pairs, batchSize: 4, seed: 7)
        var global: [(PaddedBatch, LoaderPosition)] = []
        for _ in 0..<12 { global.append(try one.next()) }
        one.close()
        for rank in 0..<2 {
            let loader = try BatchLoader(pairs: pairs, batchSize: 4, seed: 7, share: (rank, 2))
            defer { loader.close() }
            for k in 0..<6 {
                let (batch, next) = try loader.next()
                #expect(batch == global[2 * k + rank].0, "rank \(rank), batch \(k): the process's batch \(2 * k + rank)")
                #expect(next == global[2 * k + 1].1, "rank \(rank), batch \(k): the position after the pair")
            }
        }
        // A checkpoint's position resumes every rank in step.
        let resumed = try BatchLoader(pairs: pairs, batchSize: 4, seed: 7, start: global[5].1, share: (1, 2))
        defer { resumed.close() }
        #expect(try resumed.next().batch == global[7].0)
    }

    @Test("a corrupt feature file is an error for that batch naming the file, not a crash")
    func corruptFeature() throws {
        let (dir, manifest) = try Self.dataset(count: 4)
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: dir + "/feat/c2.npy"))
        let pairs = try PairManifest.read(ManifestSpec(path: manifest))
        let loader = try BatchLoader(pairs: pairs, batchSize: 4, seed: 1)
        defer { loader.close() }
        do {
            _ = try loader.next()
            Issue.record("a corrupt file was accepted")
        } catch {
            #expect(error.description.hasSuffix("feat/c2.npy is not a .npy file (no \\x93NUMPY magic)"))
        }
    }

    @Test("prompt conditions: with conditions on, each batch carries its pairs' float32 [R, D] condition arrays as a fifth tensor 'condition' [B, R, D] in batch order; off, four tensors; a pair without one, a wrong dtype or a different shape is an error naming the file")
    func promptConditions() throws {
        let (dir, manifest) = try Self.dataset(count: 6)
        // Pair i's condition: [3, 2] float32, value i * 10 + k at flat index k.
        var lines: [String] = []
        for (n, line) in try String(contentsOfFile: manifest, encoding: .utf8).split(separator: "\n").enumerated() {
            let values = (0..<6).map { Float(n * 10 + $0) }
            try Data(Self.npy(values.map { Int32(bitPattern: $0.bitPattern) }, descr: "<f4", shape: "(3, 2)")).write(to: URL(fileURLWithPath: "\(dir)/feat/p\(n).npy"))
            lines.append(line.replacingOccurrences(of: #""prompt_condition_path": "x.npy""#, with: #""prompt_condition_path": "feat/p\#(n).npy""#))
        }
        try (lines.joined(separator: "\n") + "\n").write(toFile: manifest, atomically: true, encoding: .utf8)
        let pairs = try PairManifest.read(ManifestSpec(path: manifest))
        #expect(pairs.allSatisfy { $0.conditionPath?.hasPrefix(dir + "/feat/p") == true })
        let loader = try BatchLoader(pairs: pairs, batchSize: 3, seed: 1, conditions: true)
        defer { loader.close() }
        let batch = try loader.next().batch
        let condition = try #require(batch.condition)
        #expect(batch.conditionShape == [3, 2] && condition.count == 3 * 6)
        for (r, id) in batch.ids.enumerated() {
            let i = try #require(Int(id.dropFirst()))
            #expect(Array(condition[(r * 6)..<(r * 6 + 6)]) == (0..<6).map { Float(i * 10 + $0) }, "row \(r) is pair \(id)'s condition")
        }
        let tensors = TorchTensor.tensors(batch)
        #expect(tensors.map(\.name) == ["text_ids", "text_lengths", "code_ids", "code_lengths", "condition"])
        #expect(tensors[4].shape == [3, 3, 2] && tensors[4].storage == .float32(condition))
        // Off: four tensors, no condition read.
        let plain = try BatchLoader(pairs: pairs, batchSize: 3, seed: 1)
        defer { plain.close() }
        let plainBatch = try plain.next().batch
        #expect(plainBatch.condition == nil && TorchTensor.tensors(plainBatch).count == 4)
        // The runner passes them only to a forward that takes a fifth tensor, and refuses a mix.
        #expect(try TrainingLoop.passesConditions(forwardArity: 5, pairs: pairs))
        #expect(try !TrainingLoop.passesConditions(forwardArity: 4, pairs: pairs))
        var bare = pairs
        bare[2].conditionPath = nil
        #expect(throws: ManifestError.self) { try TrainingLoop.passesConditions(forwardArity: 5, pairs: bare) }
        #expect(try !TrainingLoop.passesConditions(forwardArity: 5, pairs: pairs.map { var p = $0; p.conditionPath = nil; return p }))
        do {
            _ = try BatchLoader(pairs: bare, batchSize: 3, seed: 1, conditions: true)
            Issue.record("a pair without a condition was accepted")
        } catch {
            #expect(error.description.contains("u2") && error.description.contains("prompt_condition_path"), "\(error)")
        }
        // A condition of another shape, or of integers, in a batch.
        try Data(Self.npy([1, 2, 3, 4], descr: "<f4", shape: "(2, 2)")).write(to: URL(fileURLWithPath: "\(dir)/feat/p1.npy"))
        try Data(Self.npy([1, 2, 3, 4, 5, 6], shape: "(3, 2)")).write(to: URL(fileURLWithPath: "\(dir)/feat/p4.npy"))
        let bad = try BatchLoader(pairs: pairs, batchSize: 3, seed: 1, conditions: true)
        defer { bad.close() }
        #expect(throws: NpyError.self) { try bad.load([0, 1]) }
        #expect(throws: NpyError.self) { try bad.load([4]) }
        do { _ = try bad.load([0, 1]) } catch { #expect(error.description.contains("feat/p1.npy") && error.description.contains("[2, 2]"), "\(error)") }
        do { _ = try bad.load([4]) } catch { #expect(error.description.contains("feat/p4.npy") && error.description.contains("float32"), "\(error)") }
    }

    @Test("the torch runner prunes numbered checkpoints to the newest three but keeps every one at the eval cadence (a queued evaluation loads it)")
    func checkpointPruning() {
        let names = ["model_step50.pth", "model_step100.pth", "model_step150.pth", "model_step200.pth", "model_step250.pth",
                     "model_step300.pth", "model_step300.pth.tmp", "latest.pth", "notes.txt"]
        #expect(Set(TrainingLoop.prunable(names, evalEvery: 0)) == ["model_step50.pth", "model_step100.pth", "model_step150.pth"])
        #expect(Set(TrainingLoop.prunable(names, evalEvery: 100)) == ["model_step50.pth", "model_step150.pth"])
        #expect(TrainingLoop.prunable(names, evalEvery: 50).isEmpty)
    }
}
