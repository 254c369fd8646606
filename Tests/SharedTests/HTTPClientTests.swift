@testable import CurlHTTP
import Foundation
@testable import Shared
import Synchronization
import Testing
import TestSupport
@testable import WandB

@Suite("HTTP client over libcurl")
struct HTTPClientTests {
    @Test("a POST arrives with exactly the given headers and body, and the reply comes back whole")
    func postRoundTrip() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let client = HTTPClient()
        let body = Array(#"{"query":"query Viewer { viewer { id } }","variables":{},"operationName":"Viewer"}"#.utf8)
        let response = try await client.send(HTTPRequest(
            method: .post, url: server.baseURL + "/graphql",
            headers: ["Content-Type": "application/json", "User-Agent": "tts-cluster-test", "X-Custom": "one two"],
            body: .bytes(body)))
        #expect(response.status == 200)
        #expect(response.headers["content-type"] == "application/json")
        #expect(response.headers["CONTENT-TYPE"] == "application/json")
        let reply = try #require(WandbJSON.parse(response.body))
        #expect(reply.wb("data", "viewer", "entity")?.stringValue == "mockent")

        let rec = try #require(server.records().last)
        #expect(rec.wb("method")?.stringValue == "POST")
        #expect(rec.wb("operation")?.stringValue == "Viewer")
        #expect(rec.wb("body_sha256")?.stringValue == SHA256.hash(body).hexString)
        let names = Set(rec.wbHeaderNames)
        // libcurl's own defaults (Accept, Expect, a form Content-Type) are suppressed.
        #expect(names == ["host", "content-type", "user-agent", "x-custom", "content-length"])
        #expect(rec.wb("headers", "X-Custom")?.stringValue == "one two")
    }

