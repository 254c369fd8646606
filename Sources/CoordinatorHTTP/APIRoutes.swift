import ClusterAdmin
import Coordinator
import CurlHTTP
import Foundation
import Hummingbird
import JobSpecs
import Shared

/// The REST API, `/api/v1` (documented in docs/API.md). Every command goes through the same
/// ``AdminService`` code as the NNG admin protocol, so the two transports cannot disagree.
struct APIRoutes: Sendable {
    let server: CoordinatorServer
    /// Largest request body accepted (job specs, eval requests).
    let maxBodyBytes: Int

    var store: Store { server.store }

    func register(on router: Router<BasicRequestContext>) {
        let api = router.group("api/v1")
        api.get { _, _ in try Self.json(APIRoutes.index) }
        api.get("status") { _, _ in try await self.admin(.status) }
        api.get("workers") { _, _ in try await self.admin(.workers) }
        api.get("workers/:name") { _, context in
            let name = try context.parameters.require("name")
            guard let w = try self.store.workers().first(where: { $0.name == name || $0.id == name }) else {
                throw APIError.notFound("no worker named \(name)")
            }
            return try Self.json(w)
        }
        api.post("workers/:name/drain") { _, context in
            try await self.admin(.drain, ["worker": .string(try context.parameters.require("name"))])
        }
        api.get("shards") { request, _ in
            var args: [String: JSONValue] = [:]
            if let s = request.uri.queryParameters["state"] { args["state"] = .string(String(s)) }
            if let j = request.uri.queryParameters["job"] {
                guard let id = Int64(j) else { throw APIError.badRequest("job must be a job id (an integer), got \(j)") }
                args["job"] = .number(Double(id))
            }
            return try await self.admin(.shards, args)
        }
        api.post("shards") { request, context in
            let body = try await self.body(request, context)
            do { _ = try JSONCoding.decode(EnqueueRequest.self, from: body) } catch {
                throw APIError(.badRequest, "invalid_json", "the body must be an EnqueueRequest JSON object {kind, count, payload}: \(error)")
            }
            return try await self.admin(.enqueue, raw: body, status: .created)
        }
        api.get("shards/:id") { _, context in
            let id = try Self.integer(context, "id")
            guard let s = try self.store.shards().first(where: { $0.id == id }) else { throw APIError.notFound("no shard \(id)") }
            return try Self.json(s)
        }
        api.get("jobs") { _, _ in try Self.json(try self.store.jobs()) }
        api.get("jobs/:id") { _, context in
            let id = try Self.integer(context, "id")
            guard let job = try self.store.jobs(id: id).first else { throw APIError.notFound("no job \(id)") }
            return try Self.json(job)
        }
        api.post("jobs") { request, context in try await self.submit(request, context) }
        api.get("runs") { _, _ in try await self.admin(.runs) }
        api.get("runs/:id") { _, context in try Self.json(try self.run(context)) }
        api.get("runs/:id/metrics") { request, context in try self.metrics(request, context) }
        api.get("runs/:id/logs") { request, context in try await self.logs(request, context) }
        api.post("runs/:id/cancel") { _, context in
            let run = try self.run(context)
            return try await self.admin(.cancel, ["run": .string(run.id)])
        }
        api.get("evals") { _, _ in try await self.admin(.evals) }
        api.get("evals/:id") { _, context in try self.eval(context) }
        api.post("evals") { request, context in
            let body = try await self.body(request, context)
            do { _ = try JSONCoding.decode(EvalRequest.self, from: body) } catch {
                throw APIError(.badRequest, "invalid_json", "the body must be an EvalRequest JSON object {checkpoint, manifests, synthesizer, …}: \(error)")
            }
            return try await self.admin(.eval, raw: body, status: .created)
        }
        api.get("alerts") { request, _ in
            let limit = try Self.optionalInteger(request, "limit") ?? 50
            return try await self.admin(.alerts, ["limit": .number(Double(limit))])
        }
        api.get("silences") { _, _ in try await self.admin(.silenceList) }
        api.post("silences") { request, context in
            let body = try await self.body(request, context)
            do { _ = try JSONCoding.decode(SilenceRequest.self, from: body) } catch {
                throw APIError(.badRequest, "invalid_json", "the body must be a SilenceRequest JSON object {runId, rule?, seconds, comment}: \(error)")
            }
            return try await self.admin(.silenceAdd, raw: body, status: .created)
        }
        api.delete("silences/:id") { _, context in
            try await self.admin(.silenceExpire, ["id": .number(Double(try Self.integer(context, "id")))])
        }
    }

