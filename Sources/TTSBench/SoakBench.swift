import ArgumentParser
import Foundation
import Shared

#if canImport(Glibc)
import Glibc
#endif

/// The soak of issue 9: many simulated workers heartbeating against one coordinator for a long
/// time, watching the coordinator's memory, the heartbeat latency over time and whether any
/// worker that kept heartbeating was declared lost. A command to run by hand (it takes 30
/// minutes by default), not part of the test suite.
struct Soak: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "soak",
        abstract: "N simulated workers heartbeating against one coordinator for many minutes: RSS growth, p99 over time, wrongly-lost workers.",
        discussion: """
            Starts a fresh coordinator (temporary directory, loopback, default settings, including the \
            10 s loss timeout), registers --workers simulated workers with the real protocol and \
            heartbeats each at the interval the coordinator announces at registration (what real \
            workers use; 2 s by default), staggered, for --minutes. Every simulated worker is a REQ \
            context on one socket, paced by one thread (as in `control-plane`). Every --sample-seconds \
            it records the coordinator's resident memory (VmRSS) and CPU time, the heartbeat round \
            trips of that window (count, p50, p99, max), failed or timed-out heartbeats and skipped \
            ticks, and asks the coordinator (`tts-coordinator workers --json`) which workers it holds \
            as lost; it also watches the coordinator's log for loss declarations. Every simulated \
            worker keeps heartbeating, so any loss is a wrong one: the command exits non-zero if a \
            worker was ever declared lost, if the coordinator died, or if the final check could not \
            be made. Prints a table to stdout and writes flat figures to FIGURES_DIR/soak.json and \
            the per-window series to FIGURES_DIR/series/soak-series.json.
            """)

    @Option(help: "The tts-coordinator executable.")
    var coordinatorBin: String

    @Option(help: "Simulated workers.")
    var workers = 1000

    @Option(help: "Minutes of heartbeating (fractions allowed).")
    var minutes: Double = 30

    @Option(help: "Seconds per sample window (default: 60, or an eighth of the run, at least 5 s, for runs under 10 minutes).")
    var sampleSeconds: Double?

    @Option(help: "Heartbeat period of each simulated worker, in milliseconds (default: the interval the coordinator announces at registration, which real workers use).")
    var intervalMs: Int?

    @Option(help: "Per-request timeout (send, and receive of the reply), in milliseconds (default: as the real worker, max(1000, interval)).")
    var timeoutMs: Int?

    @Option(help: "Registrations in flight at once.")
    var registerConcurrency = 16

    @Flag(inversion: .prefixedNo, help: "Ask the coordinator for its lost workers at every sample (always at the end).")
    var lostChecks = true

    @Option(help: "Directory for soak.json and series/soak-series.json (created if missing).")
    var figuresDir = ".build/reliability"

    @Flag(help: "Keep the temporary directory (database and coordinator log).")
    var keepTemp = false

    func validate() throws {
        guard workers > 0, registerConcurrency > 0 else { throw ValidationError("--workers and --register-concurrency must be positive") }
        guard minutes > 0, minutes <= 24 * 60 else { throw ValidationError("--minutes must be in (0, 1440]") }
        if let s = sampleSeconds, !(s >= 1 && s <= minutes * 60) {
            throw ValidationError("--sample-seconds must be at least 1 and at most the run (\(minutes * 60) s)")
        }
        if let i = intervalMs, i <= 0 { throw ValidationError("--interval-ms must be positive") }
        if let t = timeoutMs, t <= 0 { throw ValidationError("--timeout-ms must be positive") }
        guard FileManager.default.isExecutableFile(atPath: coordinatorBin) else {
            throw ValidationError("--coordinator-bin \(coordinatorBin) is not an executable file (build it first)")
        }
    }

    func run() async throws { try await execute() }

    /// Seconds of heartbeating.
    var totalSeconds: Double { minutes * 60 }

    /// The sample window actually used.
    var windowSeconds: Double {
        sampleSeconds ?? (totalSeconds >= 600 ? 60 : max(5, (totalSeconds / 8).rounded()))
    }

    func execute() async throws {
        let tmp = FileManager.default.temporaryDirectory
            .appendingPathComponent("tts-soak-\(getpid())-\(Int(Date().timeIntervalSince1970))").path
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        progress("temporary directory \(tmp)")
        let outcome: SoakOutcome
        do {
            outcome = try await soak(tmp: tmp)
        } catch {
            progress("FAILED: \(error)\n(coordinator log kept in \(tmp))")
            throw ExitCode.failure
        }
        print(outcome.markdown())
        do {
            let (flat, series) = try outcome.writeFigures(directory: figuresDir)
            progress("figures written to \(flat) and \(series)")
        } catch {
            progress("could not write the figures to \(figuresDir): \(error)")
        }
        if keepTemp || !outcome.passed {
            progress("kept \(tmp)")
        } else {
            try? FileManager.default.removeItem(atPath: tmp)
        }
        guard outcome.passed else {
            progress("SOAK FAILED: \(outcome.verdict)")
            throw ExitCode.failure
        }
        progress("soak passed: \(outcome.verdict)")
    }

    private func soak(tmp: String) async throws -> SoakOutcome {
        let port = try freeLoopbackPort()
        let url = "tcp://127.0.0.1:\(port)"
        progress("starting the coordinator on \(url)")
        let logPath = "\(tmp)/coordinator.log"
        let coordinator = try ServerProcess(
            name: "tts-coordinator", executable: coordinatorBin,
            arguments: ["serve", "--listen", url, "--db", "\(tmp)/soak.sqlite", "--no-http"], logPath: logPath)
        var stopped = false
        defer { if !stopped { kill(coordinator.pid, SIGKILL) } }
        try await coordinator.waitListening(marker: "listening on", port: port, timeoutSeconds: 30)
        let pid = coordinator.pid

        progress("registering \(workers) workers")
        let regStart = monotonicNanos()
        let replies = try await BenchProtocol.registerAll(workers, url: url, timeoutMs: 10_000, concurrency: registerConcurrency)
        let registerSeconds = Double(monotonicNanos() - regStart) / 1e9
        let announcedMs = Int(replies.first?.heartbeatIntervalMs ?? 0)
        let lostAfterMs = Int(replies.first?.lostAfterMs ?? 0)
        let interval = intervalMs ?? announcedMs
        guard interval > 0 else { throw BenchError("the coordinator announced no heartbeat interval; pass --interval-ms") }
        let timeout = timeoutMs ?? max(1000, interval)
        progress("registered in \(String(format: "%.1f", registerSeconds)) s; the coordinator announces a heartbeat every \(announcedMs) ms and a loss after \(lostAfterMs) ms")

        var outcome = SoakOutcome(
            workers: workers, minutes: minutes, windowSeconds: windowSeconds, intervalMs: interval, announcedIntervalMs: announcedMs,
            timeoutMs: timeout, lostAfterMs: lostAfterMs, registerSeconds: registerSeconds)
        outcome.memoryStart = ProcessMemory(pid: pid)

        let requests = (0..<workers).map { BenchProtocol.heartbeat($0, session: replies[$0].session) }
        let gen = try LoadGenerator(
            url: url, requests: requests, expectedReplyType: MessageType.heartbeatReply.rawValue, timeoutMs: Int32(timeout))
        defer { gen.close() }
        try await gen.waitConnected(timeoutSeconds: 10)

        let windowCount = max(1, Int((totalSeconds / windowSeconds - 1e-9).rounded(.up)))
        outcome.startedAt = Date()
        outcome.coordinatorCPUAtStart = processCPUSeconds(pid: pid)
        let origin = monotonicNanos()
        let recorder = WindowRecorder(originNs: origin, windowNs: UInt64(windowSeconds * 1e9), windowCount: windowCount)
        let stop = StopSignal()
        let phaseDone = StopSignal()
        let sampler = SoakSampler(
            pid: pid, coordinatorBin: coordinatorBin, url: url, logPath: logPath, scratch: "\(tmp)/workers-query",
            recorder: recorder, stop: stop, phaseDone: phaseDone, originNs: origin, totalNs: UInt64(totalSeconds * 1e9),
            lostChecks: lostChecks, graceNs: UInt64(timeout) * 1_000_000 + 10_000_000_000)
        progress("\(workers) workers heartbeating every \(interval) ms for \(minutes) min; a sample every \(windowSeconds) s (\(windowCount) windows)")

        let (phase, samples) = try await withThrowingTaskGroup(of: [SoakSample].self) { group in
            group.addTask { await sampler.run() }
            let phase: PhaseResult
            do {
                phase = try await gen.runPhase(
                    intervalMs: interval, pacing: .thread, seconds: totalSeconds, warmupSeconds: 0, recorder: recorder, stop: stop)
            } catch {
                stop.set()
                phaseDone.set()
                group.cancelAll()
                throw error
            }
            phaseDone.set()
            var samples: [SoakSample] = []
            while let s = try await group.next() { samples = s }
            return (phase, samples)
        }
        outcome.phase = phase
        outcome.samples = samples
        outcome.aborted = stop.isSet
        outcome.heartbeatSeconds = Double(monotonicNanos() - origin) / 1e9

        outcome.memoryEnd = ProcessMemory(pid: pid)
        outcome.coordinatorCPUSeconds = processCPUSeconds(pid: pid)
        outcome.coordinatorStop = await coordinator.stop()
        stopped = true
        outcome.log = LogSummary(coordinator.log)
        return outcome
    }
}

