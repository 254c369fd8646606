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

    /// Registers worker `i` and returns its session.
    static func registerWorker(_ i: Int, with requester: NNGRequester, timeoutMs: Int) async throws -> UInt64 {
        let reply = try await requester.request(register(i), timeoutMs: timeoutMs)
        let env = try Envelope.decode(reply)
        switch env.type {
        case .registered:
            return try env.decodeBody(RegisterReply.self).session
        case .error:
            throw BenchError("register bench-\(i): \((try? env.decodeBody(ProtocolError.self))?.description ?? "undecodable error")")
        default:
            throw BenchError("register bench-\(i): unexpected reply \(env.type)")
        }
    }
}

/// A short description of a reply that was not the expected one.
func describeReply(_ bytes: [UInt8]) -> String {
    guard let env = try? Envelope.decode(bytes) else { return "\(bytes.count) bytes, not an envelope" }
    if env.type == .error, let e = try? env.decodeBody(ProtocolError.self) { return "error \(e.code)" }
    return "\(env.type)"
}
