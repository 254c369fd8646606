import ClusterAdmin
import CurlHTTP
import Foundation
import Shared
import Testing

/// A small synchronous-looking HTTP helper over the project's libcurl client.
struct API {
    let base: String
    var bearer: String?
    let client = HTTPClient(configuration: .init(threads: 1))

    func call(_ method: HTTPRequest.Method, _ path: String, body: [UInt8]? = nil, type: String = "application/json",
              headers extra: [(String, String)] = []) async throws -> HTTPResponse {
        var headers: HTTPHeaders = [:]
        if let bearer { headers.set("Authorization", "Bearer \(bearer)") }
        if body != nil { headers.set("Content-Type", type) }
        for (k, v) in extra { headers.set(k, v) }
        return try await client.send(HTTPRequest(method: method, url: base + path, headers: headers,
                                                 body: body.map { .bytes($0) } ?? (method == .post ? .bytes([]) : .none), timeout: .seconds(20)))
    }

    func get(_ path: String) async throws -> HTTPResponse { try await call(.get, path) }

    /// The stable error code of a JSON error answer.
    static func errorCode(_ r: HTTPResponse) -> String? {
        guard case .object(let doc)? = try? JSONCoding.decode(JSONValue.self, from: r.body), case .object(let e)? = doc["error"] else { return nil }
        return e["code"]?.stringValue
    }

    static func json(_ r: HTTPResponse) throws -> JSONValue { try JSONCoding.decode(JSONValue.self, from: r.body) }
}