/// One sample window of the soak.
struct SoakSample: Sendable {
    var index: Int
    /// Window bounds, seconds since heartbeating began.
    var startSeconds: Double
    var endSeconds: Double
    var heartbeats: Int
    var errors: Int
    var errorKinds: [String: Int]
    var lateTicks: Int
    var p50: UInt64?
    var p99: UInt64?
    var max: UInt64?
    /// The coordinator's memory at the end of the window (nil once it is gone).
    var memory: ProcessMemory?
    /// The coordinator's CPU use over the window, % of one core.
    var coordinatorCPUPercent: Double?
    /// The whole machine's CPU use over the window, % of all cores, from /proc/stat. Tick-sampled:
    /// it shows CPU-bound work (builds, tests) but misses short bursts such as the heartbeats'
    /// own processing (on this VM, several-fold).
    var machineCPUPercent: Double?
    /// 1-minute load average at the end of the window.
    var loadAverage: Double?
    /// What `tts-coordinator workers --json` said at the end of the window (nil when not asked).
    var liveness: Liveness?
    /// Loss declarations in the coordinator's log so far, and the distinct workers they named.
    var lostLinesSoFar: Int
    var lostWorkersSoFar: Set<String>
    var revivedLinesSoFar: Int
    var coordinatorAlive: Bool
}

