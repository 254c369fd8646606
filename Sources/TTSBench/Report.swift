import CNNG
import Foundation

/// Both phases against one server.
struct TargetResult {
    var rate = PhaseResult.empty
    var saturate = PhaseResult.empty
    /// CPU use during each phase, as fractions of one core (2.0 = both cores of this box).
    var cpuRate = CPUShare()
    var cpuSaturate = CPUShare()
    var connects = 0
    var disconnects = 0
}

extension PhaseResult {
    static let empty = PhaseResult(
        wallSeconds: 0, latencies: [], errors: 0, errorKinds: [:], windowCompleted: 0, windowSeconds: 0, lateTicks: 0,
        generatorCPUSeconds: 0)
}

/// What the coordinator said about its workers after the run.
struct Liveness {
    var lost: Int?
    var states: [String: Int] = [:]
    /// Names of the lost workers.
    var lostNames: [String] = []
    /// Why the count is unknown.
    var note: String?

    init(lost: Int, states: [String: Int], note: String?) {
        self.lost = lost
        self.states = states
        self.note = note
    }

    init(note: String) {
        lost = nil
        self.note = note
    }
}

/// Lines of interest in the coordinator's log.
struct LogSummary {
    var lostLines = 0
    /// Names of the workers the coordinator declared lost.
    var lostWorkers: Set<String> = []
    var revivedLines = 0
    var problemLines = 0
    var samples: [String] = []
    /// Lines of a crash report (Swift backtracer), if the coordinator crashed.
    var crashLines: [String] = []

    init() {}

    init(_ log: String) {
        for line in log.split(separator: "\n") {
            let l = line.lowercased()
            if let r = line.range(of: " lost: silent for") {
                lostLines += 1
                // "… worker NAME lost: silent for 10.2 s; …"
                let head = line[..<r.lowerBound]
                if let w = head.range(of: "worker ", options: .backwards) { lostWorkers.insert(String(head[w.upperBound...])) }
            }
            if l.contains("back after being declared lost") { revivedLines += 1 }
            if l.contains("runtime failure") || l.contains("fatal error") || l.contains(" crashed:") {
                crashLines.append(String(line.prefix(240)).trimmingCharacters(in: .whitespaces))
            } else if l.contains("error") || l.contains("warning") || l.contains("critical") {
                problemLines += 1
                if samples.count < 5 { samples.append(String(line.prefix(240))) }
            }
        }
    }
}

/// Everything measured for one worker count.
struct RunResult {
    var workers: Int
    var registerSeconds = 0.0
    var requestBytes: [Int] = []
    var coordinatorReplyBytes = 0
    var coordinator = TargetResult()
    var raw = TargetResult()
    var liveness = Liveness(note: "not measured")
    var coordinatorStop = ""
    var coordinatorLog = LogSummary()

    init(workers: Int) { self.workers = workers }

    var ratio: Double {
        raw.saturate.throughput > 0 ? coordinator.saturate.throughput / raw.saturate.throughput : 0
    }
}

/// Nearest-rank percentile of nanosecond samples (sorts a copy).
func percentile(_ samples: [UInt64], _ p: Double) -> UInt64? {
    guard !samples.isEmpty else { return nil }
    let sorted = samples.sorted()
    return sorted[percentileIndex(sorted.count, p)]
}

private func percentileIndex(_ n: Int, _ p: Double) -> Int {
    min(n - 1, max(0, Int((p * Double(n)).rounded(.up)) - 1))
}

/// p50, p99 and max of nanosecond samples.
func summary(_ samples: [UInt64]) -> (p50: UInt64, p99: UInt64, max: UInt64)? {
    guard !samples.isEmpty else { return nil }
    let s = samples.sorted()
    return (s[percentileIndex(s.count, 0.50)], s[percentileIndex(s.count, 0.99)], s[s.count - 1])
}

func fmtMs(_ ns: UInt64?) -> String {
    guard let ns else { return "–" }
    let ms = Double(ns) / 1e6
    return ms < 10 ? String(format: "%.3f ms", ms) : String(format: "%.1f ms", ms)
}

private func fmtTriple(_ samples: [UInt64]) -> String {
    guard let s = summary(samples) else { return "–" }
    func f(_ ns: UInt64) -> String {
        let ms = Double(ns) / 1e6
        return ms < 10 ? String(format: "%.3f", ms) : String(format: "%.1f", ms)
    }
    return "\(f(s.p50)) / \(f(s.p99)) / \(f(s.max)) ms"
}