    /// What the API offers (`GET /api/v1`).
    static let index: [String: [String]] = [
        "endpoints": [
            "GET /api/v1/status", "GET /api/v1/workers", "GET /api/v1/workers/{name}", "POST /api/v1/workers/{name}/drain",
            "GET /api/v1/shards?state=&job=", "POST /api/v1/shards (enqueue built-in shards)", "GET /api/v1/shards/{id}", "GET /api/v1/jobs", "GET /api/v1/jobs/{id}",
            "POST /api/v1/jobs[?dry_run=true] (YAML or JSON spec)", "GET /api/v1/runs", "GET /api/v1/runs/{id}",
            "GET /api/v1/runs/{id}/metrics?key=&from=&to=&points=", "GET /api/v1/runs/{id}/logs?after=&tail=&limit=&follow=true",
            "POST /api/v1/runs/{id}/cancel", "GET /api/v1/evals", "GET /api/v1/evals/{id}", "POST /api/v1/evals",
            "GET /api/v1/alerts?limit=", "GET /api/v1/silences", "POST /api/v1/silences", "DELETE /api/v1/silences/{id}",
        ],
    ]

    // MARK: handlers

    private func submit(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let type = request.headers[.contentType]?.lowercased() ?? ""
        let accepted = ["application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml", "application/json", "text/plain"]
        guard type.isEmpty || accepted.contains(where: { type.hasPrefix($0) }) else {
            throw APIError(.unsupportedMediaType, "unsupported_media_type", "send the job spec as application/yaml or application/json, not \(type)")
        }
        let body = try await self.body(request, context)
        guard let text = String(validating: body, as: UTF8.self), !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            throw APIError.badRequest("the body must be a job spec in UTF-8 YAML or JSON")
        }
        if type.hasPrefix("application/json") {
            // JSON is YAML, but say "invalid JSON" for a body that is not JSON at all.
            guard (try? JSONSerialization.jsonObject(with: Data(body))) is [String: Any] else {
                throw APIError(.badRequest, "invalid_json", "the body is not a JSON object")
            }
        }
        let spec: JobSpec
        do { spec = try JobSpecParser.parse(yaml: text) } catch {
            throw APIError(.badRequest, "invalid_spec", "\(request.uri.queryParameters.get("source").map { "\($0): " } ?? "")\(error)")
        }
        if request.uri.queryParameters["dry_run"].map({ ["1", "true", "yes"].contains($0.lowercased()) }) == true {
            let runs = spec.runs().count
            return try Self.json(["name": JSONValue.string(spec.name), "kind": .string(spec.kind.rawValue), "runs": .number(Double(runs)), "valid": .bool(true)])
        }
        let source = request.uri.queryParameters.get("source") ?? "the request body"
        return try await admin(.submit, raw: try JSONCoding.encode(SubmitRequest(spec: text, source: source)), status: .created)
    }

    private func run(_ context: BasicRequestContext) throws -> RunSummary {
        let id = try context.parameters.require("id")
        guard let run = try RunSummaries.list(store, limit: 100_000).first(where: { $0.id == id || $0.name == id }) else {
            throw APIError.notFound("no run \(id); list them with GET /api/v1/runs")
        }
        return run
    }

    private func metrics(_ request: Request, _ context: BasicRequestContext) throws -> Response {
        let id = try context.parameters.require("id")
        let counts = try store.pointCounts(runId: id)
        // A run id with points (any shard kind) or a known training run.
        let known = try RunSummaries.list(store, limit: 100_000).contains { $0.id == id }
        guard !counts.isEmpty || known else {
            throw APIError.notFound("no run \(id); list them with GET /api/v1/runs")
        }
        let from = try Self.optionalInteger(request, "from"), to = try Self.optionalInteger(request, "to")
        let limit = try Self.optionalInteger(request, "points")
        if let limit, !(2...100_000).contains(limit) { throw APIError.badRequest("points must be between 2 and 100000, got \(limit)") }
        guard let key = request.uri.queryParameters.get("key") else {
            return try Self.json(MetricsReport(run: id, pointsByKey: counts, totalPoints: counts.values.reduce(0, +), key: nil, series: nil))
        }
        // Without `points` every point in the range; with it, at most that many (min/max per bucket,
        // from the store's summaries: the cost does not grow with the run).
        let chosen = try limit.map { try store.metricCurve(runId: id, key: key, fromStep: from.map(Int64.init), toStep: to.map(Int64.init), limit: $0) }
            ?? store.metricSeries(runId: id, key: key, fromStep: from.map(Int64.init), toStep: to.map(Int64.init))
        let series = chosen.map { MetricsReport.Point(step: $0.step, value: $0.value, wallTime: $0.wallTime) }
        return try Self.json(MetricsReport(run: id, pointsByKey: counts, totalPoints: counts.values.reduce(0, +), key: key, series: series))
    }

    private func logs(_ request: Request, _ context: BasicRequestContext) async throws -> Response {
        let run = try run(context)
        let after = try Self.optionalInteger(request, "after") ?? 0
        let tail = try Self.optionalInteger(request, "tail")
        let limit = min(try Self.optionalInteger(request, "limit") ?? 1_000, 10_000)
        let follow = request.uri.queryParameters["follow"].map { ["1", "true", "yes"].contains($0.lowercased()) } ?? false
        let first = try RunLogFormatter.logs(store, LogsRequest(run: run.id, after: Int64(after), limit: limit, tail: tail))
        guard follow else { return try Self.json(first) }
        // Follow: one JSON line per log line (application/x-ndjson), until the run is over and
        // everything is sent, or the client goes away.
        let store = self.store
        var headers = HTTPFields()
        headers[.contentType] = "application/x-ndjson"
        let body = ResponseBody { writer in
            var cursor = Int64(after)
            var batch = first
            while true {
                for line in batch.lines {
                    try await writer.write(ByteBuffer(bytes: try JSONCoding.encode(line) + [0x0A]))
                    cursor = max(cursor, line.id)
                }
                let finished = try RunSummaries.list(store, limit: 100_000).first { $0.id == run.id }?.state.isFinished ?? true
                let more = try RunLogFormatter.logs(store, LogsRequest(run: run.id, after: cursor, limit: 1_000))
                if more.lines.isEmpty {
                    if finished { break }
                    try await Task.sleep(for: .milliseconds(300))
                }
                batch = more
            }
            try await writer.finish(nil)
        }
        return Response(status: .ok, headers: headers, body: body)
    }

    private func eval(_ context: BasicRequestContext) throws -> Response {
        let id = try Self.integer(context, "id")
        guard let summary = try store.evals(limit: 100_000).first(where: { $0.id == id }) else { throw APIError.notFound("no evaluation \(id)") }
        var doc: [String: JSONValue] = ["eval": try JSONCoding.decode(JSONValue.self, from: try JSONCoding.encode(summary))]
        if let data = FileManager.default.contents(atPath: summary.outputDir + "/report.json"),
           let report = try? JSONCoding.decode(JSONValue.self, from: Array(data)) {
            doc["report"] = report
        }
        return try Self.json(doc)
    }

    // MARK: plumbing

    /// Runs an admin command with JSON arguments and answers with its JSON.
    private func admin(_ command: AdminCommand, _ args: [String: JSONValue]? = nil, status: HTTPResponse.Status = .ok) async throws -> Response {
        try await admin(command, raw: args.map { try JSONCoding.encode($0) } ?? [], status: status)
    }

    private func admin(_ command: AdminCommand, raw: [UInt8], status: HTTPResponse.Status = .ok) async throws -> Response {
        let request = AdminRequest(command: command.rawValue, arguments: raw, proof: TokenProof(timestampMs: 0, nonce: [], mac: []))
        let reply: [UInt8]
        do { reply = try await server.admin.handle(request) } catch { throw APIError(error) }
        return Self.response(reply, status: status)
    }

    private func body(_ request: Request, _ context: BasicRequestContext) async throws -> [UInt8] {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBodyBytes {
            throw APIError(.contentTooLarge, "payload_too_large", "the body has \(length) bytes; the limit is \(maxBodyBytes)")
        }
        var request = request
        do {
            let buffer = try await request.collectBody(upTo: maxBodyBytes)
            return Array(buffer.readableBytesView)
        } catch let e as Hummingbird.HTTPError where e.status == .contentTooLarge {
            throw APIError(.contentTooLarge, "payload_too_large", "the body is larger than the limit of \(maxBodyBytes) bytes")
        }
    }

    static func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
        response(try JSONCoding.encode(value), status: status)
    }

    static func response(_ bytes: [UInt8], status: HTTPResponse.Status = .ok) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: bytes)))
    }

    static func integer(_ context: BasicRequestContext, _ name: String) throws -> Int64 {
        let text = try context.parameters.require(name)
        guard let v = Int64(text) else { throw APIError.badRequest("\(name) must be an integer, got \(text)") }
        return v
    }

    static func optionalInteger(_ request: Request, _ name: String) throws -> Int? {
        guard let text = request.uri.queryParameters.get(name) else { return nil }
        guard let v = Int(text) else { throw APIError.badRequest("\(name) must be an integer, got \(text)") }
        return v
    }
}