/// Samples the coordinator at the end of every window, while the load generator runs on the
/// caller's task. Value-typed and Sendable: it only holds the pid, paths and Sendable handles.
private struct SoakSampler: Sendable {
    let pid: Int32
    let coordinatorBin: String
    let url: String
    let logPath: String
    let scratch: String
    let recorder: WindowRecorder
    let stop: StopSignal
    let phaseDone: StopSignal
    let originNs: UInt64
    let totalNs: UInt64
    let lostChecks: Bool
    /// How long past the end the last sample waits for the generator to finish.
    let graceNs: UInt64

    func run() async -> [SoakSample] {
        var samples: [SoakSample] = []
        var cpuPrev = processCPUSeconds(pid: pid)
        var machinePrev = machineBusyCPUSeconds()
        var tPrev = originNs
        let windowNs = recorder.windowNs
        for k in 0..<recorder.windowCount {
            let isLast = k == recorder.windowCount - 1
            let end = originNs + Swift.min(UInt64(k + 1) * windowNs, totalNs)
            // A window is over at its end (plus a moment for callbacks running late); the last one
            // when the generator has stopped and every request in flight has ended.
            var alive = true
            while true {
                if Task.isCancelled { return samples }
                if stop.isSet { break }
                let now = monotonicNanos()
                if isLast ? (phaseDone.isSet || now > end + graceNs) : (now >= end + 300_000_000) { break }
                guard ProcessMemory(pid: pid) != nil else { // gone, or a zombie
                    alive = false
                    break
                }
                let wait = now < end ? Swift.min(1_000_000_000, end + 300_000_000 - now) : 100_000_000
                try? await Task.sleep(nanoseconds: wait)
            }
            if !alive {
                progress("the coordinator (pid \(pid)) is gone: stopping the soak")
                stop.set()
            }
            let stopped = stop.isSet
            if stopped {
                // Let the generator stop, so that the requests in flight have all ended.
                let deadline = monotonicNanos() + graceNs
                while !phaseDone.isSet && monotonicNanos() < deadline { try? await Task.sleep(nanoseconds: 100_000_000) }
            }
            // Stopped early: this window and everything recorded after it.
            var tally = WindowRecorder.Tally()
            for j in k..<(stopped ? recorder.windowCount : k + 1) {
                let t = recorder.take(j)
                tally.latencies += t.latencies
                tally.errors += t.errors
                tally.lateTicks += t.lateTicks
                for (e, c) in t.errorKinds { tally.errorKinds[e, default: 0] += c }
            }
            let tNow = monotonicNanos()
            let wall = Double(tNow - tPrev) / 1e9
            let cpu = processCPUSeconds(pid: pid)
            let machine = machineBusyCPUSeconds()
            let memory = ProcessMemory(pid: pid)
            let log = LogSummary((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
            var liveness: Liveness?
            if (lostChecks || isLast || stopped) && memory != nil {
                liveness = await BenchProtocol.queryLiveness(coordinatorBin: coordinatorBin, url: url, outputBase: "\(scratch)-\(k)")
            }
            let stats = summary(tally.latencies)
            let sample = SoakSample(
                index: k, startSeconds: Double(tPrev - originNs) / 1e9,
                endSeconds: Double(Swift.min(tNow, originNs + totalNs) - originNs) / 1e9,
                heartbeats: tally.latencies.count, errors: tally.errors, errorKinds: tally.errorKinds,
                lateTicks: tally.lateTicks, p50: stats?.p50, p99: stats?.p99, max: stats?.max, memory: memory,
                coordinatorCPUPercent: both(cpuPrev, cpu).map { ($1 - $0) / Swift.max(wall, 1e-9) * 100 },
                machineCPUPercent: both(machinePrev, machine).map { ($1 - $0) / Swift.max(wall, 1e-9) / Double(Machine.cpus) * 100 },
                loadAverage: loadAverage1(), liveness: liveness, lostLinesSoFar: log.lostLines,
                lostWorkersSoFar: log.lostWorkers, revivedLinesSoFar: log.revivedLines, coordinatorAlive: memory != nil)
            samples.append(sample)
            progress(sample.progressLine)
            cpuPrev = cpu
            machinePrev = machine
            tPrev = tNow
            if stopped { break }
        }
        return samples
    }
}

/// Both values, when both are there.
private func both<T>(_ a: T?, _ b: T?) -> (T, T)? {
    guard let a, let b else { return nil }
    return (a, b)
}

/// The 1-minute load average (/proc/loadavg).
private func loadAverage1() -> Double? {
    guard let s = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8) else { return nil }
    return s.split(separator: " ").first.flatMap { Double($0) }
}

private func mib(_ bytes: UInt64?) -> Double? { bytes.map { Double($0) / 1_048_576 } }

private func ms(_ ns: UInt64?) -> Double? { ns.map { Double($0) / 1e6 } }

private func fmt(_ x: Double?, _ digits: Int = 1) -> String {
    guard let x else { return "–" }
    return String(format: "%.\(digits)f", x)
}

/// A latency in ms with 2 decimals below 10 ms, 1 above.
private func fmtLatency(_ ns: UInt64?) -> String {
    guard let v = ms(ns) else { return "–" }
    return v < 10 ? String(format: "%.2f", v) : String(format: "%.1f", v)
}

/// m:ss
private func clock(_ seconds: Double) -> String {
    let s = Int(seconds.rounded())
    return String(format: "%d:%02d", s / 60, s % 60)
}

extension SoakSample {
    var lostNow: Int? { liveness?.lost }

