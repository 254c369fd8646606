import ArgumentParser
import ClusterAdmin
import Foundation
import Shared
import Synchronization
import WandB
import Worker

/// Issue 3: coordinator ingest throughput with durable commits, from 1 and from 16 workers.
struct Ingest: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ingest",
        abstract: "Points per second stored (and acknowledged) by the coordinator, from K simulated workers.",
        discussion: """
            Starts a fresh coordinator (W&B disabled: this measures ingest), registers K workers with \
            the real protocol, each on its own connection, and has each send `metrics` requests of \
            spool entries (one entry per step of --keys points) back to back, one request in flight \
            per worker, for --seconds. Only acknowledged points count (the coordinator acknowledges \
            after its transaction commits with synchronous=FULL). At the end the stored count is read \
            back and must equal the acknowledged count.
            """)

    @Option(help: "tts-coordinator binary.") var coordinatorBin: String
    @Option(help: "Worker counts to measure, comma-separated.") var workers = "1,16"
    @Option(help: "Seconds per measurement.") var seconds = 10.0
    @Option(help: "Points per metrics request.") var pointsPerRequest = 10_000
    @Option(help: "Metrics (keys) per step.") var keys = 10

    func execute() async throws {
        var table: [[String]] = []
        for k in workers.split(separator: ",").compactMap({ Int($0) }) {
            let r = try await measure(workers: k)
            table.append(["\(k)", "\(r.acked)", String(format: "%.1f", r.seconds), String(format: "%.0f", Double(r.acked) / r.seconds),
                          "\(r.stored)", r.acked == r.stored ? "yes" : "NO"])
        }
        print("\n### Ingest: points/s into the coordinator with durable commits (target ≥ 200,000)\n")
        print("| workers | points acknowledged | seconds | points/s | points stored | stored == acked |")
        print("|---|---|---|---|---|---|")
        for row in table { print("| " + row.joined(separator: " | ") + " |") }
        print("\n\(pointsPerRequest) points per request (\(pointsPerRequest / keys) steps × \(keys) keys), one request in flight per worker.")
    }

    func measure(workers k: Int) async throws -> (acked: Int, seconds: Double, stored: Int) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-ingest-\(getpid())-\(k)").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let port = Int.random(in: 30_000..<60_000)
        let url = "tcp://127.0.0.1:\(port)"
        let server = try ServerProcess(name: "coordinator", executable: coordinatorBin,
                                       arguments: ["serve", "--listen", url, "--db", dir + "/bench.sqlite", "--no-wandb", "--no-http", "--log-level", "warning"],
                                       logPath: dir + "/coordinator.log")
        try await Task.sleep(for: .seconds(1))
        progress("ingest: \(k) worker(s) for \(seconds) s")
        let acked = PointCounter()
        let deadline = ContinuousClock.now + .seconds(seconds)
        let started = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            let (keys, pointsPerRequest) = (keys, pointsPerRequest)
            for w in 0..<k {
                group.addTask {
                    let client = try NNGRequester(url: url)
                    defer { client.close() }
                    let workerId = "ingest-\(w)"
                    let reg = RegisterRequest(name: workerId, host: "bench", device: DeviceInfo(kind: .cpu, index: 0, name: "bench", memoryBytes: 1 << 30),
                                              capabilities: [], version: "bench", pid: Int(getpid()), proof: .none)
                    let regReply = try Envelope.decode(try await client.request(Envelope(.register, reg, workerId: workerId).encoded(), timeoutMs: 10_000))
                    let session = try regReply.decodeBody(RegisterReply.self).session
                    var seq: UInt64 = 0
                    var step: Int64 = 0
                    var envSeq: UInt64 = 0
                    let run = "ingest\(w)"
                    while ContinuousClock.now < deadline {
                        var entries: [SpoolEntry] = []
                        for _ in 0..<(pointsPerRequest / keys) {
                            seq += 1
                            entries.append(SpoolEntry(sequence: seq, points: (0..<keys).map {
                                MetricPoint(runId: run, step: step, key: "train/k\($0)", value: Double(step) * 0.001 + Double($0), wallTime: 1.7e9)
                            }))
                            step += 1
                        }
                        envSeq += 1
                        let bytes = try await client.request(Envelope(.metrics, MetricsRequest(entries: entries), workerId: workerId, session: session, sequence: envSeq).encoded(), timeoutMs: 60_000)
                        let reply = try Envelope.decode(bytes)
                        guard reply.type == .metricsAck, try reply.decodeBody(Ack.self).highestSequence == seq else {
                            throw BenchError("ingest: a metrics request was not fully acknowledged")
                        }
                        acked.add(entries.count * keys)
                    }
                }
            }
            try await group.waitForAll()
        }
        let elapsed = ContinuousClock.now - started
        let secs = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        var stored = 0
        let admin = try NNGClusterClient(url: url, token: nil, timeoutMs: 60_000)
        for w in 0..<k { stored += try await admin.metrics(run: "ingest\(w)", key: nil, fromStep: nil, toStep: nil).totalPoints }
        _ = await server.stop()
        try? FileManager.default.removeItem(atPath: dir)
        return (acked.value, secs, stored)
    }
}

