import CurlHTTP
import Foundation
import Shared

/// The loopback mock W&B server (`Tests/Fixtures/wandb/mock_wandb_server.py`), started per test.
public final class MockWandbServer: @unchecked Sendable {
    public let process: Process
    /// Our end of the server's stdin: when this process dies, the server sees EOF and exits.
    public let stdinPipe: Pipe
    public let port: Int
    public let baseURL: String
    public let recordPath: String
    public let stderrPath: String
    public let dir: OnlineTempDir

    public static var packageRoot: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    }

    private init(process: Process, stdinPipe: Pipe, port: Int, dir: OnlineTempDir, recordPath: String) {
        self.process = process
        self.stdinPipe = stdinPipe
        self.port = port
        self.dir = dir
        baseURL = "http://127.0.0.1:\(port)"
        self.recordPath = recordPath
        stderrPath = dir.path + "/stderr.txt"
    }

    /// Starts a server that records every request to `record` (default: a file in its own
    /// temporary directory).
    public static func start(record: String? = nil) async throws -> MockWandbServer {
        let dir = try OnlineTempDir()
        let recordPath = record ?? dir.path + "/record.jsonl"
        let script = packageRoot.appendingPathComponent("Tests/Fixtures/wandb/mock_wandb_server.py").path
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "--port", "0", "--record", recordPath, "--exit-on-stdin-close"]
        let stdout = Pipe()
        let stdin = Pipe()
        process.standardOutput = stdout
        process.standardInput = stdin
        _ = FileManager.default.createFile(atPath: dir.path + "/stderr.txt", contents: nil)
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: dir.path + "/stderr.txt"))
        do { try process.run() } catch {
            throw MockServerError("cannot run /usr/bin/env python3 (is python3 installed?): \(error)")
        }
        let reader = stdout.fileHandleForReading
        let line: String? = await withCheckedContinuation { (c: CheckedContinuation<String?, Never>) in
            let t = Thread {
                var buffer: [UInt8] = []
                while true {
                    let chunk = reader.availableData
                    if chunk.isEmpty { c.resume(returning: nil); return }
                    buffer += chunk
                    if let nl = buffer.firstIndex(of: 10) {
                        c.resume(returning: String(decoding: buffer[..<nl], as: UTF8.self))
                        return
                    }
                }
            }
            t.start()
        }
        guard let line, line.hasPrefix("listening "), let port = Int(line.dropFirst("listening ".count)) else {
            stdin.fileHandleForWriting.closeFile()
            process.waitUntilExit()
            let err = (try? String(contentsOfFile: dir.path + "/stderr.txt", encoding: .utf8)) ?? ""
            throw MockServerError("the mock W&B server did not start (python3 missing? exit \(process.terminationStatus)): \(err.suffix(2000))")
        }
        return MockWandbServer(process: process, stdinPipe: stdin, port: port, dir: dir, recordPath: recordPath)
    }

    /// SIGTERM, then SIGKILL if it is still there after 3 s.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(3)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        try? stdinPipe.fileHandleForWriting.close()
    }

    deinit { stop() }

    /// The lines of a run file as the server holds them (overwritten by line index; nil: a hole).
    public func lines(run: String, file: String) async throws -> [String?] {
        try JSONDecoder().decode([String?].self, from: Data(try await get("/_files/\(run)/\(file)")))
    }

    /// Every request recorded so far, in order.
    public func records() throws -> [JSONValue] {
        let text = try String(contentsOfFile: recordPath, encoding: .utf8)
        return try text.split(separator: "\n").map { try JSONDecoder().decode(JSONValue.self, from: Data($0.utf8)) }
    }

    public func recordText() -> String { (try? String(contentsOfFile: recordPath, encoding: .utf8)) ?? "" }
    public func stderrText() -> String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// POST /_control with `json`.
    public func control(_ json: String) async throws {
        let client = HTTPClient(configuration: .init(threads: 1))
        let r = try await client.send(HTTPRequest(method: .post, url: baseURL + "/_control", body: .bytes(Array(json.utf8))))
        guard r.status == 200 else { throw MockServerError("control failed: \(r.status)") }
    }

    public func get(_ path: String) async throws -> [UInt8] {
        let client = HTTPClient(configuration: .init(threads: 1))
        let r = try await client.send(HTTPRequest(method: .get, url: baseURL + path))
        guard r.status == 200 else { throw MockServerError("GET \(path): \(r.status)") }
        return r.body
    }

    public func getJSON(_ path: String) async throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(try await get(path)))
    }
}

public struct MockServerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ d: String) { description = d }
}

/// A temporary directory, removed when the last reference goes.
public final class OnlineTempDir: Sendable {
    public let path: String

    public init() throws {
        let p = FileManager.default.temporaryDirectory.appendingPathComponent("tts-online-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: p, withIntermediateDirectories: true)
        path = p
    }

    deinit { try? FileManager.default.removeItem(atPath: path) }
}