    var progressLine: String {
        "t=\(clock(endSeconds)) heartbeats \(heartbeats), errors \(errors), late \(lateTicks); p50 \(fmtMs(p50)), p99 \(fmtMs(p99)), max \(fmtMs(max)); "
            + "RSS \(fmt(mib(memory?.residentBytes))) MiB; CPU coordinator \(fmt(coordinatorCPUPercent, 0)) %, machine \(fmt(machineCPUPercent, 0)) %; "
            + "lost now \(lostNow.map(String.init) ?? (liveness?.note ?? "not asked")), declared lost so far \(lostWorkersSoFar.count)"
    }
}

/// Everything the soak measured, with the report and the figures files.
struct SoakOutcome {
    let workers: Int
    let minutes: Double
    let windowSeconds: Double
    let intervalMs: Int
    let announcedIntervalMs: Int
    let timeoutMs: Int
    let lostAfterMs: Int
    let registerSeconds: Double
    var startedAt = Date()
    var memoryStart: ProcessMemory?
    var memoryEnd: ProcessMemory?
    var phase = PhaseResult.empty
    var samples: [SoakSample] = []
    /// Stopped early (the coordinator died).
    var aborted = false
    /// From the start of heartbeating to the last sample (the denominator of the mean CPU use).
    var heartbeatSeconds = 0.0
    /// The coordinator's CPU seconds when heartbeating began and when it ended.
    var coordinatorCPUAtStart: Double?
    var coordinatorCPUSeconds: Double?
    var coordinatorCPUPercentMean: Double? {
        both(coordinatorCPUAtStart, coordinatorCPUSeconds).map { ($1 - $0) / Swift.max(heartbeatSeconds, 1e-9) * 100 }
    }
    var coordinatorStop = ""
    var log = LogSummary()

