import Testing
import Foundation
@testable import Shared

/// A loopback port unlikely to clash between concurrently running suites.
func freePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_addr.s_addr = inet_addr("127.0.0.1")
    addr.sin_port = 0
    var len = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, len) } }
    _ = withUnsafeMutablePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
    return Int(UInt16(bigEndian: addr.sin_port))
}

@Suite("NNG transport")
struct NNGTransportTests {
    func echoServer(url: String, maxBytes: Int = 1 << 20, initial: Int = 2) throws -> NNGReplyServer {
        let sock = try NNGSocket(.reply)
        let server = NNGReplyServer(socket: sock, initialContexts: initial, minIdle: 1) { req in
            req.reply(req.bytes)
        }
        try server.start()
        try sock.listen(url, maxMessageBytes: maxBytes)
        return server
    }

    @Test("a request round-trips through a REP context pool")
    func roundTrip() async throws {
        let url = "tcp://127.0.0.1:\(freePort())"
        let server = try echoServer(url: url)
        defer { server.close() }
        let client = try NNGRequester(url: url)
        defer { client.close() }
        let reply = try await client.request([1, 2, 3], timeoutMs: 5000)
        #expect(reply == [1, 2, 3])
    }

    @Test("many concurrent requests are all answered, and the pool grows to serve them")
    func concurrent() async throws {
        let url = "tcp://127.0.0.1:\(freePort())"
        // A server that holds every request for 50 ms (like a long-poll), so contexts pile up.
        let sock = try NNGSocket(.reply)
        let server = NNGReplyServer(socket: sock, initialContexts: 2, minIdle: 1) { req in
            Task {
                try? await Task.sleep(for: .milliseconds(50))
                req.reply(req.bytes)
            }
        }
        try server.start()
        try sock.listen(url, maxMessageBytes: 1 << 20)
        defer { server.close() }
        let client = try NNGRequester(url: url)
        defer { client.close() }
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<64 {
                group.addTask {
                    let payload = Array("req-\(i)".utf8)
                    return try await client.request(payload, timeoutMs: 10_000) == payload
                }
            }
            for try await ok in group { #expect(ok) }
        }
        #expect(server.contextCount >= 32)
    }

    @Test("with no server, a request times out instead of hanging")
    func timeout() async throws {
        let client = try NNGRequester(url: "tcp://127.0.0.1:\(freePort())")
        defer { client.close() }
        await #expect(throws: NNGError.self) { try await client.request([1], timeoutMs: 300) }
    }

    @Test("a message above the listener's limit drops only that connection")
    func oversized() async throws {
        let url = "tcp://127.0.0.1:\(freePort())"
        let server = try echoServer(url: url, maxBytes: 64 << 10)
        defer { server.close() }
        let big = try NNGRequester(url: url)
        defer { big.close() }
        await #expect(throws: NNGError.self) { try await big.request([UInt8](repeating: 7, count: 1 << 20), timeoutMs: 1500) }
        let small = try NNGRequester(url: url)
        defer { small.close() }
        #expect(try await small.request([9], timeoutMs: 5000) == [9])
    }

    @Test("cancelling the waiting task fails the request with cancelled")
    func cancellation() async throws {
        let url = "tcp://127.0.0.1:\(freePort())"
        let sock = try NNGSocket(.reply)
        let server = NNGReplyServer(socket: sock, initialContexts: 1) { req in req.drop() }
        try server.start()
        try sock.listen(url, maxMessageBytes: 1 << 20)
        defer { server.close() }
        let client = try NNGRequester(url: url)
        defer { client.close() }
        let task = Task { try await client.request([1], timeoutMs: 30_000) }
        try await Task.sleep(for: .milliseconds(200))
        task.cancel()
        let started = ContinuousClock.now
        await #expect(throws: NNGError.self) { try await task.value }
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("closing the server while replies are being sent from other threads is safe (regression: use after free)")
    func closeDuringReplies() async throws {
        for round in 0..<5 {
            let url = "tcp://127.0.0.1:\(freePort())"
            let sock = try NNGSocket(.reply)
            let server = NNGReplyServer(socket: sock, initialContexts: 4, minIdle: 2) { req in
                Task.detached {
                    try? await Task.sleep(for: .microseconds(Int.random(in: 0...2_000)))
                    req.reply(req.bytes)
                }
            }
            try server.start()
            try sock.listen(url, maxMessageBytes: 1 << 20)
            let client = try NNGRequester(url: url)
            let load = Task {
                await withTaskGroup(of: Void.self) { g in
                    for i in 0..<100 { g.addTask { _ = try? await client.request([UInt8(i % 256)], timeoutMs: 2_000) } }
                }
            }
            try await Task.sleep(for: .milliseconds(5 + round * 3))
            server.close()
            await load.value
            client.close()
        }
    }

    @Test("the pipe handler sees connects with the peer address and disconnects")
    func pipeEvents() async throws {
        let url = "tcp://127.0.0.1:\(freePort())"
        let sock = try NNGSocket(.reply)
        let events = EventLog()
        try sock.onPipeEvent { events.append($0) }
        let server = NNGReplyServer(socket: sock, initialContexts: 1) { $0.reply($0.bytes) }
        try server.start()
        try sock.listen(url, maxMessageBytes: 1 << 20)
        defer { server.close() }
        let client = try NNGRequester(url: url)
        _ = try await client.request([1], timeoutMs: 5000)
        client.close()
        for _ in 0..<50 where events.count < 2 { try await Task.sleep(for: .milliseconds(20)) }
        let seen = events.all
        #expect(seen.first?.kind == .connected)
        #expect(seen.first?.remoteAddress?.hasPrefix("127.0.0.1:") == true)
        #expect(seen.contains { $0.kind == .disconnected })
    }
}

final class EventLog: Sendable {
    private let items = Mutex<[PipeEvent]>([])
    func append(_ e: PipeEvent) { items.withLock { $0.append(e) } }
    var all: [PipeEvent] { items.withLock { $0 } }
    var count: Int { items.withLock { $0.count } }
}

import Synchronization