    @Test("a PUT from a file sends only the requested headers and the exact bytes, from any offset")
    func putFileSlice() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let client = HTTPClient()
        let dir = try OnlineTempDir()
        let path = dir.path + "/blob.bin"
        let bytes = (0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ ($0 >> 11)) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))

        let whole = try await client.send(HTTPRequest(
            method: .put, url: server.baseURL + "/upload/test/whole.bin", headers: ["X-Mock-Upload": "t"],
            body: .file(path: path, offset: 0, length: Int64(bytes.count)), timeout: nil))
        #expect(whole.status == 200)
        let slice = try await client.send(HTTPRequest(
            method: .put, url: server.baseURL + "/upload/test/slice.bin",
            body: .file(path: path, offset: 1000, length: 2 << 20)))
        #expect(slice.status == 200)
        let fromMemory = try await client.send(HTTPRequest(
            method: .put, url: server.baseURL + "/upload/test/mem.bin", body: .bytes(Array(bytes[5..<70_005]))))
        #expect(fromMemory.status == 200)

        #expect(try await server.get("/_upload/test/whole.bin") == bytes)
        #expect(try await server.get("/_upload/test/slice.bin") == Array(bytes[1000..<(1000 + (2 << 20))]))
        #expect(try await server.get("/_upload/test/mem.bin") == Array(bytes[5..<70_005]))

        let puts = try server.records().filter { $0.wb("method")?.stringValue == "PUT" }
        #expect(puts.count == 3)
        #expect(Set(puts[0].wbHeaderNames) == ["host", "content-length", "x-mock-upload"])
        #expect(Set(puts[1].wbHeaderNames) == ["host", "content-length"])
        #expect(puts.allSatisfy { $0.wb("auth", "present") == .bool(false) })
    }

    @Test("an error status is a response, not an error, and its headers read case-insensitively")
    func errorStatusIsAResponse() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        try await server.control(#"{"fail": [{"status": 429, "retry_after": 2, "count": 1}]}"#)
        let client = HTTPClient()
        let response = try await client.send(HTTPRequest(method: .post, url: server.baseURL + "/graphql", body: .bytes(Array("{}".utf8))))
        #expect(response.status == 429)
        #expect(response.headers["retry-after"] == "2")
        #expect(response.headers.values(for: "RATELIMIT-REMAINING") == ["0"])
        #expect(WandbRetryPolicy.retryAfter(response.headers) == .seconds(2))
    }

    @Test("a refused connection is a retryable transport error")
    func refusedConnection() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        try await server.control(#"{"refuse_seconds": 3}"#)
        let client = HTTPClient()
        let start = ContinuousClock.now
        do {
            _ = try await client.send(HTTPRequest(method: .get, url: server.baseURL + "/_state", connectTimeout: .seconds(2)))
            Issue.record("expected a refused connection")
        } catch {
            #expect(error.isConnectionRefused, "\(error)")
            #expect(!error.isPermanent)
            #expect(WandbRetryPolicy.fileStream.shouldRetry(error: error))
        }
        #expect(ContinuousClock.now - start < .seconds(2))
        // The mock reopens the same port.
        try await Task.sleep(for: .seconds(3.3))
        let response = try await client.send(HTTPRequest(method: .get, url: server.baseURL + "/_state"))
        #expect(response.status == 200)
    }

    @Test("a slow reply hits the total timeout")
    func totalTimeout() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let client = HTTPClient()
        let start = ContinuousClock.now
        do {
            _ = try await client.send(HTTPRequest(method: .get, url: server.baseURL + "/_sleep/3000", timeout: .milliseconds(300)))
            Issue.record("expected a timeout")
        } catch {
            #expect(error.isTimeout, "\(error)")
        }
        #expect(ContinuousClock.now - start < .seconds(2))
    }

    @Test("cancelling the calling task aborts a running transfer promptly")
    func cancellation() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let client = HTTPClient(configuration: .init(threads: 1))
        let url = server.baseURL + "/_sleep/5000"
        let start = ContinuousClock.now
        let task = Task { () -> Result<HTTPResponse, HTTPError> in
            do throws(HTTPError) { return .success(try await client.send(HTTPRequest(method: .get, url: url))) } catch { return .failure(error) }
        }
        try await Task.sleep(for: .milliseconds(300))
        task.cancel()
        let result = await task.value
        #expect(result == .failure(.cancelled))
        #expect(ContinuousClock.now - start < .seconds(3))
        // The worker is free again.
        let after = try await client.send(HTTPRequest(method: .get, url: server.baseURL + "/_state"))
        #expect(after.status == 200)
    }

    @Test("many concurrent requests complete and reuse a few kept-alive connections")
    func concurrencyAndKeepAlive() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let client = HTTPClient(configuration: .init(threads: 3))
        let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<60 {
                group.addTask {
                    let r = try await client.send(HTTPRequest(method: .post, url: server.baseURL + "/sdk/otel/v1/metrics",
                                                              body: .bytes(Array("{\"i\":\(i)}".utf8))))
                    return r.status
                }
            }
            var out: [Int] = []
            for try await s in group { out.append(s) }
            return out
        }
        #expect(statuses.count == 60 && statuses.allSatisfy { $0 == 200 })
        let ports = Set(try server.records().compactMap { $0.wb("peer_port")?.doubleValue })
        #expect(ports.count <= 3, "one connection per worker, reused: \(ports.count)")
    }

    @Test("after shutdown, requests fail with .shutdown; a bad URL is an invalid request")
    func shutdownAndBadURL() async throws {
        let client = HTTPClient(configuration: .init(threads: 1))
        do {
            _ = try await client.send(HTTPRequest(method: .get, url: "ftp://example.invalid/x"))
            Issue.record("expected invalidRequest")
        } catch {
            #expect(error.isPermanent)
            if case .invalidRequest = error {} else { Issue.record("got \(error)") }
        }
        client.shutdown()
        do {
            _ = try await client.send(HTTPRequest(method: .get, url: "http://127.0.0.1:9/"))
            Issue.record("expected shutdown")
        } catch {
            #expect(error == .shutdown)
        }
    }

    @Test("upload headers parse as Name:Value split at the first colon, values trimmed")
    func headerParsing() {
        let h = HTTPHeaders.parseNameColonValue(["Content-MD5:abc==", "X-Goog-Meta: a:b ", "bogus", "Content-Type:application/json"])
        #expect(h.fields.map(\.name) == ["Content-MD5", "X-Goog-Meta", "Content-Type"])
        #expect(h["x-goog-meta"] == "a:b")
        #expect(h["content-md5"] == "abc==")
        var g = h
        g.set("content-type", "text/plain")
        #expect(g.values(for: "Content-Type") == ["text/plain"])
        let auth: HTTPHeaders = ["Authorization": "Basic secret"]
        #expect(!String(describing: auth).contains("secret"))
    }
}

extension JSONValue {
    /// `self[k0][k1]…` for test assertions.
    func wb(_ path: String...) -> JSONValue? {
        var v: JSONValue? = self
        for key in path {
            guard case .object(let d)? = v else { return nil }
            v = d[key]
        }
        return v
    }

    var wbArray: [JSONValue]? { if case .array(let a) = self { return a } else { return nil } }
    var wbObject: [String: JSONValue]? { if case .object(let o) = self { return o } else { return nil } }

    /// Lower-cased header names of a recorded request.
    var wbHeaderNames: [String] { (wb("headers")?.wbObject ?? [:]).keys.map { $0.lowercased() } }
}
