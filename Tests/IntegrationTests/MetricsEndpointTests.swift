import ClusterAdmin
import Foundation
import Shared
import Testing

/// Issue 8: `/metrics` as Prometheus reads it, against the store's own numbers.
@Suite("Prometheus /metrics (real HTTP)", .serialized)
struct MetricsEndpointTests {
    struct Sample: Decodable {
        var name: String
        var labels: [String: String]
        var value: Double?
    }

    /// `/metrics` parsed by the official Python client's parser (prometheus-client).
    static func scrape(_ api: API, dir: URL) async throws -> [Sample] {
        let python = try #require(try FixtureScript.values("prometheus/prom_env.sh")["PYTHON"])
        let r = try await api.get("/metrics")
        try #require(r.status == 200, "GET /metrics: \(r.status)")
        #expect(r.headers["content-type"]?.hasPrefix("text/plain; version=0.0.4") == true)
        let file = dir.appendingPathComponent("metrics-\(UUID().uuidString.prefix(6)).txt")
        try Data(r.body).write(to: file)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: python)
        p.arguments = [FixtureScript.fixtures.appendingPathComponent("prometheus/parse_metrics.py").path, file.path]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile(), e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "prometheus_client could not parse /metrics: \(String(decoding: e, as: UTF8.self))")
        return try String(decoding: o, as: UTF8.self).split(separator: "\n").map { try JSONCoding.decode(Sample.self, from: Array($0.utf8)) }
    }

    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }?.value
    }

    @Test("prometheus_client parses /metrics; workers, shards, ingested points, run steps, outbox depth and alerts match the store")
    func metricsMatchTheStore() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator(["--wandb-mode", "offline", "--wandb-dir", h.dir.appendingPathComponent("wandb").path])
        try h.startWorker("w1")
        try h.startWorker("w2")
        let api = API(base: h.httpURL)
        try await h.waitUntil("both workers are live", timeout: 20) { try h.workers().filter { $0.state == "live" }.count == 2 }
        let reply = try h.cliJSON(["enqueue", "synthetic", "--param", "steps=500", "--param", "keys=3", "--param", "rate=0",
                                   "--param", "nan_at=250"], as: EnqueueReply.self)
        let run = try #require(reply.runId)
        _ = try h.cliJSON(["enqueue", "sleep", "--param", "seconds=0.1", "--count", "3"], as: EnqueueReply.self)
        try await h.waitUntil("every shard is done", timeout: 60) { try h.shards().allSatisfy { $0.state == "succeeded" } }
        try await h.waitUntil("the NaN alert is raised", timeout: 30) {
            try h.cliJSON(["alerts"], as: [AlertSummary].self).contains { $0.rule == "non_finite" }
        }
        let deadline = Date().addingTimeInterval(30)
        while Self.value(try await Self.scrape(api, dir: h.dir), "tts_outbox_depth", ["sink": "wandb"]) != 0, Date() < deadline {
            try await Task.sleep(for: .milliseconds(300))
        }

        let samples = try await Self.scrape(api, dir: h.dir)
        let workers = try h.workers(), shards = try h.shards(), alerts = try h.cliJSON(["alerts"], as: [AlertSummary].self)
        #expect(Self.value(samples, "tts_workers", ["state": "live"]) == Double(workers.filter { $0.state == "live" }.count))
        #expect(Self.value(samples, "tts_workers", ["state": "lost"]) == 0)
        #expect(Self.value(samples, "tts_shards", ["state": "succeeded"]) == Double(shards.count))
        #expect(Self.value(samples, "tts_shards", ["state": "queued"]) == 0)
        let points = try h.cliJSON(["metrics", run], as: MetricsReport.self).totalPoints
        #expect(points == 1_500)
        #expect(Self.value(samples, "tts_ingested_points_total") == Double(points), "the counter of stored points")
        #expect(Self.value(samples, "tts_outbox_depth", ["sink": "wandb"]) == 0)
        #expect(Self.value(samples, "tts_outbox_oldest_age_seconds", ["sink": "wandb"]) == 0)
        #expect(Self.value(samples, "tts_outbox_depth", ["sink": "slack"]) == 0, "no webhook: nothing queued for Slack")
        for state in AlertSummary.State.known {
            #expect(Self.value(samples, "tts_alerts", ["state": state.rawValue]) == Double(alerts.filter { $0.state == state }.count), "alerts \(state)")
        }
        #expect((Self.value(samples, "tts_alerts_by_rule", ["rule": "non_finite"]) ?? 0) >= 1)
        #expect(Self.value(samples, "tts_jobs") == 2)
        #expect((Self.value(samples, "tts_http_requests_total", ["method": "GET", "code": "200"]) ?? 0) > 0)
        #expect((Self.value(samples, "tts_coordinator_uptime_seconds") ?? 0) > 0)
        // A training run's step and latest losses, once it is in the store.
        for r in try h.cliJSON(["runs"], as: [RunSummary].self) {
            #expect(Self.value(samples, "tts_run_step", ["run": r.id]) == Double(r.step ?? 0))
        }
    }
}
