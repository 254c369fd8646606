@testable import CurlHTTP
import Foundation
import Logging
@testable import Shared
import Synchronization
import Testing
import TestSupport
@testable import WandB

// MARK: - Pure pieces

@Suite("W&B online: settings, retry policy, encodings")
struct WandbOnlineUnitTests {
    @Test("settings come from the usual environment variables; no key means offline")
    func settingsFromEnvironment() {
        let key = OnlineTestKey.make()
        let s = WandbSettings(environment: [
            "WANDB_API_KEY": key, "WANDB_PROJECT": "tts-ko", "WANDB_ENTITY": "lab", "WANDB_RUN_NAME": "gpt-ft",
            "WANDB_RUN_GROUP": "sweep-3", "WANDB_BASE_URL": "http://127.0.0.1:1234//", "WANDB_DIR": "/tmp/wb",
            "WANDB_TAGS": "ko, gpt ,", "WANDB_JOB_TYPE": "train",
        ])
        #expect(s.mode == .online)
        #expect(s.baseURL == "http://127.0.0.1:1234")
        #expect(s.graphQLURL == "http://127.0.0.1:1234/graphql")
        #expect(s.fileStreamURL(entity: "lab", project: "tts-ko", runId: "ab12cd34") == "http://127.0.0.1:1234/files/lab/tts-ko/ab12cd34/file_stream")
        #expect(s.project == "tts-ko" && s.entity == "lab" && s.runName == "gpt-ft" && s.runGroup == "sweep-3")
        #expect(s.directory == "/tmp/wb" && s.tags == ["ko", "gpt"] && s.jobType == "train")
        #expect(s.isUnderBaseURL("http://127.0.0.1:1234/graphql"))
        #expect(!s.isUnderBaseURL("http://127.0.0.1:12345/upload"))

        #expect(WandbSettings(environment: [:]).mode == .offline)
        #expect(WandbSettings(environment: [:]).baseURL == "https://api.wandb.ai")
        #expect(WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_MODE": "offline"]).mode == .offline)
        #expect(WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_MODE": "dryrun"]).mode == .offline)
        #expect(WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_MODE": "disabled"]).mode == .disabled)
        #expect(WandbSettings(environment: ["WANDB_MODE": "online"]).mode == .offline)
        #expect(WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_DISABLED": "true"]).mode == .disabled)
        let over = WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_PROJECT": "a"],
                                 overrides: .init(mode: .offline, project: "b"))
        #expect(over.mode == .offline && over.project == "b")
        #expect(WandbSettings(environment: ["WANDB_MODE": "online"]).modeReason.contains("WANDB_API_KEY"))
    }

    @Test("the API key never shows itself in descriptions, dumps or settings")
    func keyRedaction() throws {
        let raw = OnlineTestKey.make()
        let key = try #require(WandbAPIKey(raw + "\n"))
        var dumped = ""
        dump(key, to: &dumped)
        let settings = WandbSettings(environment: ["WANDB_API_KEY": raw])
        var dumpedSettings = ""
        dump(settings, to: &dumpedSettings)
        for text in ["\(key)", String(describing: key), String(reflecting: key), dumped, "\(settings)",
                     String(reflecting: settings), dumpedSettings] {
            #expect(!text.contains(raw))
        }
        #expect(key.length == 40)
        #expect(key.basicAuthorization == "Basic " + Data("api:\(raw)".utf8).base64EncodedString())
        #expect(key.redact("x \(raw) y \(Data("api:\(raw)".utf8).base64EncodedString())") == "x <redacted> y <redacted>")
        #expect(WandbAPIKey("") == nil && WandbAPIKey("a b") == nil)
        let error = WandbAPIError.unauthorized(operation: "UpsertBucket", status: 401)
        #expect(error.description.contains("WANDB_API_KEY"))
    }

    @Test("retried and final statuses follow wandb-core's lists, with UpsertBucket's 409 exception")
    func statusRules() {
        let most = WandbRetryPolicy.graphQL
        for s in [400, 401, 403, 404, 409, 410, 413, 422, 501] { #expect(!most.shouldRetry(status: s), "\(s)") }
        for s in [408, 425, 429, 499, 500, 502, 503, 504, 599, 0, 600] { #expect(most.shouldRetry(status: s), "\(s)") }
        #expect(!most.shouldRetry(status: 200) && !most.shouldRetry(status: 302))
        let upsert = WandbRetryPolicy.upsertBucket
        #expect(upsert.shouldRetry(status: 409))
        for s in [400, 401, 403, 404, 410, 413, 422, 501] { #expect(!upsert.shouldRetry(status: s), "\(s)") }
        #expect(upsert.shouldRetry(status: 429) && upsert.shouldRetry(status: 500))
        let put = WandbRetryPolicy.fileTransfer
        #expect(put.shouldRetry(status: 429) && put.shouldRetry(status: 500) && put.shouldRetry(status: 503))
        #expect(!put.shouldRetry(status: 501) && !put.shouldRetry(status: 408) && !put.shouldRetry(status: 403))
        #expect(WandbRetryPolicy.fileStream.isSuccess(300) && !WandbRetryPolicy.graphQL.isSuccess(300))
        #expect(WandbRetryPolicy.fileStream.maxRetries == 10085 && most.maxRetries == 20 && put.maxRetries == 20)
        #expect(WandbRetryPolicy.fileStream.attemptTimeout == .seconds(180) && most.attemptTimeout == .seconds(30))
        #expect(put.attemptTimeout == nil)
        // Transport errors: retried unless permanent.
        #expect(most.shouldRetry(error: .transport(code: 7, message: "refused")))
        #expect(most.shouldRetry(error: .transport(code: 28, message: "timeout")))
        #expect(!most.shouldRetry(error: .transport(code: 60, message: "certificate")))
        #expect(!most.shouldRetry(error: .invalidRequest("x")))
    }

    @Test("backoff is 2 s·2^n·U[1,1.25] capped at 60 s; Retry-After (seconds or date) wins")
    func backoffAndRetryAfter() {
        let p = WandbRetryPolicy.fileStream
        #expect(p.backoff(attempt: 0, jitter: 0) == .seconds(2))
        #expect(p.backoff(attempt: 0, jitter: 1) == .seconds(2.5))
        #expect(p.backoff(attempt: 1, jitter: 0) == .seconds(4))
        #expect(p.backoff(attempt: 2, jitter: 0.5) == .seconds(9))
        #expect(p.backoff(attempt: 4, jitter: 1) == .seconds(40))
        #expect(p.backoff(attempt: 5, jitter: 0) == .seconds(60))
        #expect(p.backoff(attempt: 500, jitter: 1) == .seconds(60))
        for attempt in 0..<12 {
            let d = p.delay(attempt: attempt, response: nil)
            let base = min(2.0 * pow(2, Double(attempt)), 60)
            #expect(d >= .seconds(base) && d <= .seconds(min(base * 1.25, 60)), "attempt \(attempt): \(d)")
        }
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        func response(_ status: Int, _ headers: [(String, String)]) -> HTTPResponse {
            HTTPResponse(status: status, headers: HTTPHeaders(headers))
        }
        #expect(p.delay(attempt: 3, response: response(429, [("Retry-After", "2")]), now: now) == .seconds(2))
        #expect(p.delay(attempt: 3, response: response(503, [("retry-after", "1.5")]), now: now) == .seconds(1.5))
        #expect(p.delay(attempt: 0, response: response(429, [("Retry-After", "120")]), now: now) == .seconds(120))
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "GMT")
        f.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        let in30 = f.string(from: now.addingTimeInterval(30))
        #expect(p.delay(attempt: 0, response: response(429, [("Retry-After", in30)]), now: now) == .seconds(30))
        let past = f.string(from: now.addingTimeInterval(-30))
        #expect(p.delay(attempt: 0, response: response(429, [("Retry-After", past)]), now: now) == .zero)
        // Repeated or unparseable: the exponential backoff.
        #expect(p.delay(attempt: 0, response: response(429, [("Retry-After", "1"), ("Retry-After", "2")]), now: now, jitter: 0) == .seconds(2))
        #expect(p.delay(attempt: 1, response: response(500, [("Retry-After", "soon")]), now: now, jitter: 0) == .seconds(4))
        // W&B's rate-limit headers when the quota is spent.
        #expect(p.delay(attempt: 0, response: response(429, [("RateLimit-Remaining", "0"), ("RateLimit-Reset", "7")]), now: now, jitter: 0) == .seconds(7))
        // Injectable waits for tests.
        let fast = p.withWaits(min: .milliseconds(50), max: .milliseconds(500))
        #expect(fast.backoff(attempt: 0, jitter: 0) == .milliseconds(50))
        #expect(fast.backoff(attempt: 10, jitter: 1) == .milliseconds(500))
    }

    @Test("file_stream requests encode exactly the JSON of wandb-core, byte-identically every time")
    func fileStreamEncoding() throws {
        let request = FileStreamRequest(files: [
            "wandb-history.jsonl": (offset: 12, lines: [#"{"_step":12,"loss":0.5,"_timestamp":1.5,"_runtime":2}"#]),
            "output.log": (offset: 3, lines: ["2026-11-25T02:42:23.782288 step \"12\"\tok"]),
        ])
        let text = #"{"files":{"output.log":{"offset":3,"content":["2026-11-25T02:42:23.782288 step \"12\"\tok"]},"wandb-history.jsonl":{"offset":12,"content":["{\"_step\":12,\"loss\":0.5,\"_timestamp\":1.5,\"_runtime\":2}"]}}}"#
        #expect(request.encodedText() == text)
        #expect(request.encoded() == request.encoded())
        let decoded = try JSONDecoder().decode(FileStreamRequest.self, from: JSONEncoder().encode(request))
        #expect(decoded.encoded() == request.encoded())
        #expect(FileStreamRequest.heartbeat.encodedText() == "{}")
        #expect(FileStreamRequest.heartbeat.isHeartbeat)
        let final = FileStreamRequest.final(summaryLine: #"{"loss":0.25}"#, uploaded: ["output.log", "media/audio/a.wav"], exitCode: 0)
        #expect(final.encodedText() == #"{"files":{"wandb-summary.json":{"offset":0,"content":["{\"loss\":0.25}"]}},"uploaded":["output.log","media/audio/a.wav"],"complete":true,"exitcode":0}"#)
        var preempt = FileStreamRequest()
        preempt.preempting = true
        #expect(preempt.encodedText() == #"{"preempting":true}"#)
        // Parses as JSON with the same structure.
        let parsed = try #require(WandbJSON.parse(final.encoded()))
        #expect(parsed.wb("files", "wandb-summary.json", "offset") == .number(0))
        #expect(parsed.wb("exitcode") == .number(0) && parsed.wb("complete") == .bool(true))
        // Splitting under the 10 MiB limit.
        let big = Array(repeating: String(repeating: "x", count: 1 << 20), count: 12)
        let n = FileStreamRequest.linesFitting(big)
        #expect(n == 9)
        #expect(FileStreamRequest(files: ["wandb-history.jsonl": (offset: 0, lines: Array(big.prefix(n)))]).encoded().count < FileStreamRequest.maxRequestBytes)
    }

    @Test("history, events, output and summary lines have the shapes of reference §2.3")
    func lineShapes() throws {
        let row = WandbHistoryRow(step: 7, timestamp: 1_795_574_543.5, runtime: 12.25,
                                  values: [("train/loss", .number(1.5)), ("val/text_loss", .number(.nan)), ("lr", .number(1e-4))])
        let line = FileStreamLines.history(row)
        #expect(line.hasPrefix(#"{"_step":7,"train/loss":1.5,"val/text_loss":NaN,"lr":0.0001,"_timestamp":"#))
        #expect(line.hasSuffix(#","_runtime":12.25}"#))

        let sample = WandbStatsSample(timestamp: 1_795_574_544.5, runtime: 13, values: [
            ("gpu.0.gpu", 97), ("gpu.0.memoryAllocated", 81.5), ("gpu.0.memoryAllocatedBytes", 70_000_000_000),
            ("gpu.0.temp", 71), ("gpu.0.powerWatts", 312.4), ("cpu", 12.5),
        ])
        let events = try #require(WandbJSON.parse(Array(FileStreamLines.events(sample).utf8)))
        #expect(events.wb("system.gpu.0.gpu") == .number(97))
        #expect(events.wb("system.gpu.0.memoryAllocatedBytes") == .number(70_000_000_000))
        #expect(events.wb("system.gpu.0.powerWatts") == .number(312.4))
        #expect(events.wb("system.cpu") == .number(12.5))
        #expect(events.wb("_wandb") == .bool(true))
        #expect(events.wb("_timestamp") == .number(1_795_574_544.5) && events.wb("_runtime") == .number(13))
        #expect(events.wbObject?.keys.filter { !$0.hasPrefix("system.") && !$0.hasPrefix("_") }.isEmpty == true)

        let at = Date(timeIntervalSince1970: 1_795_574_543.782288)
        #expect(FileStreamLines.output("stdout line", at: at) == "2026-11-25T02:42:23.782288 stdout line")
        #expect(FileStreamLines.output("bad", stream: .stderr, at: at) == "ERROR 2026-11-25T02:42:23.782288 bad")
        #expect(FileStreamLines.output("x", at: at, label: "w1") == "2026-11-25T02:42:23.782288 [w1] x")

        var summary = WandbSummary()
        #expect(summary.apply(WandbHistoryRow(step: 100, timestamp: 1, runtime: 10, values: [("val/text_loss", .number(2.0)), ("val/cer", .number(0.3))])) == ["val/text_loss", "val/cer"])
        #expect(summary.apply(WandbHistoryRow(step: 200, timestamp: 2, runtime: 20, values: [("val/text_loss", .number(1.5)), ("val/cer", .number(0.4))])) == ["val/text_loss"])
        summary.apply(WandbHistoryRow(step: 250, timestamp: 3, runtime: 25.5, values: [("train/loss", .number(0.9))]))
        let s = try #require(WandbJSON.parse(Array(summary.jsonLine.utf8)))
        #expect(s.wb("val/best_text_loss") == .number(1.5) && s.wb("val/best_step") == .number(200))
        #expect(s.wb("val/best_cer") == .number(0.3) && s.wb("val/best_cer_step") == .number(100))
        #expect(s.wb("val/text_loss") == .number(1.5) && s.wb("train/loss") == .number(0.9))
        #expect(s.wb("_step") == .number(250) && s.wb("_runtime") == .number(25.5) && s.wb("_wandb", "runtime") == .number(25))
    }

    @Test("the artifact digest reproduces the captured bc955cfc…5624 and the manifest has the captured shape")
    func manifestDigest() throws {
        let m = WandbArtifactManifest(entries: [.init(path: "ckpt.bin", digest: "w80m4H5VXAEW2yN/vAbZnA==", size: 10240, birthArtifactID: "QXJ0aWZhY3Q6MQ==")])
        #expect(m.digest == "bc955cfcd73fb2a475d252a39cab5624")
        #expect(String(decoding: m.jsonBytes(), as: UTF8.self) == #"{"version":1,"storagePolicy":"wandb-storage-policy-v1","storagePolicyConfig":{"storageLayout":"V2"},"contents":{"ckpt.bin":{"digest":"w80m4H5VXAEW2yN/vAbZnA==","size":10240,"birthArtifactID":"QXJ0aWZhY3Q6MQ==","skip_cache":false}}}"#)
        // Entries are sorted by path for the digest.
        let a = WandbArtifactManifest(entries: [.init(path: "b", digest: "2", size: 1), .init(path: "a", digest: "1", size: 1)])
        #expect(a.digest == WandbArtifactManifest.hex(MD5.hash(Array("wandb-artifact-manifest-v1\na:1\nb:2\n".utf8))))
        #expect(WandbAPI.clientID("artifact", "r", "n", "d").count == 128)
        #expect(WandbAPI.clientID("artifact", "r", "n", "d") == WandbAPI.clientID("artifact", "r", "n", "d"))
    }

    @Test("the config is a JSON string mapping every key to {\"value\": …}")
    func configString() throws {
        let config: [String: JSONValue] = ["lr": .number(0.01), "layers": .number(3), "nested": .object(["a": .number(1)]), "name": .string("x\"y")]
        let text = WandbAPI.configString(config)
        #expect(text == #"{"layers":{"value":3},"lr":{"value":0.01},"name":{"value":"x\"y"},"nested":{"value":{"a":1}}}"#)
        #expect(WandbAPI.configYAML(["lr": .number(0.01)]) == "\"lr\":\n  value: 0.01\n")
    }
}

// MARK: - Against the loopback mock server

@Suite("W&B online client against the mock server")
struct WandbOnlineTests {
    static let fast = WandbRetryPolicies.standard.withWaits(min: .milliseconds(50), max: .milliseconds(500))

    @Test("a whole run goes over the wire as the real SDK sends it: config, history, summary, events, output, media, artifact, finish")
    func onlineFlow() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let key = OnlineTestKey.make()
        let logs = OnlineLogSink()
        let settings = WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_BASE_URL": server.baseURL,
                                                   "WANDB_PROJECT": "p", "WANDB_ENTITY": "mockent"])
        let api = try WandbAPI(settings: settings, client: HTTPClient(), policies: Self.fast, logger: logs.logger)
        let dir = try OnlineTempDir()

        // Run creation with every hyperparameter in the config.
        let runId = WandbRunInfo.newRunId()
        let info = WandbRunInfo(
            runId: runId, project: "p", entity: "mockent", displayName: "ko-gpt-ft-1", group: "sweep-a", jobType: "train",
            tags: ["korean", "gpt"], notes: "hello", host: "gpu-box-1",
            config: ["lr": .number(0.0001), "batch_size": .number(16), "preset": .string("base"),
                     "gpu_class": .string("A100-80GB"), "nested": .object(["warmup": .number(500)])],
            startTime: Date())
        let handle = try await api.upsertRun(info)
        #expect(handle.runId == runId && handle.entity == "mockent" && handle.project == "p")
        #expect(handle.storageId == "QnVja2V0OjE=" && handle.historyLineCount == 0)
        let viewer = try await api.viewer()
        #expect(viewer.entity == "mockent")

        // Media: an audio sample logged at step 100.
        let wavPath = dir.path + "/sample.wav"
        try Data((0..<3244).map { UInt8(truncatingIfNeeded: $0 &* 7) }).write(to: URL(fileURLWithPath: wavPath))
        let audio = try WandbMedia.audio(key: "val/sample", step: 100, localPath: wavPath, caption: "안녕하세요")
        #expect(audio.file.runPath.hasPrefix("media/audio/val_sample_100_") && audio.file.runPath.hasSuffix(".wav"))

        // 200 history rows, streamed in batches with line offsets, plus summary, events, output.
        let t0 = 1_795_574_543.0
        var summary = WandbSummary()
        var historyLines: [String] = []
        var summaryLines: [String] = []
        for step in 0..<200 {
            var values: [(key: String, value: WandbValue)] = [("train/loss", .number(3.0 / Double(step + 1))), ("lr", .number(1e-4))]
            if step % 50 == 49 {
                values.append(("val/text_loss", .number(2.0 - Double(step) / 200)))
                values.append(("val/cer", .number(0.5 - Double(step) / 1000)))
            }
            if step == 100 { values.append(("val/sample", audio.value)) }
            let row = WandbHistoryRow(step: Int64(step), timestamp: t0 + Double(step) * 0.5, runtime: Double(step) * 0.5, values: values)
            historyLines.append(FileStreamLines.history(row))
            summary.apply(row)
            summaryLines.append(summary.jsonLine)
        }
        var outputLines: [String] = []
        for batch in 0..<4 {
            let lo = batch * 50
            let sample = WandbStatsSample(timestamp: t0 + Double(lo), runtime: Double(lo), values: [
                ("gpu.0.gpu", 97), ("gpu.0.memoryAllocated", 81.5), ("gpu.0.memoryAllocatedBytes", 69_793_218_560),
                ("gpu.0.temp", 71), ("gpu.0.powerWatts", 312.5), ("gpu.1.gpu", 95), ("cpu", 12.5),
            ])
            let out = [FileStreamLines.output("step \(lo) ok", at: Date(timeIntervalSince1970: t0 + Double(lo))),
                       FileStreamLines.output("warning \(lo)", stream: .stderr, at: Date(timeIntervalSince1970: t0 + Double(lo)))]
            let request = FileStreamRequest(files: [
                FileStreamRequest.historyFile: (offset: lo, lines: Array(historyLines[lo..<(lo + 50)])),
                FileStreamRequest.summaryFile: (offset: 0, lines: [summaryLines[lo + 49]]),
                FileStreamRequest.eventsFile: (offset: batch, lines: [FileStreamLines.events(sample)]),
                FileStreamRequest.outputFile: (offset: outputLines.count, lines: out),
            ])
            outputLines += out
            let reply = try await api.fileStream(handle, request)
            #expect(!reply.stopped)
        }
        try await api.heartbeat(handle)

        // Run files: the media file and a generated config.yaml.
        var uploaded = try await api.uploadRunFiles(handle, [audio.file])
        uploaded += try await api.uploadRunFile(handle, runPath: "config.yaml", bytes: Array(WandbAPI.configYAML(info.config).utf8))
        #expect(uploaded == [audio.file.runPath, "config.yaml"])

        // The checkpoint as a `model` artifact with `latest` and `best`.
        let ckpt = dir.path + "/gpt.pth"
        let ckptBytes = (0..<10240).map { UInt8(truncatingIfNeeded: $0 &* 131 &+ 7) }
        try Data(ckptBytes).write(to: URL(fileURLWithPath: ckpt))
        let artifact = WandbArtifactUpload(name: "model-\(runId)", type: "model", aliases: ["best"],
                                           metadata: ["step": .number(199), "val/text_loss": .number(1.005)],
                                           files: [WandbRunFile(runPath: "gpt.pth", localPath: ckpt)], historyStep: 199)
        let logged = try await api.logArtifact(handle, artifact)
        #expect(!logged.deduplicated && logged.uploadedFiles == ["gpt.pth"])
        let again = try await api.logArtifact(handle, artifact)
        #expect(again.deduplicated && again.artifactId == logged.artifactId && again.digest == logged.digest)

        // Finish.
        try await api.fileStream(handle, .final(summaryLine: summary.jsonLine, uploaded: uploaded, exitCode: 0))

        // ---- What the server saw, field by field against the reference shapes. ----
        let records = try server.records().filter { !($0.wb("path")?.stringValue ?? "").hasPrefix("/_") }
        let graphql = records.filter { $0.wb("path")?.stringValue == "/graphql" }
        let streams = records.filter { ($0.wb("path")?.stringValue ?? "").hasSuffix("/file_stream") }
        let puts = records.filter { $0.wb("method")?.stringValue == "PUT" }
        #expect(records.allSatisfy { $0.wb("status") == .number(200) })

        // Headers: Basic api:<key> on the API, nothing on signed URLs.
        for r in graphql + streams {
            #expect(r.wb("auth", "present") == .bool(true) && r.wb("auth", "valid") == .bool(true))
            #expect(r.wb("headers", "Content-Type")?.stringValue == "application/json")
            #expect(r.wb("headers", "User-Agent")?.stringValue == "tts-cluster/\(TTSCluster.version)")
        }
        for r in puts {
            #expect(r.wb("auth", "present") == .bool(false))
            #expect(!r.wbHeaderNames.contains("user-agent") && !r.wbHeaderNames.contains("content-type"))
        }

        // UpsertBucket: the captured variable set, config as a JSON string of {"value": …}.
        let upsert = try #require(graphql.first { $0.wb("operation")?.stringValue == "UpsertBucket" })
        let vars = try #require(upsert.wb("json", "variables")?.wbObject)
        #expect(Set(vars.keys) == Set(WandbGraphQLDocument.upsertBucketVariables))
        #expect(Set(vars.keys) == ["id", "name", "project", "entity", "groupName", "description", "displayName", "notes",
                                   "commit", "config", "host", "debug", "program", "repo", "jobType", "state", "sweep",
                                   "tags", "summaryMetrics"])
        #expect(vars["id"] == .null && vars["name"] == .string(runId) && vars["project"] == .string("p"))
        #expect(vars["entity"] == .string("mockent") && vars["groupName"] == .string("sweep-a"))
        #expect(vars["displayName"] == .string("ko-gpt-ft-1") && vars["notes"] == .string("hello"))
        #expect(vars["host"] == .string("gpu-box-1") && vars["jobType"] == .string("train"))
        #expect(vars["tags"] == .array([.string("korean"), .string("gpt")]))
        #expect(vars["summaryMetrics"] == .null && vars["description"] == .null && vars["state"] == .null)
        let config = try #require(WandbJSON.parse(Array((vars["config"]?.stringValue ?? "").utf8))?.wbObject)
        #expect(Set(config.keys) == Set(info.config.keys))
        for (k, v) in info.config { #expect(config[k] == .object(["value": v]), "\(k)") }
        let upsertQuery = upsert.wb("json", "query")?.stringValue ?? ""
        #expect(upsertQuery.contains("mutation UpsertBucket(") && upsertQuery.contains("modelName: $project")
            && upsertQuery.contains("entityName: $entity") && upsertQuery.contains("historyLineCount"))
        #expect(upsert.wb("json", "operationName") == .string("UpsertBucket"))
        #expect(Set(upsert.wb("json")?.wbObject.map { Array($0.keys) } ?? []) == ["query", "variables", "operationName"])
        // Without variables genqlient leaves the member out (captured from wandb-core's Viewer).
        let viewerBody = try #require(graphql.first { $0.wb("operation")?.stringValue == "Viewer" }?.wb("json")?.wbObject)
        #expect(Set(viewerBody.keys) == ["query", "operationName"])

        // file_stream: history exactly as sent, by line index; summary whole at 0; events; output.
        let history = try await server.getJSON("/_files/\(runId)/wandb-history.jsonl").wbArray ?? []
        #expect(history.map(\.stringValue) == historyLines.map(Optional.some))
        for (i, line) in history.enumerated() {
            let row = try #require(WandbJSON.parse(Array((line.stringValue ?? "").utf8)))
            #expect(row.wb("_step") == .number(Double(i)) && row.wb("_runtime") != nil && row.wb("_timestamp") != nil)
        }
        let row100 = try #require(WandbJSON.parse(Array(historyLines[100].utf8)))
        #expect(row100.wb("val/sample", "_type") == .string("audio-file"))
        #expect(row100.wb("val/sample", "path") == .string(audio.file.runPath))
        #expect(row100.wb("val/sample", "size") == .number(3244) && row100.wb("val/sample", "caption") == .string("안녕하세요"))
        let summaryFile = try await server.getJSON("/_files/\(runId)/wandb-summary.json").wbArray ?? []
        #expect(summaryFile.count == 1)
        let finalSummary = try #require(WandbJSON.parse(Array((summaryFile.first?.stringValue ?? "").utf8)))
        #expect(finalSummary.wb("val/best_text_loss") == .number(2.0 - 199.0 / 200) && finalSummary.wb("val/best_step") == .number(199))
        #expect(finalSummary.wb("val/best_cer") == .number(0.5 - 199.0 / 1000) && finalSummary.wb("_step") == .number(199))
        let events = try await server.getJSON("/_files/\(runId)/wandb-events.jsonl").wbArray ?? []
        #expect(events.count == 4)
        let ev = try #require(WandbJSON.parse(Array((events.first?.stringValue ?? "").utf8)))
        for k in ["system.gpu.0.gpu", "system.gpu.0.memoryAllocated", "system.gpu.0.memoryAllocatedBytes", "system.gpu.0.temp",
                  "system.gpu.0.powerWatts", "system.gpu.1.gpu", "system.cpu", "_timestamp", "_runtime"] {
            #expect(ev.wb(k) != nil, "\(k)")
        }
        #expect(ev.wb("_wandb") == .bool(true))
        let output = try await server.getJSON("/_files/\(runId)/output.log").wbArray ?? []
        #expect(output.map(\.stringValue) == outputLines.map(Optional.some))
        let outputPattern = /^(ERROR )?\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6} .+$/
        #expect(outputLines.allSatisfy { $0.wholeMatch(of: outputPattern) != nil })
        #expect(streams.first?.wb("json", "files", "wandb-history.jsonl", "offset") == .number(0))
        #expect(streams.dropFirst().first?.wb("json", "files", "wandb-history.jsonl", "offset") == .number(50))
        // The heartbeat: `{}`, 2 bytes.
        #expect(streams.contains { $0.wb("body_len") == .number(2) && $0.wb("json") == .object([:]) })
        // The final request: summary, uploaded, complete, exitcode — nothing else.
        let last = try #require(streams.last?.wb("json")?.wbObject)
        #expect(Set(last.keys) == ["files", "uploaded", "complete", "exitcode"])
        #expect(last["complete"] == .bool(true) && last["exitcode"] == .number(0))
        #expect(last["uploaded"] == .array(uploaded.map { .string($0) }))
        #expect(last["files"]?.wbObject.map { Set($0.keys) } == [FileStreamRequest.summaryFile])
        let state = try await server.getJSON("/_state")
        #expect(state.wb("runs", runId, "complete") == .bool(true) && state.wb("runs", runId, "exitcode") == .number(0))

        // CreateRunFiles + PUT with exactly the upload headers.
        let runFiles = graphql.filter { $0.wb("operation")?.stringValue == "CreateRunFiles" }
        #expect(runFiles.count == 2)
        #expect(runFiles.first?.wb("json", "variables")?.wbObject == [
            "entity": .string("mockent"), "project": .string("p"), "run": .string(runId), "files": .array([.string(audio.file.runPath)]),
        ])
        let mediaPut = try #require(puts.first { ($0.wb("path")?.stringValue ?? "").hasSuffix(audio.file.runPath) })
        #expect(Set(mediaPut.wbHeaderNames) == ["host", "content-length", "x-mock-upload"])
        #expect(mediaPut.wb("headers", "X-Mock-Upload") == .string("run-file"))
        #expect(mediaPut.wb("body_len") == .number(3244))
        #expect(mediaPut.wb("body_sha256")?.stringValue == SHA256.hash(Array(try Data(contentsOf: URL(fileURLWithPath: wavPath)))).hexString)

        // The artifact, in wandb-core's order, with the 0.31 shapes.
        let artifactOps = records.compactMap { r -> String? in
            if r.wb("method")?.stringValue == "PUT" {
                let path = r.wb("path")?.stringValue ?? ""
                return path.contains("/upload/artifacts/") ? "PUT file" : path.contains("/upload/manifests/") ? "PUT manifest" : nil
            }
            let op = r.wb("operation")?.stringValue ?? ""
            return op.contains("Artifact") ? op : nil
        }
        #expect(artifactOps == ["CreateArtifact", "CreateArtifactManifest", "CreateArtifactFiles", "PUT file",
                                "CreateArtifactManifest", "PUT manifest", "CommitArtifact", "CreateArtifact"])
        let create = try #require(graphql.first { $0.wb("operation")?.stringValue == "CreateArtifact" }?.wb("json", "variables", "input")?.wbObject)
        #expect(Set(create.keys) == ["aliases", "artifactCollectionName", "artifactCollectionNames", "artifactTypeName", "clientID",
                                     "sequenceClientID", "clientMutationId", "description", "digest", "digestAlgorithm",
                                     "distributedID", "enableDigestDeduplication", "entityName", "historyStep", "labels",
                                     "metadata", "projectName", "runName", "storageRegion", "ttlDurationSeconds"])
        #expect(create["aliases"] == .array([
            .object(["alias": .string("latest"), "artifactCollectionName": .string("model-\(runId)")]),
            .object(["alias": .string("best"), "artifactCollectionName": .string("model-\(runId)")]),
        ]))
        #expect(create["artifactTypeName"] == .string("model") && create["artifactCollectionName"] == .string("model-\(runId)"))
        #expect(create["digestAlgorithm"] == .string("MANIFEST_MD5") && create["enableDigestDeduplication"] == .bool(true))
        #expect(create["clientID"]?.stringValue?.count == 128 && create["sequenceClientID"]?.stringValue?.count == 128)
        #expect(create["historyStep"] == .number(199) && create["runName"] == .string(runId))
        #expect(create["entityName"] == .string("mockent") && create["projectName"] == .string("p"))
        #expect(create["metadata"] == .string(#"{"step":199,"val/text_loss":1.005}"#))
        let fileB64 = WandbArtifactManifest.base64(MD5.hash(ckptBytes))
        #expect(create["digest"] == .string(WandbArtifactManifest(entries: [.init(path: "gpt.pth", digest: fileB64, size: 10240)]).digest))
        #expect(create["digest"]?.stringValue == logged.digest)

        let manifests = graphql.filter { $0.wb("operation")?.stringValue == "CreateArtifactManifest" }.compactMap { $0.wb("json", "variables")?.wbObject }
        #expect(manifests.count == 2)
        #expect(manifests.first?["digest"] == .string("") && manifests.first?["includeUpload"] == .bool(false))
        #expect(manifests.first?["manifestType"] == .string("FULL") && manifests.first?["name"] == .string("wandb_manifest.json"))
        #expect(manifests.first?["artifactID"] == .string(logged.artifactId) && manifests.first?["runName"] == .string(runId))
        #expect(manifests.last?["includeUpload"] == .bool(true))

        let filesInput = try #require(graphql.first { $0.wb("operation")?.stringValue == "CreateArtifactFiles" }?.wb("json", "variables", "input")?.wbObject)
        #expect(filesInput["storageLayout"] == .string("V2"))
        #expect(Set(filesInput.keys) == ["artifactFiles", "storageLayout", "clientMutationId", "cloudRegionID"])
        let spec = try #require(filesInput["artifactFiles"]?.wbArray?.first?.wbObject)
        #expect(Set(spec.keys) == ["artifactID", "artifactManifestID", "md5", "mimetype", "name", "uploadPartsInput"])
        #expect(spec["md5"] == .string(fileB64) && spec["name"] == .string("gpt.pth") && spec["mimetype"] == .null)
        #expect(spec["uploadPartsInput"] == .null && spec["artifactID"] == .string(logged.artifactId))

        let filePut = try #require(puts.first { ($0.wb("path")?.stringValue ?? "").contains("/upload/artifacts/") })
        #expect(Set(filePut.wbHeaderNames) == ["host", "content-length", "content-md5", "x-mock-upload"])
        #expect(filePut.wb("headers", "Content-MD5") == .string(fileB64) && filePut.wb("body_len") == .number(10240))
        let manifestPut = try #require(puts.first { ($0.wb("path")?.stringValue ?? "").contains("/upload/manifests/") })
        let manifestPath = String((manifestPut.wb("path")?.stringValue ?? "").dropFirst("/upload/".count))
        let manifestBytes = try await server.get("/_upload/" + manifestPath)
        #expect(manifests.last?["digest"] == .string(WandbArtifactManifest.base64(MD5.hash(manifestBytes))))
        let manifestJSON = try #require(WandbJSON.parse(manifestBytes))
        #expect(manifestJSON.wb("version") == .number(1) && manifestJSON.wb("storagePolicy") == .string("wandb-storage-policy-v1"))
        #expect(manifestJSON.wb("storagePolicyConfig", "storageLayout") == .string("V2"))
        #expect(manifestJSON.wb("contents", "gpt.pth", "digest") == .string(fileB64))
        #expect(manifestJSON.wb("contents", "gpt.pth", "size") == .number(10240))
        #expect(manifestJSON.wb("contents", "gpt.pth", "birthArtifactID") == .string(logged.artifactId))
        #expect(state.wb("artifacts", logged.artifactId, "state") == .string("COMMITTED"))

        // The key appears nowhere: not in the record, the server's output, our logs or errors.
        OnlineTestKey.expectAbsent(key, server: server, logs: logs)
    }

    @Test("after 500s, a 429 with Retry-After, dropped replies and refused connections, every history line is there exactly once, in order")
    func failureScenario() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let key = OnlineTestKey.make()
        let logs = OnlineLogSink()
        var policies = Self.fast
        policies.fileStream.maxRetries = 3 // so the refusal also exhausts a call and the outbox retries it
        let settings = WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_BASE_URL": server.baseURL, "WANDB_PROJECT": "p"])
        let api = try WandbAPI(settings: settings, client: HTTPClient(), policies: policies, logger: logs.logger)
        let runId = WandbRunInfo.newRunId()
        let handle = try await api.upsertRun(WandbRunInfo(runId: runId, project: "p", displayName: "faults", host: "h",
                                                          config: ["lr": .number(0.001)], startTime: Date()))
        #expect(handle.entity == "mockent") // read back: the client sent entity null

        let total = 240
        let batch = 20
        let t0 = 1_795_574_543.0
        let lines = (0..<total).map { step in
            FileStreamLines.history(WandbHistoryRow(step: Int64(step), timestamp: t0 + Double(step), runtime: Double(step),
                                                    values: [("train/loss", .number(1.0 / Double(step + 1)))]))
        }
        let faults: [Int: String] = [
            2: #"{"fail": [{"status": 500, "count": 3, "path": "file_stream"}]}"#,
            4: #"{"fail": [{"status": 429, "retry_after": 2, "count": 1, "path": "file_stream"}]}"#,
            6: #"{"refuse_seconds": 2.5}"#,
            8: #"{"fail": [{"status": 500, "count": 1, "after_processing": true, "path": "file_stream"}]}"#,
            10: #"{"fail": [{"close": true, "count": 1, "after_processing": true, "path": "file_stream"}, {"status": 503, "count": 2, "path": "file_stream"}]}"#,
        ]
        var outboxRetries = 0
        var offset = 0 // the outbox's durable state: lines already accepted
        var batchIndex = 0
        while offset < total {
            if let f = faults[batchIndex] { try await server.control(f) }
            // The outbox builds the request once and re-sends this very value until it succeeds.
            let request = FileStreamRequest(files: [FileStreamRequest.historyFile: (offset: offset, lines: Array(lines[offset..<min(total, offset + batch)]))])
            while true {
                do {
                    try await api.fileStream(handle, request)
                    break
                } catch {
                    #expect(error.isTransient, "\(error)")
                    #expect(!error.description.contains(key))
                    outboxRetries += 1
                    try await Task.sleep(for: .milliseconds(300))
                }
            }
            offset += request.files[FileStreamRequest.historyFile]!.lines.count
            batchIndex += 1
        }
        try await api.fileStream(handle, .final(summaryLine: #"{"_step":239}"#, uploaded: [], exitCode: 0))

        // Every line index 0..<total exactly once, in order, with the right content.
        let stored = try await server.getJSON("/_files/\(runId)/wandb-history.jsonl").wbArray ?? []
        #expect(stored.count == total)
        #expect(stored.map(\.stringValue) == lines.map(Optional.some))
        for (i, line) in stored.enumerated() {
            #expect(WandbJSON.parse(Array((line.stringValue ?? "").utf8))?.wb("_step") == .number(Double(i)))
        }

        // Retries re-sent byte-identical bodies; every fault was met; waits were honoured.
        let streams = try server.records().filter { ($0.wb("path")?.stringValue ?? "").hasSuffix("/file_stream") }
        var bodiesByOffset: [Int: Set<String>] = [:]
        for r in streams {
            guard let o = r.wb("json", "files", FileStreamRequest.historyFile, "offset")?.doubleValue else { continue }
            bodiesByOffset[Int(o), default: []].insert(r.wb("body_sha256")?.stringValue ?? "")
        }
        #expect(bodiesByOffset.keys.sorted() == Array(stride(from: 0, to: total, by: batch)))
        #expect(bodiesByOffset.values.allSatisfy { $0.count == 1 }, "a retry changed the body")
        let statuses = streams.compactMap { $0.wb("status")?.doubleValue }.map { Int($0) }
        #expect(statuses.filter { $0 == 500 }.count == 4)
        #expect(statuses.filter { $0 == 429 }.count == 1)
        #expect(statuses.filter { $0 == 503 }.count == 2)
        #expect(statuses.filter { $0 == 0 }.count == 1) // the dropped reply
        let i429 = try #require(streams.firstIndex { $0.wb("status") == .number(429) })
        let wait429 = (streams[i429 + 1].wb("time")?.doubleValue ?? 0) - (streams[i429].wb("time")?.doubleValue ?? 0)
        #expect(wait429 >= 1.9, "Retry-After: 2 honoured (waited \(wait429) s)")
        let times = streams.compactMap { $0.wb("time")?.doubleValue }
        let longestGap = zip(times.dropFirst(), times).map { $0 - $1 }.max() ?? 0
        #expect(longestGap >= 2.3, "the refusal kept requests out for its duration (\(longestGap) s)")
        #expect(outboxRetries >= 1, "the refusal outlasted a call's retries, and the outbox re-sent the same request")
        #expect(logs.messages.contains { $0.contains("file_stream") && $0.contains("retry") })
        OnlineTestKey.expectAbsent(key, server: server, logs: logs)
    }

    @Test("a rejected key is reported once, loudly, without the key, and not retried")
    func rejectedKey() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let key = OnlineTestKey.make()
        let logs = OnlineLogSink()
        let settings = WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_BASE_URL": server.baseURL])
        let api = try WandbAPI(settings: settings, client: HTTPClient(), policies: Self.fast, logger: logs.logger)
        let info = WandbRunInfo(runId: WandbRunInfo.newRunId(), project: "p", displayName: "x", host: "h", startTime: Date())
        try await server.control(#"{"fail": [{"status": 401, "count": 1}, {"status": 403, "count": 1}]}"#)
        for expected in [401, 403] {
            do {
                _ = try await api.upsertRun(info)
                Issue.record("expected unauthorized")
            } catch {
                #expect(error == .unauthorized(operation: "UpsertBucket", status: expected))
                #expect(error.description.contains("WANDB_API_KEY") && !error.description.contains(key))
                #expect(!error.isTransient)
            }
        }
        #expect(try server.records().filter { $0.wb("operation")?.stringValue == "UpsertBucket" }.count == 2)
        let loud = logs.entries.filter { $0.level == .critical }
        #expect(loud.count == 1, "reported once")
        #expect(loud.first?.message.contains("WANDB_API_KEY") == true)
        // With the key accepted again, the run goes through.
        let handle = try await api.upsertRun(info)
        #expect(handle.entity == "mockent")
        OnlineTestKey.expectAbsent(key, server: server, logs: logs)
    }

    @Test("status rules on the wire: UpsertBucket retries 409, file_stream gives up on 404, GraphQL errors are final")
    func statusRulesOnTheWire() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let key = OnlineTestKey.make()
        let logs = OnlineLogSink()
        let settings = WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_BASE_URL": server.baseURL])
        let api = try WandbAPI(settings: settings, client: HTTPClient(), policies: Self.fast, logger: logs.logger)
        let info = WandbRunInfo(runId: WandbRunInfo.newRunId(), project: "p", displayName: "x", host: "h", startTime: Date())

        try await server.control(#"{"fail": [{"status": 409, "count": 2, "path": "graphql"}]}"#)
        let handle = try await api.upsertRun(info)
        #expect(try server.records().filter { $0.wb("operation")?.stringValue == "UpsertBucket" }.count == 3)

        try await server.control(#"{"fail": [{"status": 404, "count": 1, "path": "file_stream"}]}"#)
        do {
            try await api.fileStream(handle, FileStreamRequest(files: ["wandb-history.jsonl": (offset: 0, lines: ["{}"])]))
            Issue.record("expected rejected")
        } catch {
            guard case .rejected(_, 404, _) = error else { Issue.record("got \(error)"); return }
        }

        try await server.control(#"{"fail": [{"status": 200, "body": {"errors": [{"message": "a"}, {"message": "b"}], "data": null}, "path": "graphql"}]}"#)
        do {
            try await api.updateConfig(handle, config: ["lr": .number(1)])
            Issue.record("expected GraphQL errors")
        } catch {
            #expect(error == .graphQL(operation: "UpsertBucket", message: "a; b"))
        }
        // The debounced config update sends only name/project/entity/config.
        try await api.updateConfig(handle, config: ["lr": .number(1)])
        let last = try #require(try server.records().last { $0.wb("operation")?.stringValue == "UpsertBucket" }?.wb("json", "variables")?.wbObject)
        #expect(last.filter { $0.value != .null }.keys.sorted() == ["config", "entity", "name", "project"])
        #expect(last["config"] == .string(#"{"lr":{"value":1}}"#))

        // Offline settings refuse to build an online client.
        #expect(throws: WandbAPIError.self) { _ = try WandbAPI(settings: WandbSettings(environment: [:]), client: HTTPClient()) }
        OnlineTestKey.expectAbsent(key, server: server, logs: logs)
    }

    @Test("a checkpoint above the multipart threshold goes up in parts with MD5s and ETags")
    func multipartArtifact() async throws {
        let server = try await MockWandbServer.start()
        defer { server.stop() }
        let key = OnlineTestKey.make()
        let logs = OnlineLogSink()
        let settings = WandbSettings(environment: ["WANDB_API_KEY": key, "WANDB_BASE_URL": server.baseURL])
        let api = try WandbAPI(settings: settings, client: HTTPClient(), policies: Self.fast,
                               artifactOptions: .init(multipartThreshold: 1 << 20, partSize: 256 << 10), logger: logs.logger)
        let handle = try await api.upsertRun(WandbRunInfo(runId: WandbRunInfo.newRunId(), project: "p", displayName: "mp", host: "h", startTime: Date()))
        let dir = try OnlineTempDir()
        let big = (0..<((1 << 20) + 12345)).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
        let small = Array("tokenizer".utf8)
        try Data(big).write(to: URL(fileURLWithPath: dir.path + "/gpt.pth"))
        try Data(small).write(to: URL(fileURLWithPath: dir.path + "/bpe.model"))
        let result = try await api.logArtifact(handle, WandbArtifactUpload(
            name: "model-\(handle.runId)", type: "model", aliases: ["latest"], metadata: [:],
            files: [WandbRunFile(runPath: "gpt.pth", localPath: dir.path + "/gpt.pth"),
                    WandbRunFile(runPath: "bpe.model", localPath: dir.path + "/bpe.model")], historyStep: 10))
        #expect(result.uploadedFiles.sorted() == ["bpe.model", "gpt.pth"])

        let records = try server.records()
        let spec = records.first { $0.wb("operation")?.stringValue == "CreateArtifactFiles" }?.wb("json", "variables", "input", "artifactFiles")?.wbArray ?? []
        let bigSpec = try #require(spec.first { $0.wb("name") == .string("gpt.pth") })
        let parts = bigSpec.wb("uploadPartsInput")?.wbArray ?? []
        #expect(parts.count == 5)
        #expect(parts.first?.wb("hexMD5") == .string(WandbArtifactManifest.hex(MD5.hash(big[0..<(256 << 10)]))))
        #expect(spec.first { $0.wb("name") == .string("bpe.model") }?.wb("uploadPartsInput") == .null)
        let partPuts = records.filter { ($0.wb("path")?.stringValue ?? "").contains("/upload/parts/") }
        #expect(partPuts.count == 5 && partPuts.allSatisfy { $0.wb("status") == .number(200) })
        #expect(Set(partPuts[0].wbHeaderNames) == ["host", "content-length", "content-md5", "content-type"])
        let complete = try #require(records.first { $0.wb("operation")?.stringValue == "CompleteMultipartUploadArtifact" }?.wb("json", "variables")?.wbObject)
        #expect(complete["completeMultipartAction"] == .string("Complete"))
        #expect(complete["completedParts"]?.wbArray?.count == 5)
        let state = try await server.getJSON("/_state")
        let storage = "/upload/wandb_artifacts/" + WandbArtifactManifest.hex(MD5.hash(big))
        #expect(state.wb("uploads", storage, "sha256")?.stringValue == SHA256.hash(big).hexString)
        #expect(state.wb("artifacts", result.artifactId, "state") == .string("COMMITTED"))

        // Another artifact holding bytes the server already has: uploadUrl null, so no PUT of
        // the file; the manifest still goes up and names the artifact that stored the bytes.
        let before = try server.records().count
        let copy = try await api.logArtifact(handle, WandbArtifactUpload(
            name: "tokenizer-\(handle.runId)", type: "tokenizer", aliases: [], metadata: [:],
            files: [WandbRunFile(runPath: "bpe.model", localPath: dir.path + "/bpe.model")], historyStep: 11))
        #expect(!copy.deduplicated && copy.uploadedFiles.isEmpty && copy.artifactId != result.artifactId)
        let later = try server.records().dropFirst(before)
        let laterPaths = later.compactMap { $0.wb("method")?.stringValue == "PUT" ? $0.wb("path")?.stringValue : nil }
        #expect(laterPaths.count == 1 && laterPaths.allSatisfy { $0.contains("/upload/manifests/") })
        let manifestPath = String((laterPaths.first ?? "").dropFirst("/upload/".count))
        let manifest = try #require(WandbJSON.parse(try await server.get("/_upload/" + manifestPath)))
        #expect(manifest.wb("contents", "bpe.model", "birthArtifactID") == .string(result.artifactId))
        #expect(later.contains { $0.wb("operation")?.stringValue == "CommitArtifact" })
        OnlineTestKey.expectAbsent(key, server: server, logs: logs)
    }
}

// MARK: - Support

enum OnlineTestKey {
    /// A fresh 40-character key, so no test output could contain it by accident.
    static func make() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String(SecureRandom.bytes(40).map { alphabet[Int($0) % alphabet.count] })
    }

    static func expectAbsent(_ key: String, server: MockWandbServer, logs: OnlineLogSink,
                             sourceLocation: SourceLocation = #_sourceLocation) {
        let b64 = Data("api:\(key)".utf8).base64EncodedString()
        for (what, text) in [("record", server.recordText()), ("server stderr", server.stderrText()), ("logs", logs.messages.joined(separator: "\n"))] {
            #expect(!text.contains(key) && !text.contains(b64), "the API key leaked into the \(what)", sourceLocation: sourceLocation)
        }
        #expect(!server.recordText().isEmpty, sourceLocation: sourceLocation)
    }
}

/// Collects log lines of one ``WandbAPI``.
final class OnlineLogSink: Sendable {
    struct Entry: Sendable {
        var level: Logger.Level
        var message: String
    }

    private let store = Mutex<[Entry]>([])

    var entries: [Entry] { store.withLock { $0 } }
    var messages: [String] { entries.map(\.message) }

    var logger: Logger {
        var logger = Logger(label: "test.wandb") { _ in SinkHandler(sink: self) }
        logger.logLevel = .trace
        return logger
    }

    func append(_ e: Entry) { store.withLock { $0.append(e) } }

    struct SinkHandler: LogHandler {
        let sink: OnlineLogSink
        var metadata: Logger.Metadata = [:]
        var metadataProvider: Logger.MetadataProvider?
        var logLevel: Logger.Level = .trace

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            sink.append(Entry(level: event.level, message: event.message.description))
        }
    }
}