/// Issue 8: the REST API over real HTTP against a real coordinator process.
@Suite("REST API (real HTTP)", .serialized)
struct HTTPAPITests {
    @Test("every endpoint answers with the right status and JSON; bad JSON, bad YAML, unknown ids, wrong types and oversized bodies get their stable error codes")
    func everyEndpoint() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"])
        try h.startWorker("w1")
        let api = API(base: h.httpURL)
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }

        #expect(try await api.get("/healthz").status == 200)
        #expect(try await api.get("/readyz").status == 200)
        let index = try await api.get("/api/v1")
        #expect(index.status == 200 && index.bodyText.contains("metrics?key="))
        let status = try await api.get("/api/v1/status")
        #expect(status.status == 200 && status.headers["content-type"]?.hasPrefix("application/json") == true)

        // Workers.
        let workers = try JSONCoding.decoder.decode([WorkerSummary].self, from: Data(try await api.get("/api/v1/workers").body))
        #expect(workers.map(\.name) == ["w1"])
        #expect(try await api.get("/api/v1/workers/w1").status == 200)
        let noWorker = try await api.get("/api/v1/workers/nope")
        #expect(noWorker.status == 404 && API.errorCode(noWorker) == "not_found")
        let noDrain = try await api.call(.post, "/api/v1/workers/nope/drain")
        #expect(noDrain.status == 404 && API.errorCode(noDrain) == "not_found")

        // Shards: enqueue a synthetic run, then list and show.
        let badEnqueue = try await api.call(.post, "/api/v1/shards", body: Array("{not json".utf8))
        #expect(badEnqueue.status == 400 && API.errorCode(badEnqueue) == "invalid_json")
        let unknownKind = try await api.call(.post, "/api/v1/shards", body: Array(#"{"kind":"nope","count":1,"payload":{}}"#.utf8))
        #expect(unknownKind.status == 400 && API.errorCode(unknownKind) == "bad_request")
        let enq = try await api.call(.post, "/api/v1/shards",
                                     body: Array(#"{"kind":"synthetic","count":1,"payload":{"steps":300,"keys":2,"rate":0}}"#.utf8))
        #expect(enq.status == 201, "\(enq.bodyText)")
        let reply = try JSONCoding.decoder.decode(EnqueueReply.self, from: Data(enq.body))
        let run = try #require(reply.runId)
        let shard = try #require(reply.shardIds.first)
        try await h.waitUntil("the synthetic shard succeeds", timeout: 30) { try h.shards().first?.state == "succeeded" }
        #expect(try await api.get("/api/v1/shards").status == 200)
        #expect(try await api.get("/api/v1/shards?state=succeeded").bodyText.contains("\"id\":\(shard)"))
        #expect(try await api.get("/api/v1/shards/\(shard)").status == 200)
        #expect(API.errorCode(try await api.get("/api/v1/shards/999999")) == "not_found")
        let badId = try await api.get("/api/v1/shards/abc")
        #expect(badId.status == 400 && API.errorCode(badId) == "bad_request")
        #expect(API.errorCode(try await api.get("/api/v1/shards?job=x")) == "bad_request")

        // Metrics: the whole series, a downsampled one that keeps the ends, unknown run and key.
        let all = try JSONCoding.decoder.decode(MetricsReport.self, from: Data(try await api.get("/api/v1/runs/\(run)/metrics").body))
        #expect(all.totalPoints == 600 && all.pointsByKey.count == 2)
        let key = try #require(all.pointsByKey.keys.sorted().first)
        let full = try JSONCoding.decoder.decode(MetricsReport.self, from: Data(try await api.get("/api/v1/runs/\(run)/metrics?key=\(key)").body))
        #expect(full.series?.map(\.step) == Array(0..<300))
        let small = try JSONCoding.decoder.decode(MetricsReport.self, from: Data(try await api.get("/api/v1/runs/\(run)/metrics?key=\(key)&points=20").body))
        let steps = small.series?.map(\.step) ?? []
        #expect(steps.count <= 20 && steps.first == 0 && steps.last == 299 && steps == steps.sorted(), "\(steps)")
        let ranged = try JSONCoding.decoder.decode(MetricsReport.self, from: Data(try await api.get("/api/v1/runs/\(run)/metrics?key=\(key)&from=100&to=109").body))
        #expect(ranged.series?.map(\.step) == Array(100...109))
        #expect(API.errorCode(try await api.get("/api/v1/runs/\(run)/metrics?key=\(key)&points=1")) == "bad_request")
        #expect(API.errorCode(try await api.get("/api/v1/runs/zzzzzzzz/metrics")) == "not_found")

        // Jobs: bad YAML, not JSON, wrong media type, too large, a dry run, a real submit.
        let badYAML = try await api.call(.post, "/api/v1/jobs", body: Array("name: [unclosed".utf8), type: "application/yaml")
        #expect(badYAML.status == 400 && API.errorCode(badYAML) == "invalid_spec", "\(badYAML.bodyText)")
        let missing = try await api.call(.post, "/api/v1/jobs", body: Array("name: x\n".utf8), type: "application/yaml")
        #expect(missing.status == 400 && API.errorCode(missing) == "invalid_spec" && missing.bodyText.contains("project"), "\(missing.bodyText)")
        let notJSON = try await api.call(.post, "/api/v1/jobs", body: Array("name: x".utf8), type: "application/json")
        #expect(notJSON.status == 400 && API.errorCode(notJSON) == "invalid_json")
        let html = try await api.call(.post, "/api/v1/jobs", body: Array("<p>".utf8), type: "text/html")
        #expect(html.status == 415 && API.errorCode(html) == "unsupported_media_type")
        let huge = try await api.call(.post, "/api/v1/jobs", body: [UInt8](repeating: 0x61, count: 2 << 20), type: "application/yaml")
        #expect(huge.status == 413 && API.errorCode(huge) == "payload_too_large")
        let spec = #"{"name": "api-job", "project": "tts-it", "command": ["/bin/sh", "-c", "echo '[Train] step=1 text_loss=1.0 mel_loss=2.0'; sleep 30"], "max_steps": 10}"#
        let dry = try await api.call(.post, "/api/v1/jobs?dry_run=true", body: Array(spec.utf8), type: "application/json")
        #expect(dry.status == 200 && dry.bodyText.contains("\"valid\":true"), "\(dry.bodyText)")
        let submitted = try await api.call(.post, "/api/v1/jobs", body: Array(spec.utf8), type: "application/json")
        #expect(submitted.status == 201, "\(submitted.bodyText)")
        let sub = try JSONCoding.decoder.decode(SubmitReply.self, from: Data(submitted.body))
        let trainRun = try #require(sub.runs.first?.id)
        #expect(try await api.get("/api/v1/jobs").status == 200)
        let job = try await api.get("/api/v1/jobs/\(sub.jobId)")
        #expect(job.status == 200 && job.bodyText.contains("api-job"))
        #expect(API.errorCode(try await api.get("/api/v1/jobs/99999")) == "not_found")

        // Runs, logs, cancel.
        #expect(try await api.get("/api/v1/runs").bodyText.contains(trainRun))
        #expect(try await api.get("/api/v1/runs/\(trainRun)").status == 200)
        #expect(API.errorCode(try await api.get("/api/v1/runs/nope")) == "not_found")
        try await h.waitUntil("the trainer prints", timeout: 30) {
            try h.cli(["logs", trainRun]).out.contains("[Train]")
        }
        let logs = try JSONCoding.decoder.decode(RunLogs.self, from: Data(try await api.get("/api/v1/runs/\(trainRun)/logs?tail=5").body))
        #expect(logs.lines.contains { $0.text.contains("[Train]") })
        #expect(API.errorCode(try await api.get("/api/v1/runs/nope/logs")) == "not_found")
        let cancel = try await api.call(.post, "/api/v1/runs/\(trainRun)/cancel")
        #expect(cancel.status == 200, "\(cancel.bodyText)")
        #expect(API.errorCode(try await api.call(.post, "/api/v1/runs/nope/cancel")) == "not_found")
        // Follow: the stream ends once the cancelled run is over and its lines are sent.
        try await h.waitUntil("the run is cancelled", timeout: 30) {
            try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == trainRun }?.state == "cancelled"
        }
        let followed = try await api.get("/api/v1/runs/\(trainRun)/logs?follow=true")
        #expect(followed.status == 200 && followed.headers["content-type"] == "application/x-ndjson")
        #expect(followed.bodyText.split(separator: "\n").allSatisfy { (try? JSONCoding.decode(RunLogs.Line.self, from: Array($0.utf8))) != nil })

        // Evaluations, alerts, silences.
        #expect(try await api.get("/api/v1/evals").status == 200)
        #expect(API.errorCode(try await api.get("/api/v1/evals/999")) == "not_found")
        #expect(API.errorCode(try await api.call(.post, "/api/v1/evals", body: Array("[]".utf8))) == "invalid_json")
        let noManifest = try await api.call(.post, "/api/v1/evals", body: Array(#"{"checkpoint":"/x.pt","manifests":["/nope.jsonl::ko"],"synthesizer":{"kind":"reference","timeout_seconds":5},"shards":1}"#.utf8))
        #expect(noManifest.status == 400 && noManifest.bodyText.contains("nope.jsonl"), "\(noManifest.bodyText)")
        #expect(try await api.get("/api/v1/alerts?limit=5").status == 200)
        #expect(API.errorCode(try await api.get("/api/v1/alerts?limit=x")) == "bad_request")
        let silence = try await api.call(.post, "/api/v1/silences", body: Array(#"{"runId":"\#(run)","seconds":600,"comment":"maintenance"}"#.utf8))
        #expect(silence.status == 201, "\(silence.bodyText)")
        let sid = try JSONCoding.decoder.decode(SilenceSummary.self, from: Data(silence.body)).id
        #expect(try await api.get("/api/v1/silences").bodyText.contains("maintenance"))
        #expect(try await api.call(.delete, "/api/v1/silences/\(sid)").status == 200)
        #expect(API.errorCode(try await api.call(.delete, "/api/v1/silences/\(sid)")) == "not_found")
        #expect(API.errorCode(try await api.call(.post, "/api/v1/silences", body: Array(#"{"runId":"x","seconds":-1,"comment":""}"#.utf8))) == "bad_request")

        // Unknown endpoints and methods: JSON errors, never an empty body.
        let unknown = try await api.get("/api/v1/nothing")
        #expect(unknown.status == 404 && API.errorCode(unknown) == "not_found")
        let wrongMethod = try await api.call(.put, "/api/v1/runs", body: Array("{}".utf8))
        #expect([404, 405].contains(wrongMethod.status) && API.errorCode(wrongMethod) != nil, "\(wrongMethod.status) \(wrongMethod.bodyText)")
    }

    @Test("beyond loopback the API needs the bearer token (health probes excepted); the raw cluster token is not it; the CLI sends it; no token means no non-loopback API")
    func bearerAuth() async throws {
        let h = try ClusterHarness()
        let tokenFile = h.dir.appendingPathComponent("token").path
        let secret = "s3cret-cluster-token-\(UUID().uuidString)"
        try (secret + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        // Without a token an API on 0.0.0.0 is refused at start, naming the fix.
        let refused = try h.cli(["serve", "--listen", "tcp://127.0.0.1:\(h.port)", "--db", h.dir.appendingPathComponent("x.sqlite").path,
                                 "--http", "0.0.0.0:\(h.httpPort)", "--no-wandb"], connect: false)
        #expect(refused.status != 0 && refused.err.contains("token"), "\(refused.err)")

        try await h.startCoordinator(["--no-wandb", "--token-file", tokenFile, "--http", "0.0.0.0:\(h.httpPort)"])
        let open = API(base: h.httpURL)
        #expect(try await open.get("/healthz").status == 200)
        #expect(try await open.get("/readyz").status == 200)
        var refusedWithoutBearer = 0
        for path in ["/api/v1/runs", "/api/v1/workers", "/metrics", "/"] {
            let r = try await open.get(path)
            if r.status == 401 { refusedWithoutBearer += 1 }
            #expect(r.status == 401 && API.errorCode(r) == "unauthorized", "\(path): \(r.status)")
            #expect(r.headers["www-authenticate"]?.hasPrefix("Bearer") == true)
        }
        var wrong = open
        wrong.bearer = "not-the-token"
        #expect(try await wrong.get("/api/v1/runs").status == 401)
        var raw = open
        raw.bearer = secret
        #expect(try await raw.get("/api/v1/runs").status == 401, "the cluster token itself is not the API token")
        var good = open
        good.bearer = ClusterToken(secret).apiBearer
        #expect(try await good.get("/api/v1/runs").status == 200)
        #expect(try await good.get("/metrics").status == 200)
        // The CLI: refused without the token file, fine with it; the token never shows.
        let without = try h.cli(["runs", "--api", h.httpURL], connect: false)
        #expect(without.status != 0 && without.err.contains("unauthorized"), "\(without.err)")
        let with = try h.cli(["runs", "--api", h.httpURL, "--token-file", tokenFile, "--json"], connect: false)
        #expect(with.status == 0, "\(with.err)")
        let printed = try h.cli(["api-token", "--token-file", tokenFile], connect: false)
        #expect(printed.out.trimmingCharacters(in: .whitespacesAndNewlines) == ClusterToken(secret).apiBearer)
        #expect(!h.log("coordinator").contains(secret) && !with.out.contains(secret) && !without.err.contains(secret))
        ReliabilityFigures.record("security-rest-bearer", [
            "rest_paths_without_bearer_401": "\(refusedWithoutBearer) of 4", "rest_with_wrong_bearer_401": try await wrong.get("/api/v1/runs").status == 401,
            "raw_cluster_token_as_bearer_401": try await raw.get("/api/v1/runs").status == 401,
            "cli_without_token_refused": without.status != 0, "api_beyond_loopback_without_token_refused_at_start": refused.status != 0,
        ])
    }
}
