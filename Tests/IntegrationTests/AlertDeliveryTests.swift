import ClusterAdmin
import Foundation
import Shared
import Testing
import TestSupport

/// Issue 4: alerts from real coordinator and worker processes reach a loopback Slack webhook
/// exactly once, in order, at most one message a second, through failures and restarts.
@Suite("Alert delivery to Slack (real processes)", .serialized)
struct AlertDeliveryTests {
    /// The alert lines of every message Slack accepted (a grouped message has several).
    func deliveredLines(_ slack: MockSlackServer) async throws -> [String] {
        try await slack.posts().filter { $0.status == 200 }.flatMap { ($0.text ?? "").split(separator: "\n").map(String.init) }
    }

    func coordinatorEnvironment(_ slack: MockSlackServer) -> [String: String] {
        ["SLACK_WEBHOOK_URL": slack.baseURL + "/services/T000/B000/secretsecret"]
    }

    @Test("NaN alerts, their resolutions and the completion arrive once each, in order, ≥ 1 s apart, through 429 + Retry-After and 500s; invalid_payload is dropped, not retried")
    func exactlyOnceInOrder() async throws {
        let slack = try await MockSlackServer.start()
        defer { slack.stop() }
        try await slack.script(#"[{"status": 400, "body": "invalid_payload"}, {"status": 200}, {"status": 429, "retry_after": "2"}, {"status": 500, "count": 3}]"#)
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"], environment: coordinatorEnvironment(slack))
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=1600", "--param", "keys=2", "--param", "rate=400",
                                   "--param", "nan_at=200,800,1400"], as: EnqueueReply.self)
        let run = try #require(reply.runId)
        // 3 fires + 3 resolves + 1 completion = 7 notifications; the first message is refused.
        try await h.waitUntil("every notification is settled", timeout: 90) {
            let alerts = try h.cliJSON(["alerts", "--json"], as: [AlertSummary].self)
            let done = alerts.filter { $0.runId == run }
            return done.filter { $0.rule == "non_finite" }.count == 3 && done.contains { $0.rule == "run_completed" }
                && done.reduce(0) { $0 + $1.notifications } >= 5
        }
        try await Task.sleep(for: .seconds(3)) // anything still queued would be sent by now
        let posts = try await slack.posts()
        let refused = try #require(posts.first, "Slack saw the first message")
        #expect(refused.status == 400)
        let refusedLines = (refused.text ?? "").split(separator: "\n").map(String.init)
        let lines = try await deliveredLines(slack)
        // Exactly once: every alert line delivered once, the refused one never again.
        #expect(Set(lines).count == lines.count, "no line delivered twice: \(lines)")
        #expect(refusedLines.allSatisfy { !lines.contains($0) }, "invalid_payload is not retried")
        #expect(lines.count + refusedLines.count == 7, "fires, resolves and the completion: delivered \(lines), refused \(refusedLines)")
        // In order: each NaN alert fires before it resolves, and the completion comes last.
        let all = refusedLines + lines
        let fires = all.indices.filter { all[$0].hasPrefix("[CRITICAL] non_finite") }
        let resolves = all.indices.filter { all[$0].hasPrefix("[RESOLVED] non_finite") }
        #expect(fires.count == 3 && resolves.count == 3)
        #expect(zip(fires, resolves).allSatisfy { $0 < $1 } && zip(resolves.dropLast(), fires.dropFirst()).allSatisfy { $0 < $1 })
        #expect(all.last?.contains("run_completed") == true)
        // Pace: never two posts within a second; the post after the 429 waited Retry-After.
        let times = posts.map(\.time)
        for (a, b) in zip(times, times.dropFirst()) { #expect(b - a >= 0.95, "posts \(b - a) s apart") }
        if let i = posts.firstIndex(where: { $0.status == 429 }), i + 1 < posts.count {
            #expect(posts[i + 1].time - posts[i].time >= 1.95, "Retry-After: 2 honoured")
        }
        #expect(posts.filter { $0.status == 500 }.count == 3, "5xx retried")
        let log = h.log("coordinator")
        #expect(log.contains("invalid_payload"), "the refusal is reported with Slack's reason")
        #expect(!log.contains("secretsecret") && !log.contains("B000"), "the webhook URL never appears in the log")
    }

