import CurlHTTP
import Foundation
import Shared

/// The CLI's client of the coordinator's REST API (`/api/v1`, docs/API.md), over libcurl.
/// With a cluster token every request carries `Authorization: Bearer <token.apiBearer>`.
public final class HTTPClusterClient: ClusterClient {
    public let baseURL: String
    private let token: ClusterToken?
    private let client: HTTPClient
    private let timeout: Duration

    public init(baseURL: String, token: ClusterToken?, timeout: Duration = .seconds(30)) throws(ClusterClientError) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://") else {
            throw ClusterClientError("--api \(baseURL) is not an http:// or https:// URL (e.g. http://127.0.0.1:8080)")
        }
        self.baseURL = base
        self.token = token
        self.timeout = timeout
        client = HTTPClient(configuration: .init(threads: 1))
    }

    deinit { client.shutdown() }

    /// A path component, percent-encoded.
    static func component(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
    }

    static func query(_ items: [(String, String?)]) -> String {
        let parts = items.compactMap { k, v in v.map { "\(k)=\(component($0))" } }
        return parts.isEmpty ? "" : "?" + parts.joined(separator: "&")
    }

    private func call<T: Decodable>(_ name: String, _ method: HTTPRequest.Method, _ path: String, body: [UInt8]? = nil,
                                    contentType: String = "application/json", as: T.Type) async throws -> T {
        var headers: HTTPHeaders = ["Accept": "application/json"]
        if let token { headers.set("Authorization", "Bearer \(token.apiBearer)") }
        if body != nil { headers.set("Content-Type", contentType) }
        let request = HTTPRequest(method: method, url: baseURL + path, headers: headers, body: body.map { .bytes($0) } ?? (method == .post ? .bytes([]) : .none),
                                  timeout: timeout)
        let response: HTTPResponse
        do { response = try await client.send(request) } catch {
            throw ClusterClientError("the coordinator's API at \(baseURL) is not reachable (\(error)). Is `tts-coordinator serve` running there? Use --api URL or TTS_API to point at it (or --connect for the NNG admin endpoint).")
        }
        guard response.isSuccess else {
            if let f = try? JSONCoding.decode(APIFailure.self, from: response.body) {
                throw ClusterClientError("the coordinator refused `\(name)`: \(f.error.message)" + (f.error.code == "unauthorized" ? " (\(f.error.code))" : ""))
            }
            throw ClusterClientError("the coordinator answered `\(name)` with HTTP \(response.status): \(response.bodyText.prefix(300))")
        }
        do { return try JSONCoding.decode(T.self, from: response.body) } catch {
            throw ClusterClientError("the coordinator's answer to `\(name)` is not what this CLI expects (\(error)); are the CLI and the coordinator the same release?")
        }
    }

    public func workers() async throws -> [WorkerSummary] { try await call("workers", .get, "/api/v1/workers", as: [WorkerSummary].self) }

    public func shards(state: String?, jobId: Int64?) async throws -> [ShardSummary] {
        try await call("shards", .get, "/api/v1/shards" + Self.query([("state", state), ("job", jobId.map(String.init))]), as: [ShardSummary].self)
    }

    public func status() async throws -> ClusterStatus { try await call("status", .get, "/api/v1/status", as: ClusterStatus.self) }

    public func enqueue(_ request: EnqueueRequest) async throws -> EnqueueReply {
        try await call("enqueue", .post, "/api/v1/shards", body: try JSONCoding.encode(request), as: EnqueueReply.self)
    }

    public func drain(worker: String) async throws {
        _ = try await call("drain", .post, "/api/v1/workers/\(Self.component(worker))/drain", as: [String: String].self)
    }

    public func metrics(run: String, key: String?, fromStep: Int64?, toStep: Int64?) async throws -> MetricsReport {
        try await call("metrics", .get, "/api/v1/runs/\(Self.component(run))/metrics"
                       + Self.query([("key", key), ("from", fromStep.map(String.init)), ("to", toStep.map(String.init))]), as: MetricsReport.self)
    }

    public func alerts(limit: Int) async throws -> [AlertSummary] {
        try await call("alerts", .get, "/api/v1/alerts?limit=\(limit)", as: [AlertSummary].self)
    }

    public func addSilence(_ request: SilenceRequest) async throws -> SilenceSummary {
        try await call("silence add", .post, "/api/v1/silences", body: try JSONCoding.encode(request), as: SilenceSummary.self)
    }

    public func silences() async throws -> [SilenceSummary] { try await call("silence list", .get, "/api/v1/silences", as: [SilenceSummary].self) }

    public func expireSilence(id: Int64) async throws {
        _ = try await call("silence expire", .delete, "/api/v1/silences/\(id)", as: [String: Int64].self)
    }

    public func submit(_ request: SubmitRequest) async throws -> SubmitReply {
        try await call("submit", .post, "/api/v1/jobs" + Self.query([("source", request.source)]), body: Array(request.spec.utf8),
                       contentType: "application/yaml", as: SubmitReply.self)
    }

    public func runs() async throws -> [RunSummary] { try await call("runs", .get, "/api/v1/runs", as: [RunSummary].self) }

    public func logs(_ request: LogsRequest) async throws -> RunLogs {
        try await call("logs", .get, "/api/v1/runs/\(Self.component(request.run))/logs"
                       + Self.query([("after", String(request.after)), ("limit", String(request.limit)), ("tail", request.tail.map(String.init))]),
                       as: RunLogs.self)
    }

    public func cancel(run: String) async throws -> CancelReply {
        try await call("cancel", .post, "/api/v1/runs/\(Self.component(run))/cancel", as: CancelReply.self)
    }

    public func eval(_ request: EvalRequest) async throws -> EvalSummary {
        try await call("eval", .post, "/api/v1/evals", body: try JSONCoding.encode(request), as: EvalSummary.self)
    }

    public func evals() async throws -> [EvalSummary] { try await call("evals", .get, "/api/v1/evals", as: [EvalSummary].self) }
}

/// The REST API's error body: `{"error": {"code": "...", "message": "..."}}`.
struct APIFailure: Decodable {
    struct Inner: Decodable {
        var code: String
        var message: String
    }
    var error: Inner
}