    // MARK: figures

    var rssStart: Double? { mib(memoryStart?.residentBytes) }
    var rssEnd: Double? { samples.last.flatMap { mib($0.memory?.residentBytes) } ?? mib(memoryEnd?.residentBytes) }
    var rssMax: Double? {
        let all = ([memoryStart, memoryEnd] + samples.map(\.memory)).compactMap { mib($0?.residentBytes) }
        return all.max()
    }
    var rssPeak: Double? { mib(memoryEnd?.peakResidentBytes ?? samples.last?.memory?.peakResidentBytes) }
    var rssGrowth: Double? { both(rssStart, rssEnd).map { $1 - $0 } }
    var rssGrowthPerHour: Double? {
        guard let g = rssGrowth, let last = samples.last, last.endSeconds > 0 else { return nil }
        return g / (last.endSeconds / 3600)
    }
    /// Least-squares slope of RSS over time after the first window (warm-up excluded), MiB/h.
    var rssSlopeAfterFirstWindow: Double? {
        let pts = samples.dropFirst().compactMap { s in mib(s.memory?.residentBytes).map { (s.endSeconds / 3600, $0) } }
        guard pts.count >= 3 else { return nil }
        let n = Double(pts.count)
        let mx = pts.map(\.0).reduce(0, +) / n
        let my = pts.map(\.1).reduce(0, +) / n
        let sxx = pts.map { ($0.0 - mx) * ($0.0 - mx) }.reduce(0, +)
        let sxy = pts.map { ($0.0 - mx) * ($0.1 - my) }.reduce(0, +)
        return sxx > 0 ? sxy / sxx : nil
    }
    var worstWindow: SoakSample? { samples.filter { $0.p99 != nil }.max { $0.p99! < $1.p99! } }
    /// Heartbeats the schedule called for while the generator ran.
    var expectedHeartbeats: Int { Int((phase.wallSeconds * 1000 / Double(intervalMs) * Double(workers)).rounded()) }