    @Test("alerts queued when the coordinator is kill -9'd are delivered after the restart; delivered ones are not sent again")
    func survivesRestart() async throws {
        let slack = try await MockSlackServer.start()
        defer { slack.stop() }
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"], environment: coordinatorEnvironment(slack))
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        // The first NaN is delivered; then Slack fails, so the next alerts wait in the outbox.
        let first = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=400", "--param", "keys=2", "--param", "rate=200",
                                   "--param", "nan_at=100"], as: EnqueueReply.self)
        let run1 = try #require(first.runId)
        try await h.waitUntilAsync("the first run's alerts are delivered", timeout: 30) {
            try await deliveredLines(slack).contains { $0.contains("run_completed · run \(run1)") }
        }
        try await slack.script(#"[{"status": 500, "count": 1000}]"#)
        let second = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=400", "--param", "keys=2", "--param", "rate=200",
                                    "--param", "nan_at=100"], as: EnqueueReply.self)
        let run2 = try #require(second.runId)
        try await h.waitUntilAsync("the second run's alert failed at least once", timeout: 30) {
            try await slack.posts().contains { $0.status == 500 && ($0.text ?? "").contains(run2) }
        }
        let before = try await deliveredLines(slack)
        h.kill9("coordinator")
        try await slack.clear() // Slack works again; only what arrives from now on is recorded
        try await h.startCoordinator(["--no-wandb"], environment: coordinatorEnvironment(slack))
        try await h.waitUntilAsync("the second run's alerts are delivered", timeout: 60) {
            try await deliveredLines(slack).contains { $0.hasPrefix("[CRITICAL] non_finite · run \(run2)") }
        }
        try await Task.sleep(for: .seconds(3))
        let after = try await deliveredLines(slack)
        #expect(!before.isEmpty)
        #expect(before.allSatisfy { !after.contains($0) }, "what was delivered before the crash is not sent again: \(after)")
        #expect(Set(after).count == after.count, "nothing delivered twice: \(after)")
        #expect(after.contains { $0.hasPrefix("[CRITICAL] non_finite · run \(run2)") })
    }

    @Test("a worker killed mid-shard raises worker_lost; the shard finishes on another worker and run_completed follows")
    func lostWorkerThenCompletion() async throws {
        let slack = try await MockSlackServer.start()
        defer { slack.stop() }
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb", "--lost-after-ms", "3000", "--heartbeat-ms", "500"], environment: coordinatorEnvironment(slack))
        try h.startWorker("first")
        try await h.waitUntil("the first worker is live", timeout: 20) { try h.workers().count == 1 }
        let reply = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=1500", "--param", "keys=2", "--param", "rate=500"], as: EnqueueReply.self)
        let run = try #require(reply.runId)
        try await h.waitUntil("the shard runs on the first worker", timeout: 20) { try h.shards().first?.state == "running" }
        h.kill9("first")
        try h.startWorker("second")
        try await h.waitUntilAsync("Slack hears of the lost worker", timeout: 30) {
            try await deliveredLines(slack).contains { $0.contains("worker_lost") && $0.contains(run) }
        }
        try await h.waitUntilAsync("Slack hears the run completed", timeout: 60) {
            try await deliveredLines(slack).contains { $0.contains("run_completed") && $0.contains(run) }
        }
        let lines = try await deliveredLines(slack)
        let lost = try #require(lines.firstIndex { $0.contains("worker_lost") })
        let done = try #require(lines.firstIndex { $0.contains("run_completed") })
        #expect(lost < done)
        #expect(lines[lost].contains("first"))
    }
}
