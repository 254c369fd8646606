import ArgumentParser
import ClusterAdmin
import CurlHTTP
import Foundation
import Shared

/// Issue 4: from the moment a worker's runner produces a NaN loss to the moment the loopback
/// Slack webhook receives the alert, over real processes with default settings.
struct AlertLatency: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "alert-latency",
        abstract: "NaN → Slack POST latency over N trials (target p99 < 1 s; the guide's monitor: up to 60 s plus its check interval).")

    @Option(help: "tts-coordinator binary.") var coordinatorBin: String
    @Option(help: "tts-worker binary.") var workerBin: String
    @Option(help: "The loopback Slack server (Tests/Fixtures/slack/mock_slack_server.py).") var slackMock: String
    @Option(help: "Trials (NaNs).") var trials = 100
    @Option(help: "Seconds between two NaNs (Slack takes one message a second: fire and resolve are two).") var spacing = 2.5

    func run() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-alert-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        let slack = try ServerProcess(name: "slack", executable: "/usr/bin/env", arguments: ["python3", "-u", slackMock, "--port", "0"], logPath: dir + "/slack.log")
        var slackPort: Int?
        for _ in 0..<100 where slackPort == nil {
            try await Task.sleep(for: .milliseconds(50))
            slackPort = slack.log.split(separator: "\n").first { $0.hasPrefix("listening ") }.flatMap { Int($0.dropFirst("listening ".count)) }
        }
        guard let slackPort else { throw BenchError("the Slack mock did not start: \(slack.log)") }
        let slackURL = "http://127.0.0.1:\(slackPort)"

        let port = Int.random(in: 30_000..<60_000)
        let url = "tcp://127.0.0.1:\(port)"
        let coordinator = try ServerProcess(name: "coordinator", executable: coordinatorBin,
                                            arguments: ["serve", "--listen", url, "--db", dir + "/c.sqlite", "--no-wandb", "--no-http"],
                                            logPath: dir + "/coordinator.log",
                                            environment: ["SLACK_WEBHOOK_URL": slackURL + "/services/T0/B0/bench"])
        let worker = try ServerProcess(name: "worker", executable: workerBin,
                                       arguments: ["join", url, "--name", "bench", "--state-dir", dir + "/worker"], logPath: dir + "/worker.log")
        try await Task.sleep(for: .seconds(2))
        let admin = try NNGClusterClient(url: url, token: nil, timeoutMs: 30_000)
        let rate = 100.0
        let every = Int(spacing * rate)
        let steps = every * (trials + 1)
        let nanSteps = (1...trials).map { $0 * every }
        progress("alert-latency: \(trials) NaNs, one every \(spacing) s (\(steps) steps at \(Int(rate)) steps/s)")
        let reply = try await admin.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [
            "steps": .number(Double(steps)), "keys": .number(2), "rate": .number(rate),
            "nan_at": .string(nanSteps.map(String.init).joined(separator: ",")),
        ]))
        let run = reply.runId ?? "?"
        let deadline = Date().addingTimeInterval(Double(steps) / rate + 60)
        var done = false
        while !done && Date() < deadline {
            try await Task.sleep(for: .seconds(1))
            done = (try await admin.alerts(limit: 1_000)).contains { $0.rule == "run_completed" && $0.runId == run && $0.notifications > 0 }
        }
        // When each NaN was produced: its point's wall time, as the trainer stamped it.
        let series = try await admin.metrics(run: run, key: "train/text_loss", fromStep: nil, toStep: nil).series ?? []
        var producedAt: [Int64: Double] = [:]
        for p in series where p.value == nil && p.text == "NaN" { producedAt[p.step] = p.wallTime }
        // When Slack received the alert for it.
        let client = HTTPClient(configuration: .init(threads: 1))
        let state = try await client.send(HTTPRequest(method: .get, url: slackURL + "/_state"))
        guard case .object(let o) = try JSONDecoder().decode(JSONValue.self, from: Data(state.body)), case .array(let posts)? = o["posts"] else {
            throw BenchError("bad /_state from the Slack mock")
        }
        var latencies: [Double] = []
        for p in posts {
            guard case .object(let post) = p, let time = post["time"]?.doubleValue, let text = post["text"]?.stringValue else { continue }
            for line in text.split(separator: "\n") where line.hasPrefix("[CRITICAL] non_finite") {
                guard let m = line.firstMatch(of: /NaN at step (\d+)/), let step = Int64(m.1), let t0 = producedAt[step] else { continue }
                latencies.append(time - t0)
            }
        }
        _ = await worker.stop()
        _ = await coordinator.stop()
        _ = await slack.stop()
        guard !latencies.isEmpty else { throw BenchError("no alert reached Slack; coordinator log:\n\(coordinator.log.suffix(2_000))") }
        latencies.sort()
        func pct(_ q: Double) -> Double { latencies[min(latencies.count - 1, Int(Double(latencies.count) * q))] }
        print("\n### Alert latency: NaN produced by the runner → Slack webhook POST received (target p99 < 1 s)\n")
        print("| trials | alerts received | p50 ms | p90 ms | p99 ms | max ms |")
        print("|---|---|---|---|---|---|")
        print(String(format: "| %d | %d | %.0f | %.0f | %.0f | %.0f |", trials, latencies.count, pct(0.5) * 1000, pct(0.9) * 1000, pct(0.99) * 1000, latencies.last! * 1000))
        print("\nDefault settings: spool flush 50 ms, group_wait 300 ms, Slack ≤ 1 message/s.")
        // The guide's monitor reads TensorBoard once a minute: a NaN written at a uniformly random
        // moment waits U(0, 60 s) for the next poll (before TensorBoard's own flush delay and the
        // monitor's check), so its p50 is 30 s and its p99 59.4 s at the very best.
        let guideP50 = 30.0, guideP99 = 59.4
        print(String(format: "Versus the guide's 60 s polling monitor (its best case, computed: p50 %.1f s, p99 %.1f s): p50 %.0f× and p99 %.0f× sooner.",
                     guideP50, guideP99, guideP50 / pct(0.5), guideP99 / pct(0.99)))
    }
}