    /// Workers the coordinator declared lost at any time (its log) or held as lost at a sample.
    var wronglyLost: Set<String> {
        var names = log.lostWorkers
        for s in samples {
            names.formUnion(s.lostWorkersSoFar)
            names.formUnion(s.liveness?.lostNames ?? [])
        }
        return names
    }
    var finalLiveness: Liveness? { samples.last?.liveness }
    var lostAtEnd: Int? { finalLiveness?.lost }

    var passed: Bool { wronglyLost.isEmpty && lostAtEnd == 0 && !aborted && log.crashLines.isEmpty }

    var verdict: String {
        var problems: [String] = []
        if !wronglyLost.isEmpty {
            problems.append("\(wronglyLost.count) worker(s) wrongly lost although they kept heartbeating (e.g. \(wronglyLost.sorted().prefix(5).joined(separator: ", ")))")
        }
        if aborted { problems.append("the coordinator died during the soak (\(coordinatorStop))") }
        if !log.crashLines.isEmpty { problems.append("the coordinator's log has a crash report") }
        if lostAtEnd == nil {
            problems.append("the final liveness check could not be made (\(finalLiveness?.note ?? "not made"))")
        }
        if problems.isEmpty {
            return "0 workers wrongly lost (target 0); \(workers) of \(workers) live at the end"
        }
        return problems.joined(separator: "; ")
    }

    // MARK: report

