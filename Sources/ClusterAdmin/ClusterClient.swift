import Foundation
import Shared

/// What the CLI needs from a coordinator. The NNG implementation is ``NNGClusterClient``;
/// a REST implementation can replace it without touching the commands.
public protocol ClusterClient: Sendable {
    func workers() async throws -> [WorkerSummary]
    func shards(state: String?, jobId: Int64?) async throws -> [ShardSummary]
    func status() async throws -> ClusterStatus
    func enqueue(_ request: EnqueueRequest) async throws -> EnqueueReply
    func drain(worker: String) async throws
    func metrics(run: String, key: String?, fromStep: Int64?, toStep: Int64?) async throws -> MetricsReport
    func alerts(limit: Int) async throws -> [AlertSummary]
    func addSilence(_ request: SilenceRequest) async throws -> SilenceSummary
    func silences() async throws -> [SilenceSummary]
    func expireSilence(id: Int64) async throws
    func submit(_ request: SubmitRequest) async throws -> SubmitReply
    func runs() async throws -> [RunSummary]
    func logs(_ request: LogsRequest) async throws -> RunLogs
    func cancel(run: String) async throws -> CancelReply
    func eval(_ request: EvalRequest) async throws -> EvalSummary
    func evals() async throws -> [EvalSummary]
}

/// Why a CLI command could not talk to the coordinator, worded for the user.
public struct ClusterClientError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Admin commands over the coordinator's NNG endpoint.
public final class NNGClusterClient: ClusterClient {
    private let requester: NNGRequester
    private let token: ClusterToken?
    private let timeoutMs: Int
    public let url: String

    public init(url: String, token: ClusterToken?, tls: NNGTLSConfiguration? = nil, timeoutMs: Int = 5_000) throws {
        _ = try Endpoint(url)
        requester = try NNGRequester(url: url, tls: tls, reconnectMinMs: 50, reconnectMaxMs: 500)
        self.token = token
        self.timeoutMs = timeoutMs
        self.url = url
    }

    deinit { requester.close() }

    private func call<T: Decodable>(_ command: AdminCommand, _ arguments: [UInt8] = [], as: T.Type) async throws -> T {
        let proof = token?.prove("admin|\(command.rawValue)") ?? .none
        let env = Envelope(.admin, AdminRequest(command: command.rawValue, arguments: arguments, proof: proof))
        let bytes: [UInt8]
        do {
            bytes = try await requester.request(env.encoded(), timeoutMs: timeoutMs)
        } catch {
            throw ClusterClientError("the coordinator at \(url) is not reachable (\(error.code == .timedOut ? "no answer within \(timeoutMs / 1000) s" : error.description)). Is `tts-coordinator serve` running there? Use --connect URL or TTS_COORDINATOR to point at it.")
        }
        let reply = try Envelope.decode(bytes)
        if reply.type == .error {
            let e = try reply.decodeBody(ProtocolError.self)
            throw ClusterClientError("the coordinator refused `\(command.rawValue)`: \(e.message)")
        }
        let body = try reply.decodeBody(AdminReply.self)
        return try JSONCoding.decode(T.self, from: body.json)
    }

    public func workers() async throws -> [WorkerSummary] { try await call(.workers, as: [WorkerSummary].self) }

    public func shards(state: String?, jobId: Int64?) async throws -> [ShardSummary] {
        var args: [String: JSONValue] = [:]
        if let state { args["state"] = .string(state) }
        if let jobId { args["job"] = .number(Double(jobId)) }
        return try await call(.shards, try JSONCoding.encode(args), as: [ShardSummary].self)
    }

    public func status() async throws -> ClusterStatus { try await call(.status, as: ClusterStatus.self) }

    public func enqueue(_ request: EnqueueRequest) async throws -> EnqueueReply {
        try await call(.enqueue, try JSONCoding.encode(request), as: EnqueueReply.self)
    }

    public func metrics(run: String, key: String?, fromStep: Int64?, toStep: Int64?) async throws -> MetricsReport {
        var args: [String: JSONValue] = ["run": .string(run)]
        if let key { args["key"] = .string(key) }
        if let fromStep { args["from"] = .number(Double(fromStep)) }
        if let toStep { args["to"] = .number(Double(toStep)) }
        return try await call(.metrics, try JSONCoding.encode(args), as: MetricsReport.self)
    }

    public func drain(worker: String) async throws {
        _ = try await call(.drain, try JSONCoding.encode(["worker": worker]), as: [String: String].self)
    }

    public func alerts(limit: Int = 50) async throws -> [AlertSummary] {
        try await call(.alerts, try JSONCoding.encode(["limit": JSONValue.number(Double(limit))]), as: [AlertSummary].self)
    }

    public func addSilence(_ request: SilenceRequest) async throws -> SilenceSummary {
        try await call(.silenceAdd, try JSONCoding.encode(request), as: SilenceSummary.self)
    }

    public func silences() async throws -> [SilenceSummary] { try await call(.silenceList, as: [SilenceSummary].self) }

    public func submit(_ request: SubmitRequest) async throws -> SubmitReply {
        try await call(.submit, try JSONCoding.encode(request), as: SubmitReply.self)
    }

    public func runs() async throws -> [RunSummary] { try await call(.runs, as: [RunSummary].self) }

    public func logs(_ request: LogsRequest) async throws -> RunLogs {
        try await call(.logs, try JSONCoding.encode(request), as: RunLogs.self)
    }

    public func cancel(run: String) async throws -> CancelReply {
        try await call(.cancel, try JSONCoding.encode(["run": run]), as: CancelReply.self)
    }

    public func eval(_ request: EvalRequest) async throws -> EvalSummary {
        try await call(.eval, try JSONCoding.encode(request), as: EvalSummary.self)
    }

    public func evals() async throws -> [EvalSummary] { try await call(.evals, as: [EvalSummary].self) }

    public func expireSilence(id: Int64) async throws {
        _ = try await call(.silenceExpire, try JSONCoding.encode(["id": JSONValue.number(Double(id))]), as: [String: Int64].self)
    }
}
