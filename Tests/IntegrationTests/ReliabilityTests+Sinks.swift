import ClusterAdmin
import Foundation
import Shared
import Testing
import TestSupport

/// Issue 9, part 4: W&B down, then slow, then rate-limiting; Slack rate-limiting.
extension ReliabilityTests {
    /// Seconds W&B refuses connections (`TTS_WANDB_DOWN_SECONDS`; 60 in CI, 600 in the long run).
    static var wandbDownSeconds: Double { Double(ProcessInfo.processInfo.environment["TTS_WANDB_DOWN_SECONDS"] ?? "") ?? 60 }

    @Test("slow and failing sinks: W&B refuses connections for 60 s, then answers in 5 s, then rate-limits (429 storm) while Slack rate-limits too: every history row and every alert delivered once and in order, and /metrics shows the outbox depth and age rise and fall",
          .timeLimit(.minutes(Int(wandbDownSeconds / 60) + 7)))
    func slowAndFailingSinks() async throws {
        let slack = try await MockSlackServer.start()
        defer { slack.stop() }
        try await slack.script(#"[{"status": 429, "retry_after": "2", "count": 2}, {"status": 200}, {"status": 429, "retry_after": "1", "count": 3}, {"status": 200}, {"status": 429, "retry_after": "2"}]"#)
        let h = try ClusterHarness()
        let mock = try await MockWandbServer.start(record: h.dir.appendingPathComponent("wandb-requests.jsonl").path)
        defer { mock.stop() }
        let key = String(repeating: "s", count: 40)
        try await h.startCoordinator(["--wandb-mode", "online", "--wandb-stream-interval-ms", "200", "--alert-group-wait-ms", "100"],
                                     environment: ["WANDB_API_KEY": key, "WANDB_BASE_URL": mock.baseURL, "WANDB_PROJECT": "tts-it",
                                                   "SLACK_WEBHOOK_URL": slack.baseURL + "/services/T000/B000/sinksecret"])
        let api = API(base: h.httpURL)
        try h.startWorker("trainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let steps = 6_000, keys = 4
        let run = try #require(try h.cliJSON(["enqueue", "synthetic", "--param", "steps=\(steps)", "--param", "keys=\(keys)", "--param", "rate=50",
                                              "--param", "nan_at=1000,3000,5000"], as: EnqueueReply.self).runId)
        try await h.waitUntil("the W&B run exists", timeout: 20) { h.log("coordinator").contains("W&B: run \(run) (") }