/// Issue 3: what logging costs the training process: appending 10 scalars per step to the
/// worker's spool (memory; fsync happens on another thread every 50 ms).
struct SpoolAppend: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "spool-append",
        abstract: "Per-step cost of logging --keys scalars through the worker's spool (target < 20 µs).")

    @Option(help: "Steps to log.") var steps = 1_000_000
    @Option(help: "Scalars per step.") var keys = 10

    func execute() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-spool-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let spool = try MetricSpool(directory: dir)
        // The flusher runs as in the worker (every 50 ms, fsync), and acknowledges what it wrote so
        // the spool does not grow without bound.
        let stop = Atomic<Bool>(false)
        let flusher = Thread {
            while !stop.load(ordering: .acquiring) {
                Thread.sleep(forTimeInterval: 0.05)
                if let durable = try? spool.flush() { try? spool.acknowledge(upTo: durable) }
            }
        }
        flusher.start()
        let names = (0..<keys).map { "train/metric_\($0)" }
        var samples: [Double] = []
        samples.reserveCapacity(steps / 100 + 1)
        let clock = ContinuousClock()
        let total = clock.measure {
            for step in 0..<steps {
                let t0 = clock.now
                let now = 1.7e9 + Double(step)
                var points: [MetricPoint] = []
                points.reserveCapacity(keys)
                for (i, k) in names.enumerated() {
                    points.append(MetricPoint(runId: "bench", step: Int64(step), key: k, value: Double(i) + Double(step) * 1e-6, wallTime: now))
                }
                spool.append(points: points)
                if step % 100 == 0 {
                    let d = clock.now - t0
                    samples.append(Double(d.components.attoseconds) / 1e12 + Double(d.components.seconds) * 1e6)
                }
            }
        }
        stop.store(true, ordering: .releasing)
        while flusher.isExecuting { try await Task.sleep(for: .milliseconds(10)) }
        let secs = Double(total.components.seconds) + Double(total.components.attoseconds) / 1e18
        samples.sort()
        let mean = secs / Double(steps) * 1e6
        print("\n### Per-step logging cost in the training process (target < 20 µs per step)\n")
        print("| steps | scalars/step | mean µs/step | p50 µs | p99 µs | p99.9 µs |")
        print("|---|---|---|---|---|---|")
        func pct(_ p: Double) -> String { String(format: "%.2f", samples[min(samples.count - 1, Int(Double(samples.count) * p))]) }
        print("| \(steps) | \(keys) | \(String(format: "%.2f", mean)) | \(pct(0.5)) | \(pct(0.99)) | \(pct(0.999)) |")
        print("\nIncludes building the 10 points; fsync runs on another thread every 50 ms (a sample every 100 steps for percentiles).")
    }
}

