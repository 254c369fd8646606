import ClusterAdmin
import Foundation
import Shared
import Testing

/// Issue 3: every point a trainer produces reaches the store exactly once, whatever happens to
/// the coordinator.
@Suite("Metrics are never lost (real processes)", .serialized)
struct MetricsDeliveryTests {
    @Test("100,000 points streamed while the coordinator is kill -9ed and restarted twice: the store holds each exactly once")
    func coordinatorCrashLoop() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=10000", "--param", "keys=10", "--param", "rate=1500"], as: EnqueueReply.self)
        let run = try #require(reply.runId)
        try await h.waitUntil("points arrive", timeout: 20) { try h.cliJSON(["metrics", run], as: MetricsReport.self).totalPoints > 5_000 }
        for _ in 0..<2 {
            h.kill9("coordinator")
            try await Task.sleep(for: .seconds(1.5))
            try await h.startCoordinator()
            try await Task.sleep(for: .seconds(1.5))
        }
        try await h.waitUntil("the shard succeeds", timeout: 60) { try h.shards().first?.state == "succeeded" }
        try await h.waitUntil("all points are stored", timeout: 30) { try h.cliJSON(["metrics", run], as: MetricsReport.self).totalPoints >= 100_000 }
        let report = try h.cliJSON(["metrics", run], as: MetricsReport.self)
        #expect(report.totalPoints == 100_000)
        #expect(report.pointsByKey.count == 10)
        #expect(report.pointsByKey.values.allSatisfy { $0 == 10_000 })
        let series = try #require(try h.cliJSON(["metrics", run, "--key", "train/mel_loss"], as: MetricsReport.self).series)
        #expect(series.map(\.step) == Array(0..<10_000), "every step once, in order")
        #expect(series.allSatisfy { $0.value == 1 + Double($0.step) / 1000 }, "values as logged")
        #expect(h.log("coordinator").components(separatedBy: "listening on").count == 4, "three coordinator lives")
    }

    @Test("a worker restarted on its state directory re-sends what was not acknowledged, and nothing twice")
    func workerRestart() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        // Stop the coordinator so points pile up in the worker's spool, then kill the worker too.
        let reply = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=3000", "--param", "keys=5", "--param", "rate=1000", "--max-retries", "0"], as: EnqueueReply.self)
        let run = try #require(reply.runId)
        try await h.waitUntil("points arrive", timeout: 20) { try h.cliJSON(["metrics", run], as: MetricsReport.self).totalPoints > 1_000 }
        h.kill9("coordinator")
        try await Task.sleep(for: .seconds(1.5))
        h.kill9("trainer")
        try await h.startCoordinator()
        let stored = try h.cliJSON(["metrics", run], as: MetricsReport.self).totalPoints
        try h.startWorker("trainer")
        // With no retries the killed attempt is not run again, so every stored point comes from it.
        try await h.waitUntil("the killed attempt is settled", timeout: 30) { try h.shards().first?.state == "failed" }
        var last = -1
        try await h.waitUntil("the spool backlog is delivered", timeout: 30) {
            let now = try h.cliJSON(["metrics", run], as: MetricsReport.self).totalPoints
            defer { last = now }
            return now > stored && now == last
        }
        #expect(h.log("trainer").contains("entries from an earlier run will be delivered"))
        let report = try h.cliJSON(["metrics", run], as: MetricsReport.self)
        let series = try #require(try h.cliJSON(["metrics", run, "--key", "train/text_loss"], as: MetricsReport.self).series)
        #expect(series.map(\.step) == Array(0..<Int64(series.count)), "each step once, no gap")
        #expect(report.totalPoints == series.count * 5)
    }

    @Test("a worker whose spool directory was lost (identity kept) still gets every new point stored")
    func spoolLost() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let first = try #require(try h.cliJSON(["enqueue", "synthetic", "--param", "steps=300", "--param", "keys=2"], as: EnqueueReply.self).runId)
        try await h.waitUntil("the first run is stored", timeout: 30) { try h.cliJSON(["metrics", first], as: MetricsReport.self).totalPoints == 600 }
        try await h.waitUntil("the shard settles", timeout: 30) { try h.shards().first?.state == "succeeded" }
        h.kill9("trainer")
        try FileManager.default.removeItem(at: h.dir.appendingPathComponent("state-trainer/spool"))
        try h.startWorker("trainer")
        let second = try #require(try h.cliJSON(["enqueue", "synthetic", "--param", "steps=200", "--param", "keys=2"], as: EnqueueReply.self).runId)
        try await h.waitUntil("the second run is stored", timeout: 30) { try h.cliJSON(["metrics", second], as: MetricsReport.self).totalPoints == 400 }
        #expect(try h.workers().count == 1, "same identity")
    }
}
