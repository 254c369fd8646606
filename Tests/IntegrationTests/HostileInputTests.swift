import ClusterAdmin
import Foundation
import Shared
import Testing

/// Refusals: wrong tokens, garbage, truncated and oversized messages, unknown versions, and TLS.
@Suite("Hostile input and authentication (real processes)", .serialized)
struct HostileInputTests {
    func writeToken(_ h: ClusterHarness, _ name: String, _ value: String) throws -> String {
        let path = h.dir.appendingPathComponent(name).path
        try Data((value + "\n").utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("a worker with the wrong token is refused with a clear message; the right token joins")
    func wrongToken() async throws {
        let h = try ClusterHarness()
        let good = try writeToken(h, "token", "correct-horse-battery-staple")
        let bad = try writeToken(h, "bad-token", "wrong-token-value")
        try await h.startCoordinator(["--token-file", good])
        let intruder = try h.startWorker("intruder", ["--token-file", bad])
        try await h.waitUntil("the intruder exits", timeout: 20) { !intruder.isRunning }
        #expect(intruder.terminationStatus == 3)
        #expect(h.log("intruder").contains("cluster token does not match"))
        #expect(h.log("coordinator").contains("refused worker intruder"))
        try h.startWorker("member", ["--token-file", good])
        let admin = try h.cli(["workers", "--json", "--token-file", good])
        #expect(admin.status == 0)
        try await h.waitUntil("the member is live", timeout: 20) {
            (try h.cliJSON(["workers", "--token-file", good], as: [WorkerSummary].self)).map(\.name) == ["member"]
        }
        // The CLI without the token is refused too: by the REST API (bearer token) and by the NNG
        // admin endpoint.
        let anonymous = try h.cli(["workers"])
        #expect(anonymous.status == 1)
        #expect(anonymous.err.contains("unauthorized"), "\(anonymous.err)")
        let anonymousNNG = try h.cli(["workers", "--connect", h.url], connect: false)
        #expect(anonymousNNG.status == 1)
        #expect(anonymousNNG.err.contains("token does not match"), "\(anonymousNNG.err)")
        // No secret in any log.
        for log in ["coordinator", "intruder", "member"] {
            #expect(!h.log(log).contains("correct-horse"))
            #expect(!h.log(log).contains("wrong-token-value"))
        }
        ReliabilityFigures.record("security-tokens", [
            "wrong_token_worker_refused": intruder.terminationStatus == 3 && h.log("intruder").contains("cluster token does not match"),
            "right_token_worker_admitted": admin.status == 0,
            "cli_without_token_refused_rest": anonymous.status == 1, "cli_without_token_refused_nng": anonymousNNG.status == 1,
        ])
    }

    @Test("refuses a non-loopback listen address without a token unless --insecure")
    func tokenRequiredOffLoopback() throws {
        let h = try ClusterHarness()
        let r = try h.cli(["serve", "--listen", "tcp://0.0.0.0:\(h.port)", "--db", h.dir.appendingPathComponent("x.sqlite").path], connect: false)
        #expect(r.status == 2)
        #expect(r.err.contains("without a cluster token"))
    }

    @Test("garbage, truncated, unknown-version and 100 MiB messages are refused while heartbeats keep being answered")
    func hostileMessages() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("steady")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().first?.state == "live" }

        func errorCode(_ bytes: [UInt8]) async throws -> ProtocolError.Code? {
            let r = try NNGRequester(url: h.url)
            defer { r.close() }
            let reply = try Envelope.decode(try await r.request(bytes, timeoutMs: 5_000))
            #expect(reply.type == .error)
            return try reply.decodeBody(ProtocolError.self).code
        }
        // Garbage bytes through a REQ socket.
        #expect(try await errorCode(Array("GET / HTTP/1.1\r\n\r\n".utf8)) == .malformed)
        #expect(try await errorCode([]) == .malformed)
        // A truncated envelope.
        let full = Envelope(.heartbeat, HeartbeatRequest(status: .idle), workerId: "someone", session: 5, sequence: 1).encoded()
        #expect(try await errorCode(Array(full.prefix(6))) == .malformed)
        // An unknown version.
        var future = full
        future[2] = 99
        #expect(try await errorCode(future) == .unsupportedVersion)
        // A heartbeat for a session nobody has.
        #expect(try await errorCode(full) == .unknownSession)
        // Raw garbage on the TCP port (not even the SP handshake).
        try sendRawTCP(port: h.port, bytes: [UInt8](repeating: 0xAB, count: 4096))
        // A 100 MiB message: dropped with its connection (the limit is 16 MiB).
        let big = try NNGRequester(url: h.url)
        await #expect(throws: NNGError.self) { try await big.request([UInt8](repeating: 1, count: 100 << 20), timeoutMs: 3_000) }
        big.close()
        // Through all of it, the worker kept heartbeating and the coordinator kept answering.
        let seen1 = try #require(try h.workers().first?.lastSeen)
        try await Task.sleep(for: .seconds(4)) // a heartbeat every 2 s, persisted every 1 s
        let w = try #require(try h.workers().first)
        #expect(w.state == "live")
        #expect(try #require(w.lastSeen) > seen1)
        #expect(h.log("coordinator").contains("refused a"))
        #expect(!h.log("steady").contains("heartbeat failed"))
    }