/// Issue 3: our whole path (worker spool → coordinator → `.wandb` file) against the Python SDK in
/// offline mode logging the same stream, in one run.
struct VersusSDK: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "versus-sdk",
        abstract: "10 scalars × N steps: tts-cluster end to end vs wandb.log offline (target ≥ 10× faster).")

    @Option(help: "tts-coordinator binary.") var coordinatorBin: String
    @Option(help: "tts-worker binary.") var workerBin: String
    @Option(help: "Python with the wandb package (e.g. from Tests/Fixtures/wandb/oracle_env.sh).") var python: String
    @Option(help: "Steps.") var steps = 100_000
    @Option(help: "Scalars per step.") var keys = 10
    @Option(help: "Skip the SDK run and use this many seconds for it (profiling our side only).") var sdkSeconds: Double?

    func execute() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-vs-\(getpid())").path
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // Python SDK, offline.
        let pySeconds = try sdkSeconds ?? runSDK(dir: dir)

        // Ours: a coordinator writing offline, one worker, one synthetic run of the same stream.
        let ours = try await runOurs(dir: dir)
        print("\n### \(keys) scalars × \(steps) steps, logged and written to a W&B offline run (target ≥ 10×)\n")
        print("| path | seconds | steps/s |")
        print("|---|---|---|")
        print("| Python SDK `wandb.log` (offline) | \(String(format: "%.2f", pySeconds)) | \(String(format: "%.0f", Double(steps) / pySeconds)) |")
        print("| tts-cluster: worker spool → coordinator store → `.wandb` | \(String(format: "%.2f", ours)) | \(String(format: "%.0f", Double(steps) / ours)) |")
        print("\n**ratio: \(String(format: "%.1f", pySeconds / ours))× faster** (ours from enqueue to the coordinator's \"run complete\"; the SDK from `wandb.init` to `finish()` returning).")
    }

    private func runSDK(dir: String) throws -> Double {
        progress("versus-sdk: wandb.log × \(steps) (offline)")
        let script = """
            import os, time, wandb
            os.environ["WANDB_MODE"] = "offline"; os.environ["WANDB_SILENT"] = "true"
            t = time.time()
            run = wandb.init(project="bench", dir=\(WandbValue.quote(dir + "/py")))
            for step in range(\(steps)):
                run.log({f"train/metric_{k}": k + step * 1e-6 for k in range(\(keys))}, step=step)
            run.finish()
            print(time.time() - t)
            """
        try FileManager.default.createDirectory(atPath: dir + "/py", withIntermediateDirectories: true)
        let py = Process()
        py.executableURL = URL(fileURLWithPath: python)
        py.arguments = ["-c", script]
        let out = Pipe()
        py.standardOutput = out
        py.standardError = FileHandle.nullDevice
        py.environment = ProcessInfo.processInfo.environment.merging(["HOME": dir, "WANDB_DIR": dir + "/py"]) { $1 }
        try py.run()
        let pyOut = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        py.waitUntilExit()
        guard py.terminationStatus == 0, let pySeconds = Double(pyOut.split(separator: "\n").last ?? "") else {
            throw BenchError("the Python SDK run failed (status \(py.terminationStatus)): \(pyOut)")
        }
        return pySeconds
    }

    private func runOurs(dir: String) async throws -> Double {
        progress("versus-sdk: tts-cluster worker → coordinator → .wandb × \(steps)")
        let port = Int.random(in: 30_000..<60_000)
        let url = "tcp://127.0.0.1:\(port)"
        try FileManager.default.createDirectory(atPath: dir + "/ours", withIntermediateDirectories: true)
        let coordinator = try ServerProcess(name: "coordinator", executable: coordinatorBin,
                                            arguments: ["serve", "--listen", url, "--db", dir + "/c.sqlite", "--wandb-mode", "offline", "--wandb-dir", dir + "/ours", "--no-http"],
                                            logPath: dir + "/coordinator.log")
        let worker = try ServerProcess(name: "worker", executable: workerBin,
                                       arguments: ["join", url, "--name", "bench", "--state-dir", dir + "/worker"], logPath: dir + "/worker.log")
        try await Task.sleep(for: .seconds(2))
        let admin = try NNGClusterClient(url: url, token: nil, timeoutMs: 30_000)
        let started = ContinuousClock.now
        let reply = try await admin.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: ["steps": .number(Double(steps)), "keys": .number(Double(keys))]))
        let run = reply.runId ?? "?"
        var done = false
        while !done && ContinuousClock.now - started < .seconds(600) {
            try await Task.sleep(for: .milliseconds(20))
            let log = (try? String(contentsOfFile: dir + "/coordinator.log", encoding: .utf8)) ?? ""
            done = log.contains("W&B: run \(run) complete")
        }
        let elapsed = ContinuousClock.now - started
        let ours = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        _ = await worker.stop()
        _ = await coordinator.stop()
        guard done else { throw BenchError("our run did not complete within 600 s") }
        return ours
    }
}

/// Points acknowledged so far, shared by the worker tasks.
final class PointCounter: Sendable {
    private let count = Mutex(0)
    func add(_ n: Int) { count.withLock { $0 += n } }
    var value: Int { count.withLock { $0 } }
}