private func fmtInt(_ x: Double) -> String {
    let n = Int(x.rounded())
    var s = String(n)
    var i = s.count - 3
    while i > 0 {
        s.insert(",", at: s.index(s.startIndex, offsetBy: i))
        i -= 3
    }
    return s
}

private func fmtShare(_ s: CPUShare, _ server: String) -> String {
    "\(server) \(fmtPct(s.server)) + generator \(fmtPct(s.generator)) + other processes \(fmtPct(s.other))"
}

/// CPU microseconds per request, from a CPU fraction over the phase and its throughput.
private func fmtMicros(_ cpuFraction: Double?, _ phase: PhaseResult) -> String {
    guard let cpuFraction, phase.throughput > 0 else { return "?" }
    return String(format: "%.1f µs", cpuFraction / phase.throughput * 1e6)
}

private func fmtPct(_ x: Double?) -> String {
    guard let x else { return "?" }
    return String(format: "%.0f %%", x * 100)
}

/// Machine facts for the report header.
enum Machine {
    static var cpus: Int { ProcessInfo.processInfo.activeProcessorCount }

    static var cpuModel: String {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return "unknown CPU" }
        for line in info.split(separator: "\n") where line.hasPrefix("model name") {
            if let colon = line.firstIndex(of: ":") {
                return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
        }
        return "unknown CPU"
    }

    static var kernel: String {
        var u = utsname()
        uname(&u)
        let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        let sys = withUnsafeBytes(of: &u.sysname) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
        return "\(sys) \(release)"
    }

    static var nngVersion: String { String(cString: nng_version()) }
}

struct Report {
    let options: ControlPlane
    let results: [RunResult]