    func markdown() -> String {
        var out: [String] = []
        out.append("## Soak: \(workers) simulated workers × \(fmt(minutes, minutes == minutes.rounded() ? 0 : 1)) min against one coordinator")
        out.append("")
        let date = ISO8601DateFormatter().string(from: startedAt)
        out.append("Started \(date). Machine: \(Machine.cpus) vCPU \(Machine.cpuModel), \(Machine.kernel), libnng \(Machine.nngVersion); "
            + "coordinator and load generator share all cores with whatever else runs (see the machine CPU and load columns: the machine "
            + "figure is /proc/stat's tick-sampled one, which catches CPU-bound work such as builds and tests but misses short bursts "
            + "such as this load's own; the coordinator's figure is its exact per-process time).")
        out.append("Coordinator: fresh database, loopback, defaults (announces a heartbeat every \(announcedIntervalMs) ms, declares a worker lost after \(lostAfterMs) ms of silence). "
            + "Each simulated worker (a REQ context on one socket, one pacer thread) heartbeats every \(intervalMs) ms, staggered, request timeout \(timeoutMs) ms; "
            + "registration of \(workers) workers took \(fmt(registerSeconds, 1)) s. A sample every \(fmt(windowSeconds, 0)) s.")
        out.append("")
        out.append("| t (m:ss) | heartbeats | errors | late | p50 ms | p99 ms | max ms | RSS MiB | coordinator CPU (% of 1 core) | machine CPU (% of all \(Machine.cpus)) | load (1 min) | lost now |")
        out.append("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        out.append("| 0:00 | – | – | – | – | – | – | \(fmt(rssStart)) | – | – | – | – |")
        for s in samples {
            out.append("| \(clock(s.endSeconds)) | \(s.heartbeats) | \(s.errors) | \(s.lateTicks) | \(fmtLatency(s.p50)) | \(fmtLatency(s.p99)) | \(fmtLatency(s.max)) | "
                + "\(fmt(mib(s.memory?.residentBytes))) | \(fmt(s.coordinatorCPUPercent, 0)) | \(fmt(s.machineCPUPercent, 0)) | \(fmt(s.loadAverage, 2)) | "
                + "\(s.lostNow.map(String.init) ?? "–") |")
        }
        out.append("")
        out.append("- **Coordinator RSS:** \(fmt(rssStart)) MiB after registration, \(fmt(rssEnd)) MiB at the end, max \(fmt(rssMax)) MiB (peak VmHWM \(fmt(rssPeak)) MiB); "
            + "growth \(fmt(rssGrowth)) MiB (\(fmt(rssGrowthPerHour)) MiB/h); least-squares slope after the first window \(fmt(rssSlopeAfterFirstWindow)) MiB/h.")
        let overall = summary(phase.latencies)
        out.append("- **Heartbeat round trip p99:** first window \(fmtLatency(samples.first?.p99)) ms, last window \(fmtLatency(samples.last?.p99)) ms, "
            + "worst window \(fmtLatency(worstWindow?.p99)) ms (ending at \(worstWindow.map { clock($0.endSeconds) } ?? "–")); "
            + "whole run p50 \(fmtLatency(overall?.p50)) / p99 \(fmtLatency(overall?.p99)) / max \(fmtLatency(overall?.max)) ms.")
        out.append("- **Heartbeats:** \(phase.latencies.count) answered of ≈ \(expectedHeartbeats) scheduled; \(phase.errors) failed or timed out; \(phase.lateTicks) ticks skipped because the previous heartbeat was still in flight."
            + (phase.errorKinds.isEmpty ? "" : " Errors: " + phase.errorKinds.sorted { $0.value > $1.value }.map { "\($0.key) ×\($0.value)" }.joined(separator: ", ") + "."))
        let states = finalLiveness?.states.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", ")
        out.append("- **Workers wrongly lost: \(wronglyLost.count)** (target 0). Loss declarations in the coordinator's log: \(log.lostLines), revivals: \(log.revivedLines); "
            + "`workers --json` at the end: \(states ?? finalLiveness?.note ?? "not asked")"
            + (samples.contains { $0.liveness != nil && $0.index < samples.count - 1 } ? "; asked at every sample, max lost \(samples.compactMap(\.lostNow).max() ?? 0)." : "."))
        out.append("- **CPU:** coordinator \(fmt(coordinatorCPUPercentMean, 0)) % of one core on average while heartbeating; load generator \(fmt(phase.generatorCPUSeconds / Swift.max(heartbeatSeconds, 1e-9) * 100, 0)) %. "
            + "Coordinator stop: \(coordinatorStop); log: \(log.problemLines) error or warning lines (loss declarations included)"
            + (log.crashLines.isEmpty ? "" : ", CRASH: \(log.crashLines.prefix(2).joined(separator: " | "))") + ".")
        out.append("")
        out.append("\(passed ? "PASS" : "FAIL"): \(verdict).")
        return out.joined(separator: "\n")
    }