    @Test("TLS: a worker with the CA joins over tls+tcp://, one without it cannot")
    func tls() async throws {
        let h = try ClusterHarness()
        let d = h.dir.path
        // A throwaway CA and a server certificate for localhost, made with the openssl CLI.
        // (nng's mbedTLS 2.28 matches DNS names only, so clients verify the name `localhost`.)
        try shell("""
            cd \(d) && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=tts-test-ca 2>/dev/null \
            && openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null \
            && printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > san.ext \
            && openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.crt -days 2 -extfile san.ext 2>/dev/null \
            && cat server.crt server.key > server.pem \
            && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other.key -out other-ca.pem -days 2 -subj /CN=other-ca 2>/dev/null
            """)
        try await h.startCoordinator(["--tls-cert", "\(d)/server.pem"], scheme: "tls+tcp")
        let tlsURL = "tls+tcp://127.0.0.1:\(h.port)"
        try h.startWorker("trusted", ["--tls-ca", "\(d)/ca.pem", "--tls-server-name", "localhost"], url: tlsURL)
        try h.startWorker("untrusted", ["--tls-ca", "\(d)/other-ca.pem", "--tls-server-name", "localhost"], url: tlsURL)
        func names() throws -> [String] {
            let out = try h.cli(["workers", "--json", "--connect", tlsURL, "--tls-ca", "\(d)/ca.pem", "--tls-server-name", "localhost"], connect: false)
            guard out.status == 0 else { throw HarnessError(out.err) }
            return try JSONCoding.decoder.decode([WorkerSummary].self, from: Data(out.out.utf8)).map(\.name)
        }
        try await h.waitUntil("the trusted worker joins over TLS", timeout: 20) { try names() == ["trusted"] }
        try await Task.sleep(for: .seconds(3))
        #expect(try names() == ["trusted"], "the worker with the wrong CA must not get in")
        try await h.waitUntil("the untrusted worker reports it cannot register", timeout: 15) { h.log("untrusted").contains("cannot register") }
        #expect(try names() == ["trusted"])
        // A plain-TCP client cannot talk to the TLS endpoint either.
        let plain = try h.cli(["status", "--connect", "tcp://127.0.0.1:\(h.port)"], connect: false)
        #expect(plain.status == 1)
        ReliabilityFigures.record("security-tls", [
            "worker_with_the_ca_admitted_and_the_wrong_ca_refused": try names() == ["trusted"],
            "plain_tcp_client_refused": plain.status == 1,
        ])
    }
}

func shell(_ script: String) throws {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", script]
    try p.run()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else { throw HarnessError("shell step failed (\(p.terminationStatus)): \(script.prefix(200)) — is openssl installed?") }
}

func sendRawTCP(port: Int, bytes: [UInt8]) throws {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = in_port_t(UInt16(port).bigEndian)
    let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
    guard rc == 0 else { throw HarnessError("cannot connect to 127.0.0.1:\(port)") }
    _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
}
