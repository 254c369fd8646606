import ClusterAdmin
import Foundation
import Shared
import Synchronization
import Testing

/// Real processes on loopback: a coordinator, workers and CLI invocations, each with its own
/// log file in a temporary directory that is removed at the end.
final class ClusterHarness: @unchecked Sendable { // used from one test at a time; children are only touched under `lock`.
    let dir: URL
    let port: Int
    /// The coordinator's HTTP port (REST API, dashboard, /metrics).
    let httpPort: Int
    let binDir: URL
    private let lock = NSLock()
    private var children: [String: Process] = [:]
    private var coordinatorArgs: [String] = []
    /// Arguments every CLI call gets (e.g. `--token-file` for a coordinator that has a token).
    var cliArguments: [String] = []
    /// Secrets this harness handed to its processes (token file contents, W&B keys, Slack
    /// webhook URLs), and the files that hold them on purpose. Issue 9: no log or output may
    /// contain one; the harness scans its directory when it ends, and every CLI answer.
    private var secrets: Set<String> = []
    private var secretFiles: Set<String> = []

    var url: String { "tcp://127.0.0.1:\(port)" }
    /// The coordinator's HTTP base URL.
    var httpURL: String { "http://127.0.0.1:\(httpPort)" }

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-it-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        port = freePort()
        httpPort = freePort()
        binDir = try Self.locateBinaries()
    }

    deinit {
        lock.lock()
        for p in children.values where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        lock.unlock()
        scanForSecrets()
        try? FileManager.default.removeItem(at: dir)
    }

    /// Remembers the secrets in a process's arguments and environment.
    private func noteSecrets(_ args: [String], _ environment: [String: String]) {
        lock.lock()
        defer { lock.unlock() }
        for (i, a) in args.enumerated() where a == "--token-file" || a == "--slack-webhook-file" {
            guard i + 1 < args.count else { continue }
            let path = args[i + 1].hasPrefix("/") ? args[i + 1] : dir.appendingPathComponent(args[i + 1]).path
            secretFiles.insert(URL(fileURLWithPath: path).standardizedFileURL.path)
            if let text = try? String(contentsOfFile: path, encoding: .utf8) {
                let line = text.split(whereSeparator: \.isNewline).first.map { $0.trimmingCharacters(in: .whitespaces) } ?? ""
                if line.count >= 8 { secrets.insert(line) }
            }
        }
        for key in ["WANDB_API_KEY", "SLACK_WEBHOOK_URL"] {
            guard let v = environment[key], v.count >= 8 else { continue }
            secrets.insert(v)
            if let r = v.range(of: "/services/") { secrets.insert(String(v[r.upperBound...])) }
        }
    }

    /// The secrets `text` contains, described by kind (length and first characters), never by value.
    func secretsIn(_ text: String) -> [String] {
        lock.lock()
        let known = secrets
        lock.unlock()
        return known.filter { text.contains($0) }.map(Self.describe)
    }

    /// Text that must not contain a secret (a CLI answer): an issue for each one found.
    func checkNoSecret(_ text: String, in what: String) {
        for s in secretsIn(text) { Issue.record("a secret (\(s)) appears in \(what)") }
    }

    /// Every file under the harness directory (logs, W&B runs, reports, databases), except the
    /// files that hold secrets on purpose, that contains a secret: "file: secret kind".
    func secretFindings() -> [String] {
        lock.lock()
        let known = secrets, skip = secretFiles
        lock.unlock()
        guard !known.isEmpty, let files = FileManager.default.enumerator(atPath: dir.path) else { return [] }
        var found: [String] = []
        for case let rel as String in files {
            let path = dir.appendingPathComponent(rel).standardizedFileURL.path
            guard !skip.contains(path), let data = FileManager.default.contents(atPath: path), data.count < 64 << 20 else { continue }
            for s in known where data.range(of: Data(s.utf8)) != nil { found.append("\(rel): \(Self.describe(s))") }
        }
        return found
    }

    /// Records an issue for every secret found in the harness directory.
    func scanForSecrets() {
        for f in secretFindings() { Issue.record("a secret appears in \(f)") }
    }

    private static func describe(_ secret: String) -> String { "\(secret.count) characters, starting \(secret.prefix(3))…" }

    /// The directory with `tts-coordinator` and `tts-worker`: next to the test bundle, or `TTS_BIN_DIR`.
    static func locateBinaries() throws -> URL {
        if let env = ProcessInfo.processInfo.environment["TTS_BIN_DIR"] { return URL(fileURLWithPath: env) }
        let exe = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        var candidate = exe.deletingLastPathComponent()
        for _ in 0..<4 {
            if FileManager.default.isExecutableFile(atPath: candidate.appendingPathComponent("tts-coordinator").path) { return candidate }
            candidate = candidate.deletingLastPathComponent()
        }
        throw HarnessError("tts-coordinator was not found next to the test binary (\(exe.path)); run the tests with `swift test` from the package root, or set TTS_BIN_DIR")
    }

    /// Starts `binary` from the build folder as a child named `name` (its log: `NAME.log`);
    /// `on` runs it through a command prefix (e.g. ``TestHost/run``: on another host).
    @discardableResult
    func start(_ name: String, _ binary: String, _ args: [String], environment: [String: String] = [:], on prefix: [String] = []) throws -> Process {
        noteSecrets(args, environment)
        let p = Process()
        let exe = binDir.appendingPathComponent(binary)
        if let wrapper = prefix.first {
            p.executableURL = URL(fileURLWithPath: wrapper)
            p.arguments = Array(prefix.dropFirst()) + [exe.path] + args
        } else {
            p.executableURL = exe
            p.arguments = args
        }
        p.currentDirectoryURL = dir
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let log = dir.appendingPathComponent("\(name).log")
        if !FileManager.default.fileExists(atPath: log.path) { FileManager.default.createFile(atPath: log.path, contents: nil) }
        let handle = try FileHandle(forWritingTo: log)
        handle.seekToEndOfFile()
        p.standardOutput = handle
        p.standardError = handle
        try p.run()
        lock.lock()
        children[name] = p
        lock.unlock()
        return p
    }

    /// Starts the coordinator on this harness's port and database and waits until it listens.
    @discardableResult
    func startCoordinator(_ extra: [String] = [], scheme: String = "tcp", listenHost: String = "127.0.0.1", environment: [String: String] = [:]) async throws -> Process {
        let http = extra.contains("--http") || extra.contains("--no-http") ? [] : ["--http", "127.0.0.1:\(httpPort)"]
        coordinatorArgs = ["serve", "--listen", "\(scheme)://\(listenHost):\(port)", "--db", dir.appendingPathComponent("coordinator.sqlite").path] + http + extra
        let p = try start("coordinator", "tts-coordinator", coordinatorArgs, environment: environment)
        let before = listenLines, httpBefore = httpLines
        let servesHTTP = !coordinatorArgs.contains("--no-http")
        try await waitUntil("the coordinator listens", timeout: 20) {
            if !p.isRunning { throw HarnessError("the coordinator exited: \(self.log("coordinator"))") }
            return self.listenLines > before && (!servesHTTP || self.httpLines > httpBefore)
        }
        return p
    }

    private var listenLines: Int { log("coordinator").components(separatedBy: "listening on").count - 1 }
    private var httpLines: Int { log("coordinator").components(separatedBy: "HTTP: dashboard and API on").count - 1 }

    @discardableResult
    func startWorker(_ name: String, _ extra: [String] = [], url: String? = nil, on host: TestHost? = nil) throws -> Process {
        try start(name, "tts-worker", ["join", url ?? self.url, "--name", name, "--state-dir", dir.appendingPathComponent("state-\(name)").path, "--poll-wait-ms", "3000"] + extra,
                  on: host?.run ?? [])
    }

    func process(_ name: String) -> Process? {
        lock.lock()
        defer { lock.unlock() }
        return children[name]
    }

    func kill9(_ name: String) {
        guard let p = process(name) else { return }
        kill(p.processIdentifier, SIGKILL)
        p.waitUntilExit()
    }

    func log(_ name: String) -> String {
        (try? String(contentsOf: dir.appendingPathComponent("\(name).log"), encoding: .utf8)) ?? ""
    }

    /// Runs `tts-coordinator ARGS --connect URL` and returns its exit status and output.
    func cli(_ args: [String], connect: Bool = true) throws -> (status: Int32, out: String, err: String) {
        noteSecrets(args, [:])
        let p = Process()
        p.executableURL = binDir.appendingPathComponent("tts-coordinator")
        // The CLI talks to the REST API when the coordinator serves HTTP (the default), else to
        // the NNG admin endpoint.
        let http = !coordinatorArgs.contains("--no-http")
        p.arguments = args + (connect ? (http ? ["--api", httpURL] : ["--connect", url]) + cliArguments : [])
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let (outText, errText) = (String(decoding: o, as: UTF8.self), String(decoding: e, as: UTF8.self))
        checkNoSecret(outText + errText, in: "the output of `tts-coordinator \(args.first ?? "")`")
        return (p.terminationStatus, outText, errText)
    }

    func cliJSON<T: Decodable>(_ args: [String], as: T.Type) throws -> T {
        let r = try cli(args + ["--json"])
        guard r.status == 0 else { throw HarnessError("`tts-coordinator \(args.joined(separator: " "))` failed (\(r.status)): \(r.err)") }
        return try JSONCoding.decoder.decode(T.self, from: Data(r.out.utf8))
    }

    func workers() throws -> [WorkerSummary] { try cliJSON(["workers"], as: [WorkerSummary].self) }
    func shards() throws -> [ShardSummary] { try cliJSON(["shards"], as: [ShardSummary].self) }

    /// Polls `condition` every 100 ms until it holds or `timeout` seconds pass (then fails with
    /// the coordinator's log tail).
    func waitUntil(_ what: String, timeout: Double, _ condition: () throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? condition()) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("timed out after \(timeout) s waiting until \(what)\n--- coordinator log tail ---\n\(log("coordinator").split(separator: "\n").suffix(15).joined(separator: "\n"))")
    }

    /// ``waitUntil(_:timeout:_:)`` for a condition that awaits (e.g. asks a loopback server).
    func waitUntilAsync(_ what: String, timeout: Double, _ condition: () async throws -> Bool) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if (try? await condition()) == true { return }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw HarnessError("timed out after \(timeout) s waiting until \(what)\n--- coordinator log tail ---\n\(log("coordinator").split(separator: "\n").suffix(15).joined(separator: "\n"))")
    }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

/// A loopback TCP port that was free a moment ago.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}
