import CurlHTTP
import Foundation
import Shared

/// The loopback Slack webhook (`Tests/Fixtures/slack/mock_slack_server.py`), one per test.
public final class MockSlackServer: Sendable {
    public struct Post: Sendable {
        public var time: Double
        public var status: Int
        public var text: String?
        public var contentType: String?
    }

    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public let process: Process
    /// Our end of the server's stdin: when this process dies, the server sees EOF and exits.
    public let stdinPipe: Pipe
    public let baseURL: String

    private init(process: Process, stdinPipe: Pipe, port: Int) {
        self.process = process
        self.stdinPipe = stdinPipe
        baseURL = "http://127.0.0.1:\(port)"
    }

    public static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/slack/mock_slack_server.py").path
    }

    public static func start() async throws -> MockSlackServer {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, "--port", "0", "--exit-on-stdin-close"]
        let stdout = Pipe()
        let stdin = Pipe()
        process.standardOutput = stdout
        process.standardInput = stdin
        do { try process.run() } catch {
            throw Failure(description: "cannot run /usr/bin/env python3 (is python3 installed?): \(error)")
        }
        let reader = stdout.fileHandleForReading
        let line: String? = await withCheckedContinuation { (c: CheckedContinuation<String?, Never>) in
            Thread {
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
            }.start()
        }
        guard let line, line.hasPrefix("listening "), let port = Int(line.dropFirst("listening ".count)) else {
            stdin.fileHandleForWriting.closeFile()
            process.waitUntilExit()
            throw Failure(description: "the mock Slack server did not start (exit \(process.terminationStatus))")
        }
        return MockSlackServer(process: process, stdinPipe: stdin, port: port)
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

    /// Queues scripted responses (a JSON array, see the script's docstring).
    public func script(_ responsesJSON: String) async throws {
        let client = HTTPClient(configuration: .init(threads: 1))
        let r = try await client.send(HTTPRequest(method: .post, url: baseURL + "/_control",
                                                  body: .bytes(Array(#"{"responses": \#(responsesJSON)}"#.utf8))))
        guard r.status == 200 else { throw Failure(description: "control failed: \(r.status)") }
    }

    /// Empties the response script and forgets the recorded POSTs.
    public func clear() async throws {
        let client = HTTPClient(configuration: .init(threads: 1))
        let r = try await client.send(HTTPRequest(method: .post, url: baseURL + "/_control", body: .bytes(Array(#"{"clear": true}"#.utf8))))
        guard r.status == 200 else { throw Failure(description: "control failed: \(r.status)") }
    }

    /// Every webhook POST received so far, in arrival order.
    public func posts() async throws -> [Post] {
        let client = HTTPClient(configuration: .init(threads: 1))
        let r = try await client.send(HTTPRequest(method: .get, url: baseURL + "/_state"))
        guard r.status == 200, case .object(let state) = try JSONDecoder().decode(JSONValue.self, from: Data(r.body)),
              case .array(let posts)? = state["posts"] else { throw Failure(description: "bad /_state") }
        return posts.compactMap { p in
            guard case .object(let o) = p, let time = o["time"]?.doubleValue, let status = o["status"]?.doubleValue else { return nil }
            return Post(time: time, status: Int(status), text: o["text"]?.stringValue, contentType: o["content_type"]?.stringValue)
        }
    }
}
