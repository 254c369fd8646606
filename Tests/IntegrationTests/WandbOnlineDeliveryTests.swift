import ClusterAdmin
import Foundation
import Shared
import Testing
import TestSupport

/// Issue 3, end to end: the W&B server holds every point exactly once.
@Suite("W&B online delivery (real processes)", .serialized)
struct WandbOnlineDeliveryTests {
    @Test("100,000 points reach the W&B server exactly once through two coordinator kill -9s and a W&B outage")
    func endToEnd() async throws {
        let h = try ClusterHarness()
        let record = h.dir.appendingPathComponent("wandb-requests.jsonl").path
        let mock = try await MockWandbServer.start(record: record)
        defer { mock.stop() }
        let key = String(repeating: "k", count: 40)
        let args = ["--wandb-mode", "online", "--wandb-stream-interval-ms", "200"]
        let env = ["WANDB_API_KEY": key, "WANDB_BASE_URL": mock.baseURL, "WANDB_PROJECT": "tts-it"]
        try await h.startCoordinator(args, environment: env)
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=10000", "--param", "keys=10", "--param", "rate=1500"], as: EnqueueReply.self)
        let run = try #require(reply.runId)
        try await Task.sleep(for: .seconds(1.5))
        try await mock.control(#"{"refuse_seconds": 3}"#)
        h.kill9("coordinator")
        try await Task.sleep(for: .seconds(1))
        try await h.startCoordinator(args, environment: env)
        try await Task.sleep(for: .seconds(2))
        h.kill9("coordinator")
        try await Task.sleep(for: .seconds(1))
        try await h.startCoordinator(args, environment: env)
        try await h.waitUntil("the W&B run is complete", timeout: 90) { h.log("coordinator").contains("W&B: run \(run) complete") }
        // The store holds each point once.
        let report = try h.cliJSON(["metrics", run], as: MetricsReport.self)
        #expect(report.totalPoints == 100_000)
        // The server holds each history line once, in step order, with every value.
        let lines = try await mock.lines(run: run, file: "wandb-history.jsonl")
        #expect(lines.count == 10_000)
        #expect(!lines.contains(nil), "no holes")
        var steps: [Int] = []
        var values = 0
        for case let line? in lines {
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            steps.append(try #require(obj["_step"] as? Int))
            values += obj.keys.filter { !$0.hasPrefix("_") }.count
        }
        #expect(steps == Array(0..<10_000))
        #expect(values == 100_000)
        let state = try #require(try JSONSerialization.jsonObject(with: Data(try await mock.get("/_state"))) as? [String: Any])
        let runs = try #require(state["runs"] as? [String: Any])
        let runState = try #require(runs[run] as? [String: Any], "run \(run) in \(runs.keys)")
        #expect(runState["complete"] as? Bool == true)
        #expect(runState["exitcode"] as? Int == 0)
        // The key never appears in what we wrote.
        for log in ["coordinator", "trainer"] { #expect(!h.log(log).contains(key)) }
    }

    @Test("a rejected API key is reported once, loudly; the data stays queued and arrives once W&B accepts it")
    func rejectedKey() async throws {
        let h = try ClusterHarness()
        let mock = try await MockWandbServer.start(record: h.dir.appendingPathComponent("wandb-requests.jsonl").path)
        defer { mock.stop() }
        try await mock.control(#"{"fail": [{"status": 401, "count": 1000000, "path": "graphql"}]}"#)
        let key = String(repeating: "r", count: 40)
        try await h.startCoordinator(["--wandb-mode", "online", "--wandb-stream-interval-ms", "200", "--wandb-unauthorized-pause-ms", "500"],
                                     environment: ["WANDB_API_KEY": key, "WANDB_BASE_URL": mock.baseURL])
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let run = try #require(try h.cliJSON(["enqueue", "synthetic", "--param", "steps=500", "--param", "keys=4"], as: EnqueueReply.self).runId)
        try await h.waitUntil("the key is reported as rejected", timeout: 20) { h.log("coordinator").contains("W&B REJECTED THE API KEY") }
        try await Task.sleep(for: .seconds(3)) // several pauses and retries
        #expect(h.log("coordinator").components(separatedBy: "W&B REJECTED THE API KEY").count == 2, "reported once")
        #expect(h.log("coordinator").components(separatedBy: "W&B delivery paused").count == 2, "the pause is explained once")
        #expect(try h.cliJSON(["metrics", run], as: MetricsReport.self).totalPoints == 2_000, "the store has everything meanwhile")
        try await mock.control(#"{"clear_faults": true}"#)
        try await h.waitUntil("the run is delivered", timeout: 30) { h.log("coordinator").contains("W&B: run \(run) complete") }
        #expect(try await mock.lines(run: run, file: "wandb-history.jsonl").count == 500)
        #expect(h.log("coordinator").contains("W&B accepts the API key again"))
        #expect(!h.log("coordinator").contains(key))
    }
}