        // W&B goes away; the slow replies and the 429 storm are queued for when it comes back.
        let slowReplies = 6, storm = 30
        try await mock.control(#"{"fail": [{"delay_ms": 5000, "count": \#(slowReplies)}, {"status": 429, "retry_after": 1, "count": \#(storm)}], "refuse_seconds": \#(Self.wandbDownSeconds)}"#)
        let downAt = Date()
        var maxDepth = 0.0, maxAge = 0.0
        while Date().timeIntervalSince(downAt) < Self.wandbDownSeconds - 2 {
            let samples = try await MetricsEndpointTests.scrape(api, dir: h.dir)
            maxDepth = max(maxDepth, MetricsEndpointTests.value(samples, "tts_outbox_depth", ["sink": "wandb"]) ?? 0)
            maxAge = max(maxAge, MetricsEndpointTests.value(samples, "tts_outbox_oldest_age_seconds", ["sink": "wandb"]) ?? 0)
            try await Task.sleep(for: .seconds(5))
        }
        #expect(maxDepth > 1_000, "the W&B outbox backlog shows in /metrics: \(maxDepth)")
        #expect(maxAge >= Self.wandbDownSeconds / 2, "its age shows in /metrics: \(maxAge) s")

        try await h.waitUntil("the W&B run is complete", timeout: Self.wandbDownSeconds + 300) { h.log("coordinator").contains("W&B: run \(run) complete") }
        let upAfter = Date().timeIntervalSince(downAt)
        // Every row once, in order, with every value.
        let lines = try await mock.lines(run: run, file: "wandb-history.jsonl")
        #expect(lines.count == steps && !lines.contains(nil), "\(lines.count) history lines, holes: \(lines.filter { $0 == nil }.count)")
        var stepsSeen: [Int] = []
        var values = 0
        for case let line? in lines {
            // W&B writes non-finite values as bare NaN / Infinity, which strict JSON parsers refuse.
            let strict = line.replacingOccurrences(of: "-Infinity", with: "null").replacingOccurrences(of: "Infinity", with: "null").replacingOccurrences(of: "NaN", with: "null")
            let obj = try #require(try JSONSerialization.jsonObject(with: Data(strict.utf8)) as? [String: Any])
            stepsSeen.append(try #require(obj["_step"] as? Int))
            values += obj.keys.filter { !$0.hasPrefix("_") && !$0.hasPrefix("system") }.count
        }
        #expect(stepsSeen == Array(0..<steps), "history rows in step order, each once")
        #expect(values == steps * keys)
        let records = try String(contentsOfFile: h.dir.appendingPathComponent("wandb-requests.jsonl").path, encoding: .utf8)
            .split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        let slowSeen = records.filter { ($0["fault"] as? [String: Any])?["delay_ms"] != nil }.count
        let rateLimited = records.filter { $0["status"] as? Int == 429 }.count
        #expect(slowSeen == slowReplies && rateLimited == storm, "the server answered \(slowSeen) slow replies and \(rateLimited) 429s")

        // Slack: every notification once, in order, through its 429s.
        try await h.waitUntil("every notification is settled", timeout: 120) {
            let alerts = try h.cliJSON(["alerts", "--json"], as: [AlertSummary].self).filter { $0.runId == run }
            return alerts.filter { $0.rule == "non_finite" }.count == 3 && alerts.contains { $0.rule == "run_completed" }
                && alerts.reduce(0) { $0 + $1.notifications } >= 7
        }
        try await Task.sleep(for: .seconds(3))
        let posts = try await slack.posts()
        let delivered = try await Self.deliveredLines(slack)
        #expect(Set(delivered).count == delivered.count, "no alert delivered twice: \(delivered)")
        let fires = delivered.indices.filter { delivered[$0].hasPrefix("[CRITICAL] non_finite") }
        let resolves = delivered.indices.filter { delivered[$0].hasPrefix("[RESOLVED] non_finite") }
        #expect(fires.count == 3 && resolves.count == 3, "\(delivered)")
        #expect(zip(fires, resolves).allSatisfy { $0 < $1 } && zip(resolves.dropLast(), fires.dropFirst()).allSatisfy { $0 < $1 }, "in order: \(delivered)")
        #expect(delivered.last?.contains("run_completed") == true)
        let slack429 = posts.filter { $0.status == 429 }.count
        #expect(slack429 == 6, "Slack answered 429 six times: \(posts.map(\.status))")

        // Both outboxes drained, and /metrics says so.
        try await h.waitUntilAsync("the outboxes are empty in /metrics", timeout: 30) {
            let samples = try await MetricsEndpointTests.scrape(api, dir: h.dir)
            return MetricsEndpointTests.value(samples, "tts_outbox_depth", ["sink": "wandb"]) == 0
                && MetricsEndpointTests.value(samples, "tts_outbox_depth", ["sink": "slack"]) == 0
        }
        #expect(!h.log("coordinator").contains(key), "the W&B key never appears in the log")
        ReliabilityFigures.record("slow-and-failing-sinks", [
            "wandb_down_seconds": Self.wandbDownSeconds, "wandb_slow_replies": slowSeen, "wandb_slow_reply_seconds": 5, "wandb_429_replies": rateLimited,
            "slack_429_replies": slack429, "outbox_depth_max_wandb": maxDepth, "outbox_oldest_age_seconds_max_wandb": maxAge,
            "wandb_run_complete_after_seconds": upAfter, "history_rows": lines.count, "history_rows_expected": steps,
            "history_rows_out_of_place": zip(stepsSeen, 0...).filter { $0 != $1 }.count, "history_rows_twice": stepsSeen.count - Set(stepsSeen).count,
            "alerts_delivered": delivered.count, "alerts_delivered_twice": delivered.count - Set(delivered).count,
        ])
    }
}
