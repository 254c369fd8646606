import ArgumentParser
import Foundation
import Shared

/// `tts-bench`: benchmarks of the tts-cluster coordinator.
struct TTSBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tts-bench",
        abstract: "Benchmarks of the tts-cluster coordinator.",
        subcommands: [ControlPlane.self, Soak.self, Ingest.self, SpoolAppend.self, VersusSDK.self, RulesBench.self, AlertLatency.self, TorchLoopBench.self,
                      ScoringBench.self, ResampleBench.self, EvalThroughputBench.self, EvalStagesBench.self, StoreScaleBench.self])
}

/// The control-plane benchmark of issue 2: N simulated workers heartbeating at 1 Hz against one
/// coordinator, then back to back, and the same load against a raw NNG REQ/REP echo server.
struct ControlPlane: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "control-plane",
        abstract: "Heartbeat RTT, saturated throughput and liveness of the coordinator vs raw NNG.",
        discussion: """
            For each worker count N: start a fresh coordinator, register N simulated workers with the \
            real protocol, heartbeat at 1 Hz (staggered) for --rate-seconds recording every round trip, \
            then send heartbeats back to back on the same N contexts for --saturate-seconds, then ask \
            the coordinator (`tts-coordinator workers --json`) how many workers it holds as lost. \
            Then the same two phases with the same message bytes against nng-echo, a C REP echo server \
            over the same libnng. Every simulated worker is a REQ context on one socket, driven by an \
            aio callback state machine (no thread per worker).
            """)

    @Option(help: "The tts-coordinator executable.")
    var coordinatorBin: String

    @Option(help: "The nng-echo executable (the raw NNG baseline).")
    var echoBin: String

    @Option(help: "Comma-separated worker counts.", transform: ControlPlane.parseCounts)
    var workers: [Int] = [100, 1000]

    @Option(help: "Seconds of 1 Hz heartbeating per server (must exceed the 10 s loss timeout to test liveness).")
    var rateSeconds: Double = 20

    @Option(help: "Seconds of back-to-back heartbeats per server.")
    var saturateSeconds: Double = 10

    @Option(help: "Heartbeat period of the paced phase, in milliseconds.")
    var intervalMs: Int = 1000

    @Option(help: "Pacing of the 1 Hz phase: thread (one pacer thread for all workers) or sleep-aio (nng_sleep_aio per worker; busy-waits in nng 1.5.2, see BENCHMARKS.md).")
    var pacing: Pacing = .thread

    @Option(help: "TCP connections of the load generator's REQ socket (one dialer each); contexts share them.")
    var connections: Int = 1

    @Option(help: "Per-request timeout (send, and receive of the reply), in milliseconds.")
    var timeoutMs: Int = 5000

    @Option(help: "REP contexts of nng-echo (the coordinator starts with 64).")
    var echoContexts: Int = 64

    @Option(help: "Registrations in flight at once.")
    var registerConcurrency: Int = 16

    @Flag(help: "Pin the servers to CPU 0 (via taskset) and the load generator to the other CPUs, so that they do not compete for cores.")
    var pin = false

    @Flag(help: "Keep the temporary directory (databases and server logs).")
    var keepTemp = false

    static func parseCounts(_ s: String) throws -> [Int] {
        let counts = s.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !counts.isEmpty, counts.allSatisfy({ ($0 ?? 0) > 0 }) else {
            throw ValidationError("--workers takes positive counts separated by commas, e.g. 100,1000")
        }
        return counts.map { $0! }
    }

    func validate() throws {
        guard rateSeconds > 0, saturateSeconds > 0 else { throw ValidationError("phase durations must be positive") }
        guard intervalMs > 0, timeoutMs > 0, echoContexts > 0, registerConcurrency > 0, connections > 0 else {
            throw ValidationError("--interval-ms, --timeout-ms, --echo-contexts, --register-concurrency and --connections must be positive")
        }
        for (flag, path) in [("--coordinator-bin", coordinatorBin), ("--echo-bin", echoBin)]
        where !FileManager.default.isExecutableFile(atPath: path) {
            throw ValidationError("\(flag) \(path) is not an executable file (build it first)")
        }
    }

    func run() async throws { try await execute() }

    func execute() async throws {
        if pin {
            guard Machine.cpus >= 2, FileManager.default.isExecutableFile(atPath: Self.taskset) else {
                throw ValidationError("--pin needs at least 2 CPUs and \(Self.taskset)")
            }
        }
        let tmp = FileManager.default.temporaryDirectory
            .appendingPathComponent("tts-bench-\(getpid())-\(Int(Date().timeIntervalSince1970))").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        progress("temporary directory \(tmp)")
        if pin { try await pinSelf(toCPUs: Array(1..<Machine.cpus), taskset: Self.taskset, scratch: "\(tmp)/taskset") }
        var results: [RunResult] = []
        do {
            for n in workers {
                results.append(try await benchmark(workers: n, tmp: tmp))
            }
        } catch {
            progress("FAILED: \(error)\n(server logs kept in \(tmp))")
            throw ExitCode.failure
        }
        print(Report(options: self, results: results).markdown())
        if keepTemp {
            progress("kept \(tmp)")
        } else {
            try? FileManager.default.removeItem(atPath: tmp)
        }
    }

    static let taskset = "/usr/bin/taskset"

    /// The executable and arguments that start `executable`, pinned to CPU 0 with --pin.
    private func launch(_ executable: String, _ arguments: [String]) -> (String, [String]) {
        pin ? (Self.taskset, ["-c", "0", executable] + arguments) : (executable, arguments)
    }

    // MARK: one worker count

    private func benchmark(workers n: Int, tmp: String) async throws -> RunResult {
        var result = RunResult(workers: n)
        let warmup = min(1.0, saturateSeconds / 5)

        // Coordinator.
        let port = try freeLoopbackPort()
        let url = "tcp://127.0.0.1:\(port)"
        let dir = "\(tmp)/n\(n)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        progress("N=\(n): starting the coordinator on \(url)")
        let (cExe, cArgs) = launch(coordinatorBin, ["serve", "--listen", url, "--db", "\(dir)/bench.sqlite", "--no-http"])
        let coordinator = try ServerProcess(name: "tts-coordinator", executable: cExe, arguments: cArgs, logPath: "\(dir)/coordinator.log")
        var stopped = false
        defer { if !stopped { kill(coordinator.pid, SIGKILL) } }
        try await coordinator.waitListening(marker: "listening on", port: port, timeoutSeconds: 30)

        progress("N=\(n): registering \(n) workers")
        let regStart = Date()
        let sessions = try await registerAll(n, url: url)
        result.registerSeconds = Date().timeIntervalSince(regStart)
        let requests = (0..<n).map { BenchProtocol.heartbeat($0, session: sessions[$0]) }
        result.requestBytes = requests.map(\.count)

        do {
            let gen = try LoadGenerator(url: url, requests: requests, expectedReplyType: MessageType.heartbeatReply.rawValue, timeoutMs: Int32(timeoutMs), connections: connections)
            defer { gen.close() }
            try await gen.waitConnected(timeoutSeconds: 10)
            result.coordinator = try await runTarget(gen, server: coordinator, label: "N=\(n) coordinator", warmup: warmup)
            result.coordinatorReplyBytes = gen.workers.first?.lastReplyBytes ?? 0
        }

        progress("N=\(n): asking the coordinator for lost workers")
        result.liveness = await queryLiveness(url: url, dir: dir)
        result.coordinatorStop = await coordinator.stop()
        stopped = true
        result.coordinatorLog = LogSummary(coordinator.log)

        // Raw NNG baseline, same bytes, same contexts.
        let echoPort = try freeLoopbackPort()
        let echoURL = "tcp://127.0.0.1:\(echoPort)"
        progress("N=\(n): starting nng-echo on \(echoURL)")
        let (eExe, eArgs) = launch(echoBin, [echoURL, String(echoContexts)])
        let echo = try ServerProcess(name: "nng-echo", executable: eExe, arguments: eArgs, logPath: "\(dir)/echo.log")
        var echoStopped = false
        defer { if !echoStopped { kill(echo.pid, SIGKILL) } }
        try await echo.waitListening(marker: "listening", port: echoPort, timeoutSeconds: 10)
        do {
            let gen = try LoadGenerator(url: echoURL, requests: requests, expectedReplyType: MessageType.heartbeat.rawValue, timeoutMs: Int32(timeoutMs), connections: connections)
            defer { gen.close() }
            try await gen.waitConnected(timeoutSeconds: 10)
            result.raw = try await runTarget(gen, server: echo, label: "N=\(n) nng-echo", warmup: warmup)
        }
        await echo.stop()
        echoStopped = true
        return result
    }

    private func runTarget(_ gen: LoadGenerator, server: ServerProcess, label: String, warmup: Double) async throws -> TargetResult {
        var t = TargetResult()
        progress("\(label): \(gen.workers.count) workers at \(1000.0 / Double(intervalMs)) Hz for \(rateSeconds) s")
        var meter = CPUMeter(server: server)
        t.rate = try await gen.runPhase(intervalMs: intervalMs, pacing: pacing, seconds: rateSeconds, warmupSeconds: 0)
        t.cpuRate = meter.finish(server: server, generatorCPUSeconds: t.rate.generatorCPUSeconds)
        progress("\(label): \(t.rate.latencies.count) heartbeats, p50 \(fmtMs(percentile(t.rate.latencies, 0.50))), p99 \(fmtMs(percentile(t.rate.latencies, 0.99))), \(t.rate.errors) errors")

        progress("\(label): back to back for \(saturateSeconds) s")
        meter = CPUMeter(server: server)
        t.saturate = try await gen.runPhase(intervalMs: 0, pacing: pacing, seconds: saturateSeconds, warmupSeconds: warmup)
        t.cpuSaturate = meter.finish(server: server, generatorCPUSeconds: t.saturate.generatorCPUSeconds)
        progress("\(label): \(Int(t.saturate.throughput)) req/s, \(t.saturate.errors) errors; CPU server \(Int(t.cpuSaturate.server.map { $0 * 100 } ?? -1)) %, generator \(Int(t.cpuSaturate.generator * 100)) %, other processes \(Int(t.cpuSaturate.other.map { $0 * 100 } ?? -1)) %")
        t.connects = gen.connects
        t.disconnects = gen.disconnects
        return t
    }

    /// Registers workers 0..<n and returns their sessions.
    private func registerAll(_ n: Int, url: String) async throws -> [UInt64] {
        try await BenchProtocol.registerAll(n, url: url, timeoutMs: timeoutMs, concurrency: registerConcurrency).map(\.session)
    }

    /// `tts-coordinator workers --json --connect URL`, counting `"state": "lost"`.
    private func queryLiveness(url: String, dir: String) async -> Liveness {
        await BenchProtocol.queryLiveness(coordinatorBin: coordinatorBin, url: url, outputBase: "\(dir)/workers-query")
    }
}

extension Pacing: ExpressibleByArgument {}

func progress(_ s: String) {
    FileHandle.standardError.write(Data("[tts-bench] \(s)\n".utf8))
}

// main.swift is top-level code, where `await TTSBench.main()` resolves to the synchronous
// ParsableCommand entry point (which refuses async subcommands). Parse and dispatch here instead,
// calling the async body by a name that has no synchronous overload.
do {
    var command = try TTSBench.parseAsRoot()
    if let controlPlane = command as? ControlPlane {
        try await controlPlane.execute()
    } else if let soak = command as? Soak {
        try await soak.execute()
    } else if let ingest = command as? Ingest {
        try await ingest.execute()
    } else if let spool = command as? SpoolAppend {
        try await spool.execute()
    } else if let versus = command as? VersusSDK {
        try await versus.execute()
    } else if let latency = command as? AlertLatency {
        try await latency.run()
    } else if let evals = command as? EvalThroughputBench {
        try await evals.run()
    } else if let stages = command as? EvalStagesBench {
        try await stages.run()
    } else if let store = command as? StoreScaleBench {
        try await store.execute()
    } else {
        try command.run()
    }
} catch {
    TTSBench.exit(withError: error)
}
