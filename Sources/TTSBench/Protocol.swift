import Foundation
import Shared

/// The real worker protocol, as the simulated workers speak it.
enum BenchProtocol {
    static func workerId(_ i: Int) -> String { "bench-worker-\(i)" }

    static func register(_ i: Int) -> [UInt8] {
        Envelope(
            .register,
            RegisterRequest(
                name: "bench-\(i)", host: "bench",
                device: DeviceInfo(kind: .cpu, index: 0, name: "bench", memoryBytes: 1 << 30),
                capabilities: [], version: "bench", pid: Int(getpid()), proof: .none),
            workerId: workerId(i)
        ).encoded()
    }

    static func heartbeat(_ i: Int, session: UInt64) -> [UInt8] {
        Envelope(
            .heartbeat,
            HeartbeatRequest(
                status: .idle, progress: nil,
                telemetry: DeviceTelemetry(
                    utilization: 50, memoryUsedBytes: 1 << 30, memoryTotalBytes: 1 << 34, temperatureC: 60,
                    powerWatts: 200)),
            workerId: workerId(i), session: session, sequence: 1
        ).encoded()
    }

    /// Registers worker `i` and returns the coordinator's reply (its session, the heartbeat
    /// interval and loss timeout it announces).
    static func registerWorker(_ i: Int, with requester: NNGRequester, timeoutMs: Int) async throws -> RegisterReply {
        let reply = try await requester.request(register(i), timeoutMs: timeoutMs)
        let env = try Envelope.decode(reply)
        switch env.type {
        case .registered:
            return try env.decodeBody(RegisterReply.self)
        case .error:
            throw BenchError("register bench-\(i): \((try? env.decodeBody(ProtocolError.self))?.description ?? "undecodable error")")
        default:
            throw BenchError("register bench-\(i): unexpected reply \(env.type)")
        }
    }

    /// Registers simulated workers 0..<n with `concurrency` registrations in flight (each tried
    /// up to 3 times) and returns their replies, in worker order.
    static func registerAll(_ n: Int, url: String, timeoutMs: Int, concurrency: Int) async throws -> [RegisterReply] {
        let requester = try NNGRequester(url: url)
        defer { requester.close() }
        var replies = [RegisterReply?](repeating: nil, count: n)
        try await withThrowingTaskGroup(of: (Int, RegisterReply).self) { group in
            var next = 0
            func add() {
                let i = next
                next += 1
                group.addTask {
                    var attempt = 0
                    while true {
                        do {
                            return (i, try await registerWorker(i, with: requester, timeoutMs: timeoutMs))
                        } catch {
                            attempt += 1
                            if attempt >= 3 { throw BenchError("registration of bench-\(i) failed 3 times: \(error)") }
                            try await Task.sleep(for: .milliseconds(200))
                        }
                    }
                }
            }
            for _ in 0..<min(max(1, concurrency), n) { add() }
            while let (i, r) = try await group.next() {
                replies[i] = r
                if next < n { add() }
            }
        }
        return replies.map { $0! }
    }

    /// `tts-coordinator workers --json --connect URL`, counting `"state": "lost"`. Its output is
    /// kept in `outputBase`.stdout / .stderr. The database is assumed fresh: every worker in it
    /// is a simulated one.
    static func queryLiveness(coordinatorBin: String, url: String, outputBase: String) async -> Liveness {
        do {
            let (status, out) = try await runCommand(
                coordinatorBin, ["workers", "--json", "--connect", url], timeoutSeconds: 30, outputBase: outputBase)
            guard status == 0 else {
                let err = (try? String(contentsOfFile: "\(outputBase).stderr", encoding: .utf8)) ?? ""
                return Liveness(note: "`workers --json` exited \(status): \(err.prefix(300).trimmingCharacters(in: .whitespacesAndNewlines))")
            }
            let json = try JSONSerialization.jsonObject(with: Data(out.utf8))
            let list: [Any]
            if let a = json as? [Any] {
                list = a
            } else if let d = json as? [String: Any], let a = d["workers"] as? [Any] {
                list = a
            } else {
                return Liveness(note: "`workers --json` printed no JSON array")
            }
            var states: [String: Int] = [:]
            var lostNames: [String] = []
            for case let w as [String: Any] in list {
                let state = (w["state"] as? String) ?? "?"
                states[state, default: 0] += 1
                if state == "lost" { lostNames.append((w["name"] as? String) ?? (w["id"] as? String) ?? "?") }
            }
            var liveness = Liveness(lost: lostNames.count, states: states, note: nil)
            liveness.lostNames = lostNames
            return liveness
        } catch {
            return Liveness(note: "`workers --json` failed: \(error)")
        }
    }
}

/// A short description of a reply that was not the expected one.
func describeReply(_ bytes: [UInt8]) -> String {
    guard let env = try? Envelope.decode(bytes) else { return "\(bytes.count) bytes, not an envelope" }
    if env.type == .error, let e = try? env.decodeBody(ProtocolError.self) { return "error \(e.code)" }
    return "\(env.type)"
}