    /// Writes `soak.json` (flat scalars, the shape of the integration tests' reliability figures)
    /// into `directory` and `series/soak-series.json` (one object per window) below it; returns
    /// their paths.
    func writeFigures(directory: String) throws -> (String, String) {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let recordedAt = ISO8601DateFormatter().string(from: Date())
        func r(_ x: Double?, _ digits: Double = 1000) -> Any { x.map { ($0 * digits).rounded() / digits } ?? NSNull() }
        let overall = summary(phase.latencies)
        let flat: [String: Any] = [
            "test": "soak",
            "recorded_at": recordedAt,
            "started_at": ISO8601DateFormatter().string(from: startedAt),
            "workers": workers,
            "minutes": r(minutes),
            "heartbeat_seconds": r(phase.wallSeconds),
            "sample_seconds": r(windowSeconds),
            "windows": samples.count,
            "heartbeat_interval_ms": intervalMs,
            "request_timeout_ms": timeoutMs,
            "lost_after_ms": lostAfterMs,
            "register_seconds": r(registerSeconds),
            "rss_start_mib": r(rssStart),
            "rss_end_mib": r(rssEnd),
            "rss_max_mib": r(rssMax),
            "rss_peak_hwm_mib": r(rssPeak),
            "rss_growth_mib": r(rssGrowth),
            "rss_growth_mib_per_hour": r(rssGrowthPerHour),
            "rss_slope_mib_per_hour_after_first_window": r(rssSlopeAfterFirstWindow),
            "heartbeat_p99_ms_first_window": r(ms(samples.first?.p99)),
            "heartbeat_p99_ms_last_window": r(ms(samples.last?.p99)),
            "heartbeat_p99_ms_worst_window": r(ms(worstWindow?.p99)),
            "heartbeat_p50_ms_overall": r(ms(overall?.p50)),
            "heartbeat_p99_ms_overall": r(ms(overall?.p99)),
            "heartbeat_max_ms": r(ms(overall?.max)),
            "heartbeats_total": phase.latencies.count,
            "heartbeats_scheduled": expectedHeartbeats,
            "heartbeat_errors": phase.errors,
            "heartbeat_late_ticks": phase.lateTicks,
            "coordinator_cpu_percent_mean": r(coordinatorCPUPercentMean, 10),
            "machine_cpu_percent_mean": r(mean(samples.compactMap(\.machineCPUPercent)), 10),
            "load_average_max": r(samples.compactMap(\.loadAverage).max(), 100),
            "workers_wrongly_lost": wronglyLost.count,
            "workers_lost_at_end": lostAtEnd.map { $0 as Any } ?? NSNull(),
            "lost_declarations_in_log": log.lostLines,
            "coordinator_died": aborted,
            "passed": passed,
        ]
        let series: [[String: Any]] = samples.map { s in
            [
                "window": s.index + 1,
                "start_s": r(s.startSeconds),
                "end_s": r(s.endSeconds),
                "minute": r(s.endSeconds / 60, 100),
                "heartbeats": s.heartbeats,
                "errors": s.errors,
                "late_ticks": s.lateTicks,
                "p50_ms": r(ms(s.p50)),
                "p99_ms": r(ms(s.p99)),
                "max_ms": r(ms(s.max)),
                "rss_mib": r(mib(s.memory?.residentBytes)),
                "coordinator_cpu_percent": r(s.coordinatorCPUPercent, 10),
                "machine_cpu_percent": r(s.machineCPUPercent, 10),
                "load_average": r(s.loadAverage, 100),
                "lost_now": s.lostNow.map { $0 as Any } ?? NSNull(),
                "lost_declarations_so_far": s.lostLinesSoFar,
            ]
        }
        let seriesDoc: [String: Any] = ["test": "soak-series", "recorded_at": recordedAt, "workers": workers, "windows": series]
        let flatPath = (directory as NSString).appendingPathComponent("soak.json")
        // The series goes one level down: scripts/reliability.sh tabulates every `"key" : value`
        // line of every FIGURES_DIR/*.json, and the series' per-window keys would flood that table.
        let seriesDirectory = (directory as NSString).appendingPathComponent("series")
        try FileManager.default.createDirectory(atPath: seriesDirectory, withIntermediateDirectories: true)
        let seriesPath = (seriesDirectory as NSString).appendingPathComponent("soak-series.json")
        for (doc, path) in [(flat, flatPath), (seriesDoc, seriesPath)] {
            let data = try JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys, .prettyPrinted])
            try data.write(to: URL(fileURLWithPath: path))
        }
        return (flatPath, seriesPath)
    }
}

private func mean(_ xs: [Double]) -> Double? { xs.isEmpty ? nil : xs.reduce(0, +) / Double(xs.count) }
