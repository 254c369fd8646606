import ArgumentParser
import ClusterAdmin
import CurlHTTP
import Foundation
import Shared

/// Issue 16: what a week-scale run costs the dashboard, the series API and `/metrics`.
struct StoreScaleBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "store-scale",
        abstract: "Run page, 500-point series and /metrics times over a store holding one run of N points (targets at 10 M: < 150 ms, < 20 ms, < 20 ms).",
        discussion: """
            For each point count N: starts a fresh coordinator (W&B disabled, HTTP on loopback), \
            submits one training job through the admin protocol (its shard stays queued: no worker \
            polls), and fills its run with N points through the real ingest path: one simulated \
            worker sends `metrics` requests of --points-per-request points (one spool entry per step \
            of --keys keys named like the trainer's), heartbeating between them. Then it times, \
            --repeat times each over HTTP (libcurl, a new request each time): the run page \
            (/runs/ID), one series cut to 500 points (/api/v1/runs/ID/metrics?key=train/mel_loss&points=500) \
            and /metrics, after --settle-seconds. Reports the median, min and max of each, and the fill rate.
            """)

    @Option(help: "tts-coordinator binary.") var coordinatorBin: String
    @Option(help: "Point counts, comma-separated.") var points = "2000000,10000000"
    @Option(help: "Metrics (keys) per step.") var keys = 8
    @Option(help: "Points per metrics request.") var pointsPerRequest = 10_000
    @Option(help: "Timed requests of each kind.") var `repeat` = 7
    @Option(help: "A label for the table (e.g. the commit).") var label = ""
    @Option(help: "Seconds to wait after the fill before timing (background work settles).") var settleSeconds = 5.0

    static let trainerKeys = ["train/text_loss", "train/mel_loss", "train/mel_top1", "train/lr", "train/grad_norm",
                              "train/steps_per_min", "train/samples_per_sec", "train/gpu_memory_allocated_gb"]

    func execute() async throws {
        var rows: [[String]] = []
        for n in points.split(separator: ",").compactMap({ Int($0) }) {
            let r = try await measure(points: n)
            func fmt(_ s: [Double]) -> String {
                let sorted = s.sorted()
                return String(format: "%.1f (%.1f–%.1f)", sorted[sorted.count / 2] * 1000, sorted.first! * 1000, sorted.last! * 1000)
            }
            rows.append([label.isEmpty ? "–" : label, "\(n)", "\(pointsPerRequest)", String(format: "%.0f", r.fillRate), fmt(r.page), fmt(r.series), fmt(r.metrics)])
        }
        print("\n### Store at week scale: one run of N points (ms: median (min–max) of \(`repeat`) requests)\n")
        print("| build | points | points per request | fill points/s | run page ms | 500-point series ms | /metrics ms |")
        print("|---|---|---|---|---|---|---|")
        for row in rows { print("| " + row.joined(separator: " | ") + " |") }
    }

    struct Result {
        var fillRate: Double
        var page: [Double]
        var series: [Double]
        var metrics: [Double]
    }

    func measure(points total: Int) async throws -> Result {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-store-\(getpid())-\(total)").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let port = Int.random(in: 30_000..<45_000), httpPort = Int.random(in: 45_000..<60_000)
        let url = "tcp://127.0.0.1:\(port)"
        let server = try ServerProcess(name: "coordinator", executable: coordinatorBin,
                                       arguments: ["serve", "--listen", url, "--db", dir + "/bench.sqlite", "--no-wandb",
                                                   "--http", "127.0.0.1:\(httpPort)", "--log-level", "warning"],
                                       logPath: dir + "/coordinator.log")
        try await Task.sleep(for: .seconds(1))
        let admin = try NNGClusterClient(url: url, token: nil, timeoutMs: 60_000)
        let spec = #"{"name": "week", "project": "bench", "command": ["/bin/false"], "max_steps": \#(total / keys)}"#
        let run = try await admin.submit(SubmitRequest(spec: spec, source: "store-scale")).runs[0].id

        progress("store-scale: filling run \(run) with \(total) points")
        let client = try NNGRequester(url: url)
        defer { client.close() }
        let workerId = "store-scale"
        let reg = RegisterRequest(name: workerId, host: "bench", device: DeviceInfo(kind: .cpu, index: 0, name: "bench", memoryBytes: 1 << 30),
                                  capabilities: [], version: "bench", pid: Int(getpid()), proof: .none)
        let regReply = try Envelope.decode(try await client.request(Envelope(.register, reg, workerId: workerId).encoded(), timeoutMs: 10_000))
        let session = try regReply.decodeBody(RegisterReply.self).session
        var seq: UInt64 = 0, envSeq: UInt64 = 0, step: Int64 = 0, sent = 0
        var lastBeat = ContinuousClock.now
        let started = ContinuousClock.now
        while sent < total {
            var entries: [SpoolEntry] = []
            for _ in 0..<max(1, pointsPerRequest / keys) where sent < total {
                seq += 1
                step += 1
                let s = Double(step)
                let wall = 1.7e9 + s * 0.5
                let values = [0.9 + 1.6 * exp(-s / 50_000) + 0.01 * sin(s), 3.5 + 2.4 * exp(-s / 80_000) + 0.02 * cos(s),
                              0.05 + 0.12 * (1 - exp(-s / 60_000)), 2e-5 * min(1, s / 30_000), 1 + 0.5 * sin(s / 7),
                              120 + sin(s), 32 + cos(s), 21.5]
                entries.append(SpoolEntry(sequence: seq, points: (0..<keys).map {
                    MetricPoint(runId: run, step: step, key: Self.trainerKeys[$0 % Self.trainerKeys.count] + ($0 >= Self.trainerKeys.count ? "_\($0)" : ""),
                                value: values[$0 % values.count], wallTime: wall)
                }))
                sent += keys
            }
            envSeq += 1
            let bytes = try await client.request(Envelope(.metrics, MetricsRequest(entries: entries), workerId: workerId, session: session, sequence: envSeq).encoded(), timeoutMs: 120_000)
            let reply = try Envelope.decode(bytes)
            guard reply.type == .metricsAck, try reply.decodeBody(Ack.self).highestSequence == seq else {
                throw BenchError("store-scale: a metrics request was not fully acknowledged")
            }
            if ContinuousClock.now - lastBeat > .seconds(2) {
                envSeq += 1
                _ = try await client.request(Envelope(.heartbeat, HeartbeatRequest(status: .idle), workerId: workerId, session: session, sequence: envSeq).encoded(), timeoutMs: 10_000)
                lastBeat = ContinuousClock.now
            }
        }
        let fill = ContinuousClock.now - started
        let fillSeconds = Double(fill.components.seconds) + Double(fill.components.attoseconds) / 1e18
        progress(String(format: "store-scale: %d points in %.1f s", total, fillSeconds))

        // Background work that follows ingest (series summaries) settles before the requests are timed.
        try await Task.sleep(for: .seconds(settleSeconds))
        let stored = try await admin.metrics(run: run, key: nil, fromStep: nil, toStep: nil).totalPoints
        guard stored == total else { throw BenchError("store-scale: \(total) points acknowledged but \(stored) stored") }

        let http = HTTPClient()
        defer { http.shutdown() }
        let base = "http://127.0.0.1:\(httpPort)"
        func time(_ path: String) async throws -> [Double] {
            var out: [Double] = []
            _ = try await http.send(HTTPRequest(method: .get, url: base + path)) // warm-up
            for _ in 0..<`repeat` {
                let t0 = ContinuousClock.now
                let response = try await http.send(HTTPRequest(method: .get, url: base + path))
                let d = ContinuousClock.now - t0
                guard response.isSuccess else { throw BenchError("store-scale: GET \(path) answered \(response.status): \(response.bodyText.prefix(200))") }
                out.append(Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18)
            }
            return out
        }
        let page = try await time("/runs/\(run)")
        let series = try await time("/api/v1/runs/\(run)/metrics?key=train/mel_loss&points=500")
        let metrics = try await time("/metrics")
        _ = await server.stop()
        return Result(fillRate: Double(total) / fillSeconds, page: page, series: series, metrics: metrics)
    }
}