    func markdown() -> String {
        var out: [String] = []
        let date = ISO8601DateFormatter().string(from: Date())
        out.append("### Control plane: coordinator vs raw NNG (\(date))")
        out.append("")
        out.append("Machine: \(Machine.cpus) vCPU \(Machine.cpuModel), \(Machine.kernel), libnng \(Machine.nngVersion); "
            + "coordinator, nng-echo and the load generator all on this machine (tcp://127.0.0.1), "
            + (options.pin ? "servers pinned to CPU 0 and the generator to CPU 1\(Machine.cpus > 2 ? "–\(Machine.cpus - 1)" : "")." : "sharing all cores (not pinned)."))
        out.append("Load: one REQ socket (\(options.connections) TCP connection\(options.connections == 1 ? "" : "s")), one context per simulated worker; \(String(format: "%g", options.rateSeconds)) s at "
            + "\(String(format: "%g", 1000 / Double(options.intervalMs))) Hz per worker (staggered, \(options.pacing == .thread ? "one pacer thread" : "nng_sleep_aio per worker")), then "
            + "\(String(format: "%g", options.saturateSeconds)) s back to back (first \(String(format: "%g", min(1.0, options.saturateSeconds / 5))) s not counted); "
            + "timeout \(options.timeoutMs) ms; nng-echo with \(options.echoContexts) REP contexts.")
        if let r = results.first, let lo = r.requestBytes.min(), let hi = r.requestBytes.max() {
            let mean = Double(results.flatMap(\.requestBytes).reduce(0, +)) / Double(max(1, results.flatMap(\.requestBytes).count))
            out.append("Message size: heartbeat request \(lo == hi ? "\(lo)" : "\(lo)–\(hi)") B (mean \(String(format: "%.1f", mean)) B, "
                + "worker id and session vary); coordinator reply \(r.coordinatorReplyBytes) B; nng-echo reply = the request.")
        }
        out.append("")
        out.append("| Workers | Coordinator RTT at 1 Hz p50 / p99 / max | Raw NNG RTT at 1 Hz p50 / p99 / max | Coordinator req/s saturated | Raw NNG req/s saturated | Coordinator / raw | Wrongly lost | Errors coordinator / raw |")
        out.append("|---:|---|---|---:|---:|---:|---:|---|")
        for r in results {
            let lost = r.liveness.lost.map(String.init) ?? "unknown"
            let cErr = r.coordinator.rate.errors + r.coordinator.saturate.errors
            let rErr = r.raw.rate.errors + r.raw.saturate.errors
            out.append("| \(fmtInt(Double(r.workers))) | \(fmtTriple(r.coordinator.rate.latencies)) | \(fmtTriple(r.raw.rate.latencies)) | "
                + "\(fmtInt(r.coordinator.saturate.throughput)) | \(fmtInt(r.raw.saturate.throughput)) | \(String(format: "%.2f", r.ratio)) | "
                + "\(lost) | \(cErr) / \(rErr) |")
        }
        out.append("")
        out.append("Details:")
        for r in results {
            let c = r.coordinator, w = r.raw
            let expected = Int(Double(r.workers) * options.rateSeconds * 1000 / Double(options.intervalMs))
            out.append("- N=\(r.workers):")
            out.append("  - registration: \(r.workers) workers in \(String(format: "%.2f", r.registerSeconds)) s "
                + "(\(fmtInt(Double(r.workers) / max(r.registerSeconds, 1e-9))) /s, \(options.registerConcurrency) in flight)")
            out.append("  - 1 Hz phase: \(c.rate.latencies.count) coordinator heartbeats and \(w.rate.latencies.count) raw (≈ \(expected) scheduled each); "
                + "late ticks \(c.rate.lateTicks) / \(w.rate.lateTicks); CPU \(fmtShare(c.cpuRate, "coordinator")); \(fmtShare(w.cpuRate, "nng-echo"))")
            out.append("  - saturated: coordinator RTT p50 / p99 / max \(fmtTriple(c.saturate.latencies)), raw \(fmtTriple(w.saturate.latencies)); "
                + "CPU \(fmtShare(c.cpuSaturate, "coordinator")); \(fmtShare(w.cpuSaturate, "nng-echo")) (% of one core, \(Machine.cpus * 100) % = all); "
                + "server CPU per request: coordinator \(fmtMicros(c.cpuSaturate.server, c.saturate)), nng-echo \(fmtMicros(w.cpuSaturate.server, w.saturate))")
            let states = r.liveness.states.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
            out.append("  - liveness after the run (`tts-coordinator workers --json`): "
                + (r.liveness.lost != nil ? (states.isEmpty ? "no workers listed" : states) : "unknown: \(r.liveness.note ?? "")")
                + "; coordinator log: \(r.coordinatorLog.lostLines) \"lost\" lines, \(r.coordinatorLog.revivedLines) revivals")
            out.append("  - connections: coordinator \(c.connects) opened / \(c.disconnects) dropped during the run, raw \(w.connects) / \(w.disconnects); "
                + "on SIGTERM the coordinator \(r.coordinatorStop)")
            for (label, t) in [("coordinator", c), ("raw", w)] {
                var kinds = t.rate.errorKinds
                kinds.merge(t.saturate.errorKinds, uniquingKeysWith: +)
                if !kinds.isEmpty {
                    out.append("  - \(label) errors: " + kinds.sorted { $0.value > $1.value }.map { "\($0.key) ×\($0.value)" }.joined(separator: "; "))
                }
            }
            if !r.coordinatorLog.crashLines.isEmpty {
                out.append("  - coordinator CRASHED: " + r.coordinatorLog.crashLines.prefix(3).map { "`\($0)`" }.joined(separator: "; "))
            }
            if r.coordinatorLog.problemLines > 0 {
                out.append("  - coordinator log: \(r.coordinatorLog.problemLines) warning/error lines, e.g.:")
                for s in r.coordinatorLog.samples { out.append("    `\(s)`") }
            }
        }
        out.append("")
        let ratios = results.map { "N=\($0.workers): \(String(format: "%.2f", $0.ratio))" }.joined(separator: ", ")
        let ratioOK = results.allSatisfy { $0.ratio >= 0.5 }
        let lostKnown = results.allSatisfy { $0.liveness.lost != nil }
        let lostOK = results.allSatisfy { ($0.liveness.lost ?? 1) == 0 }
        let errorsOK = results.allSatisfy { $0.coordinator.rate.errors + $0.coordinator.saturate.errors == 0 }
        let busiest = results.flatMap { [$0.coordinator.cpuSaturate.other ?? 0, $0.raw.cpuSaturate.other ?? 0] }.max() ?? 0
        if busiest > 0.15 {
            out.append(String(format: "WARNING: other processes used up to %.0f %% of a core during a saturated phase: the throughputs are understated and the ratio is noisy; rerun on a quiet machine.", busiest * 100))
            out.append("")
        }
        out.append("Targets: coordinator ≥ 50 % of raw NNG throughput: \(ratioOK ? "met" : "MISSED") (\(ratios)); "
            + "wrongly lost = 0: \(lostKnown ? (lostOK ? "met" : "MISSED") : "UNKNOWN"); "
            + "coordinator request errors = 0: \(errorsOK ? "met" : "MISSED").")
        return out.joined(separator: "\n")
    }
}
