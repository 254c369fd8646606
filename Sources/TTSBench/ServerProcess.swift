import Foundation

#if canImport(Glibc)
import Glibc
#endif

struct BenchError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// A server under test (the coordinator or nng-echo) in its own process, with stdout and
/// stderr going to a log file.
final class ServerProcess {
    let name: String
    let logPath: String
    private let process = Process()

    init(name: String, executable: String, arguments: [String], logPath: String, environment: [String: String] = [:]) throws {
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw BenchError("\(name): \(executable) is not an executable file (build it first)")
        }
        self.name = name
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        guard let log = FileHandle(forWritingAtPath: logPath) else { throw BenchError("cannot write \(logPath)") }
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        // A crash of the server then leaves a symbolicated backtrace in its log.
        var env = ProcessInfo.processInfo.environment
        if env["SWIFT_BACKTRACE"] == nil { env["SWIFT_BACKTRACE"] = "enable=yes,interactive=no" }
        for (k, v) in environment { env[k] = v }
        process.environment = env
        try process.run()
        try? log.close()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Waits until the log contains `marker` or a TCP connection to `port` succeeds.
    func waitListening(marker: String, port: UInt16, timeoutSeconds: Double) async throws {
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while Date() < deadline {
            guard process.isRunning else {
                throw BenchError("\(name) exited with status \(process.terminationStatus) before listening; its log:\n\(log.suffix(4000))")
            }
            if log.contains(marker) || tcpConnects(port: port) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw BenchError("\(name) did not start listening within \(Int(timeoutSeconds)) s; its log:\n\(log.suffix(4000))")
    }

    /// CPU seconds (user + system) the process has used so far, from /proc.
    func cpuSeconds() -> Double? { processCPUSeconds(pid: pid) }

    /// SIGTERM, then SIGKILL after `graceSeconds`. Returns how it ended.
    @discardableResult
    func stop(graceSeconds: Double = 5) async -> String {
        guard process.isRunning else { return "had already \(exitDescription)" }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(graceSeconds)
        while process.isRunning && Date() < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(pid, SIGKILL)
            process.waitUntilExit()
            return "did not stop within \(Int(graceSeconds)) s of SIGTERM: killed"
        }
        return process.terminationReason == .exit && process.terminationStatus == 0 ? "exited cleanly" : exitDescription
    }

    private var exitDescription: String {
        process.terminationReason == .uncaughtSignal
            ? "died of signal \(process.terminationStatus)\(process.terminationStatus == SIGILL || process.terminationStatus == SIGTRAP ? " (a Swift runtime trap; see its log)" : "")"
            : "exited with status \(process.terminationStatus)"
    }
}

/// CPU seconds (user + system) process `pid` has used so far, from /proc/`pid`/stat.
func processCPUSeconds(pid: Int32) -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
          let close = stat.lastIndex(of: ")") else { return nil }
    // Fields after "comm)": state is field 3, utime 14, stime 15.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 12, let u = Double(fields[11]), let s = Double(fields[12]) else { return nil }
    return (u + s) / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// Memory of a process from /proc/`pid`/status, in bytes.
struct ProcessMemory: Sendable {
    /// Resident set size now (`VmRSS`).
    var residentBytes: UInt64
    /// Peak resident set size so far (`VmHWM`).
    var peakResidentBytes: UInt64
    /// Process state letter (`R`, `S`, `Z` …).
    var state: String

    /// nil when the process is gone or /proc cannot be read.
    init?(pid: Int32) {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return nil }
        var rss: UInt64?
        var hwm: UInt64?
        var state = "?"
        for line in status.split(separator: "\n") {
            let parts = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard parts.count >= 2 else { continue }
            switch parts[0] {
            case "VmRSS:": rss = UInt64(parts[1]).map { $0 * 1024 } // kB
            case "VmHWM:": hwm = UInt64(parts[1]).map { $0 * 1024 }
            case "State:": state = String(parts[1])
            default: break
            }
        }
        // A zombie has no VmRSS line.
        guard let rss else { return nil }
        residentBytes = rss
        peakResidentBytes = hwm ?? rss
        self.state = state
    }
}

