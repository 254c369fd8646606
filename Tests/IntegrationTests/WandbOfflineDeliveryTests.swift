import ClusterAdmin
import Foundation
import Shared
import Testing
import WandB

/// Issue 3: the W&B outbox writes each history row exactly once into the run's `.wandb` file,
/// whatever happens to the coordinator.
@Suite("W&B offline delivery (real processes)", .serialized)
struct WandbOfflineDeliveryTests {
    /// History steps and the exit code found in a `.wandb` file.
    func readRun(_ path: String) throws -> (steps: [Int64], keysPerRow: Set<Int>, exitSeen: Bool, exitCode: UInt64, stats: Int, artifacts: [(type: String, aliases: [String])]) {
        var artifacts: [(String, [String])] = []
        var steps: [Int64] = []
        var keys = Set<Int>()
        var exit = false
        var code: UInt64 = 0
        var stats = 0
        for payload in try TransactionLogReader.readAll(path: path) {
            let record = try ProtobufFields(payload)
            if let history = try record.message(2) {
                let items = try history.all(1).map { try ProtobufFields($0) }
                keys.insert(items.count)
                let step = try #require(items.first { $0.string(1) == "_step" }?.string(16))
                steps.append(try #require(Int64(step)))
            }
            if try record.message(7) != nil { stats += 1 }
            if let a = try record.message(8) {
                artifacts.append((a.string(4) ?? "", a.all(11).map { String(decoding: $0, as: UTF8.self) }))
            }
            if let e = try record.message(18) {
                exit = true
                code = e.varint(1) ?? 0
            }
        }
        return (steps, keys, exit, code, stats, artifacts)
    }

    @Test("a run delivered offline across two coordinator kill -9s has every step once, in order, then exit 0")
    func crashLoopOffline() async throws {
        let h = try ClusterHarness()
        let wandbDir = h.dir.appendingPathComponent("wandb-root").path
        try FileManager.default.createDirectory(atPath: wandbDir, withIntermediateDirectories: true)
        try await h.startCoordinator(["--wandb-dir", wandbDir])
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let checkpoints = h.dir.appendingPathComponent("checkpoints").path
        let reply = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=4000", "--param", "keys=5", "--param", "rate=800",
                                   "--param", "checkpoint_every=500", "--param", "checkpoint_dir=\(checkpoints)"], as: EnqueueReply.self)
        let run = try #require(reply.runId)
        try await Task.sleep(for: .seconds(1.5))
        for _ in 0..<2 {
            h.kill9("coordinator")
            try await Task.sleep(for: .seconds(1))
            try await h.startCoordinator(["--wandb-dir", wandbDir])
            try await Task.sleep(for: .seconds(1.2))
        }
        try await h.waitUntil("the W&B run is complete", timeout: 60) { h.log("coordinator").contains("W&B: run \(run) complete (offline") }
        let runs = try FileManager.default.contentsOfDirectory(atPath: wandbDir + "/wandb")
        let dir = try #require(runs.first { $0.hasPrefix("offline-run-") && $0.hasSuffix("-\(run)") }, "offline run directory in \(runs)")
        let file = "\(wandbDir)/wandb/\(dir)/run-\(run).wandb"
        let content = try readRun(file)
        #expect(content.steps == Array(0..<4000), "each step once, in order (got \(content.steps.count) rows)")
        #expect(content.keysPerRow == [8], "5 metrics + _step, _timestamp, _runtime in every row")
        #expect(content.exitSeen)
        #expect(content.exitCode == 0)
        // Checkpoints every 500 steps; artifact versions every 1,000 (the default cadence).
        #expect(content.artifacts.count == 4, "artifacts at steps 1000, 2000, 3000, 4000")
        #expect(content.artifacts.allSatisfy { $0.type == "model" && $0.aliases.contains("latest") })
    }

    @Test("audio samples reported by a run reach the offline run: copied under files/media, named by a files record, valued in history at their step")
    func mediaOffline() async throws {
        let h = try ClusterHarness()
        let wandbDir = h.dir.appendingPathComponent("wandb-root").path
        try FileManager.default.createDirectory(atPath: wandbDir, withIntermediateDirectories: true)
        try await h.startCoordinator(["--wandb-dir", wandbDir])
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let media = h.dir.appendingPathComponent("samples").path
        let reply = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=3000", "--param", "keys=2", "--param", "rate=3000",
                                   "--param", "media_every=1000", "--param", "media_dir=\(media)"], as: EnqueueReply.self)
        let run = try #require(reply.runId)
        try await h.waitUntil("the W&B run is complete", timeout: 60) { h.log("coordinator").contains("W&B: run \(run) complete (offline") }
        let runs = try FileManager.default.contentsOfDirectory(atPath: wandbDir + "/wandb")
        let dir = "\(wandbDir)/wandb/" + (try #require(runs.first { $0.hasSuffix("-\(run)") }))
        var samples: [(step: String, value: String)] = []
        var filesRecords: [String] = []
        var steps: [Int64] = []
        for payload in try TransactionLogReader.readAll(path: "\(dir)/run-\(run).wandb") {
            let record = try ProtobufFields(payload)
            if let history = try record.message(2) {
                let items = try history.all(1).map { try ProtobufFields($0) }
                let step = try #require(items.first { $0.string(1) == "_step" }?.string(16))
                steps.append(try #require(Int64(step)))
                if let v = items.first(where: { $0.string(1) == "eval/sample" })?.string(16) { samples.append((step, v)) }
            }
            if let files = try record.message(6) {
                filesRecords += try files.all(1).map { try ProtobufFields($0).string(1) ?? "" }
            }
        }
        // The sample "at step 3000" comes after the last step (2999): the run ends with one more row for it.
        #expect(steps == Array(0...3000), "every step once, in order")
        // A sample "at step N" is reported after step N-1's scalars: it waits for row N and joins it.
        #expect(samples.map(\.step) == ["1000", "2000", "3000"])
        for (i, s) in samples.enumerated() {
            let path = try #require(s.value.firstMatch(of: /"path":"(media\/audio\/eval_sample_\d+_[0-9a-f]{20}\.wav)"/)?.1)
            #expect(s.value.contains(#""_type":"audio-file""#))
            #expect(s.value.contains(#""caption":"step \#((i + 1) * 1000)""#))
            #expect(filesRecords.contains(String(path)), "a files record names \(path)")
            let copied = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/files/\(path)"))
            let original = try Data(contentsOf: URL(fileURLWithPath: "\(media)/\(run)-sample-\((i + 1) * 1000).wav"))
            #expect(copied == original)
        }
    }
}