/// Runs a command to completion, returning its status and stdout; both streams are also kept in
/// `outputBase`.stdout / .stderr.
func runCommand(_ executable: String, _ arguments: [String], timeoutSeconds: Double, outputBase: String) async throws -> (status: Int32, stdout: String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: executable)
    p.arguments = arguments
    let outPath = outputBase + ".stdout"
    let stderrPath = outputBase + ".stderr"
    _ = FileManager.default.createFile(atPath: outPath, contents: nil)
    _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
    guard let out = FileHandle(forWritingAtPath: outPath), let err = FileHandle(forWritingAtPath: stderrPath) else {
        throw BenchError("cannot write \(stderrPath)")
    }
    p.standardOutput = out
    p.standardError = err
    p.standardInput = FileHandle.nullDevice
    try p.run()
    try? out.close()
    try? err.close()
    let deadline = Date().addingTimeInterval(timeoutSeconds)
    while p.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(20)) }
    if p.isRunning {
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
        throw BenchError("\(URL(fileURLWithPath: executable).lastPathComponent) \(arguments.joined(separator: " ")) did not finish within \(Int(timeoutSeconds)) s")
    }
    let stdout = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
    return (p.terminationStatus, stdout)
}

/// Busy CPU seconds of the whole machine so far (all CPUs; from /proc/stat, minus idle and iowait).
func machineBusyCPUSeconds() -> Double? {
    guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
          let line = stat.split(separator: "\n").first(where: { $0.hasPrefix("cpu ") }) else { return nil }
    let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
    guard v.count >= 5 else { return nil }
    // user nice system idle iowait irq softirq steal (guest time is already in user)
    let busy = v.prefix(8).enumerated().filter { $0.offset != 3 && $0.offset != 4 }.map(\.element).reduce(0, +)
    return busy / Double(sysconf(Int32(_SC_CLK_TCK)))
}

/// CPU use during one phase, as fractions of one core.
struct CPUShare {
    var server: Double?
    var generator = 0.0
    /// Everything else on the machine (other processes, the kernel outside these two).
    var other: Double?
}

/// Measures a phase's CPU use of the server, the generator and the rest of the machine.
struct CPUMeter {
    private let start = monotonicNanos()
    private let server0: Double?
    private let machine0 = machineBusyCPUSeconds()

    init(server: ServerProcess) { server0 = server.cpuSeconds() }

    func finish(server: ServerProcess, generatorCPUSeconds: Double) -> CPUShare {
        let wall = max(Double(monotonicNanos() - start) / 1e9, 1e-9)
        var share = CPUShare(generator: generatorCPUSeconds / wall)
        if let a = server0, let b = server.cpuSeconds() { share.server = (b - a) / wall }
        if let a = machine0, let b = machineBusyCPUSeconds(), let srv = share.server {
            share.other = max(0, (b - a) / wall - srv - share.generator)
        }
        return share
    }
}

/// Restricts every thread of this process to `cpus` with `taskset -a -p` (threads started later,
/// such as nng's, inherit it). Glibc's module does not export sched_setaffinity.
func pinSelf(toCPUs cpus: [Int], taskset: String, scratch: String) async throws {
    let list = cpus.map(String.init).joined(separator: ",")
    let (status, _) = try await runCommand(taskset, ["-a", "-p", "-c", list, String(getpid())], timeoutSeconds: 10, outputBase: scratch)
    guard status == 0 else { throw BenchError("taskset -a -p -c \(list) \(getpid()) exited \(status)") }
}

/// A free TCP port on 127.0.0.1 (bound, read back and released).
func freeLoopbackPort() throws -> UInt16 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw BenchError("socket: \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = 0
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let ok = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard ok == 0 else { throw BenchError("bind: \(String(cString: strerror(errno)))") }
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
    }
    return UInt16(bigEndian: addr.sin_port)
}

/// Whether a TCP connection to 127.0.0.1:`port` succeeds right now.
func tcpConnects(port: UInt16) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { return false }
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = port.bigEndian
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    let rv = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    return rv == 0
}
