import CurlHTTP
import Foundation
import Logging
import Shared
import Synchronization

/// A run as the server knows it, from `UpsertBucket`'s reply. Persist it: every later call
/// needs it, and `storageId` resumes the same run after a restart.
public struct WandbRunHandle: Sendable, Equatable, Codable {
    /// The 8-character run id (`bucket.name`).
    public var runId: String
    /// `bucket.project.entity.name`: the real entity even when the run was created without one.
    public var entity: String
    /// `bucket.project.name`.
    public var project: String
    /// `bucket.id`, the server's storage id (send it back on resume).
    public var storageId: String
    public var displayName: String?
    public var sweepName: String?
    /// `bucket.historyLineCount`: on resume, the history line offset to continue from.
    public var historyLineCount: Int

    public init(runId: String, entity: String, project: String, storageId: String, displayName: String? = nil,
                sweepName: String? = nil, historyLineCount: Int = 0) {
        self.runId = runId
        self.entity = entity
        self.project = project
        self.storageId = storageId
        self.displayName = displayName
        self.sweepName = sweepName
        self.historyLineCount = historyLineCount
    }
}

/// Who the API key belongs to (`Viewer`).
public struct WandbViewer: Sendable, Equatable {
    public var entity: String?
    public var username: String?
}

/// The outcome of ``WandbAPI/logArtifact(_:_:)``.
public struct WandbArtifactResult: Sendable, Equatable {
    public var artifactId: String
    /// The artifact digest (hex MD5 of the manifest-v1 text).
    public var digest: String
    /// The server already had a committed artifact with this digest: nothing was uploaded.
    public var deduplicated: Bool
    /// Files PUT (or multipart-uploaded) by this call; files the server already had are skipped.
    public var uploadedFiles: [String]
}

/// The W&B online client: the GraphQL and file_stream calls of wandb-core, over ``HTTPClient``.
///
/// Stateless per call and safe to retry: the caller (the coordinator's durable outbox) owns
/// line offsets and what has been uploaded; each method re-sends identical bytes on its
/// internal retries (``WandbRetryPolicy``) and can be called again with the same arguments
/// after a failure. A 401/403 from the server is logged once, loudly (without the key), and
/// thrown as ``WandbAPIError/unauthorized(operation:status:)``; the caller keeps its data.
///
/// Headers: `Authorization: Basic base64("api:"+key)` only on requests to the base URL (never on
/// signed upload URLs), `User-Agent: tts-cluster/<version>`, `Content-Type: application/json`.
public final class WandbAPI: Sendable {
    /// Knobs of the artifact upload.
    public struct ArtifactOptions: Sendable, Equatable {
        /// Files of at least this size go multipart (wandb-core: 2 GiB).
        public var multipartThreshold: Int64
        /// Part size (wandb-core: 100 MiB, larger when a file would need over 10,000 parts).
        public var partSize: Int64
        /// Files per `CreateArtifactFiles` call.
        public var filesPerBatch: Int

        public init(multipartThreshold: Int64 = 2 << 30, partSize: Int64 = 100 << 20, filesPerBatch: Int = 1000) {
            self.multipartThreshold = multipartThreshold
            self.partSize = partSize
            self.filesPerBatch = filesPerBatch
        }
    }

    public let settings: WandbSettings
    public let policies: WandbRetryPolicies
    public let artifactOptions: ArtifactOptions
    let client: HTTPClient
    let apiKey: WandbAPIKey
    let logger: Logger
    private let unauthorizedReported = Atomic<Bool>(false)

    /// - Throws: ``WandbAPIError/notOnline(reason:)`` unless `settings.mode` is online with a key.
    public init(settings: WandbSettings, client: HTTPClient, policies: WandbRetryPolicies = .standard,
                artifactOptions: ArtifactOptions = .init(), logger: Logger = Logger(label: "tts.wandb"))
        throws(WandbAPIError) {
        guard settings.mode == .online, let key = settings.apiKey else { throw .notOnline(reason: settings.modeReason) }
        self.settings = settings
        self.client = client
        self.policies = policies
        self.artifactOptions = artifactOptions
        self.apiKey = key
        self.logger = logger
    }

    // MARK: Runs

    /// `Viewer`: checks the key and returns its default entity.
    public func viewer() async throws(WandbAPIError) -> WandbViewer {
        let data = try await graphQL(.viewer, variables: [], policy: policies.graphQL)
        let v = WandbJSON.get(data, "viewer")
        return WandbViewer(entity: WandbJSON.string(WandbJSON.get(v, "entity")),
                           username: WandbJSON.string(WandbJSON.get(v, "username")))
    }

    /// `UpsertBucket` with every field: creates the run, or resumes it when `storageId` (the
    /// `bucket.id` of an earlier reply) is given. The config goes as the JSON string
    /// `{"key":{"value":…},…}`; empty fields are sent as `null`.
    public func upsertRun(_ info: WandbRunInfo, storageId: String? = nil, program: String? = nil,
                          commit: String? = nil, repo: String? = nil) async throws(WandbAPIError) -> WandbRunHandle {
        func opt(_ s: String?) -> JSONValue { (s?.isEmpty ?? true) ? .null : .string(s!) }
        let variables: [(String, JSONValue)] = [
            ("id", opt(storageId)),
            ("name", .string(info.runId)),
            ("project", .string(info.project)),
            ("entity", opt(info.entity)),
            ("groupName", opt(info.group)),
            ("description", .null),
            ("displayName", opt(info.displayName)),
            ("notes", opt(info.notes)),
            ("commit", opt(commit)),
            ("config", .string(Self.configString(info.config))),
            ("host", opt(info.host)),
            ("debug", .null),
            ("program", opt(program)),
            ("repo", opt(repo)),
            ("jobType", opt(info.jobType)),
            ("state", .null),
            ("sweep", .null),
            ("tags", info.tags.isEmpty ? .null : .array(info.tags.map { .string($0) })),
            ("summaryMetrics", .null),
        ]
        return try await upsert(variables, runId: info.runId, fallbackProject: info.project, fallbackEntity: info.entity)
    }

    /// The debounced config update: `UpsertBucket` with only name, project, entity and config.
    @discardableResult
    public func updateConfig(_ handle: WandbRunHandle, config: [String: JSONValue]) async throws(WandbAPIError) -> WandbRunHandle {
        var variables: [(String, JSONValue)] = WandbGraphQLDocument.upsertBucketVariables.map { ($0, .null) }
        for i in variables.indices {
            switch variables[i].0 {
            case "name": variables[i].1 = .string(handle.runId)
            case "project": variables[i].1 = .string(handle.project)
            case "entity": variables[i].1 = .string(handle.entity)
            case "config": variables[i].1 = .string(Self.configString(config))
            default: break
            }
        }
        return try await upsert(variables, runId: handle.runId, fallbackProject: handle.project, fallbackEntity: handle.entity)
    }

    /// `{"key":{"value":v},…}` (wandb-core `runconfig.Serialize`; no `desc`), keys sorted.
    public static func configString(_ config: [String: JSONValue]) -> String {
        WandbJSON.encode(.object(config.mapValues { .object(["value": $0]) }))
    }

    private func upsert(_ variables: [(String, JSONValue)], runId: String, fallbackProject: String,
                        fallbackEntity: String?) async throws(WandbAPIError) -> WandbRunHandle {
        let op = WandbGraphQLDocument.upsertBucket.operationName
        let data = try await graphQL(.upsertBucket, variables: variables, policy: policies.upsertBucket)
        guard let bucket = WandbJSON.get(data, "upsertBucket", "bucket"), case .object = bucket else {
            throw .invalidResponse(operation: op, detail: "no upsertBucket.bucket")
        }
        guard let storageId = WandbJSON.string(WandbJSON.get(bucket, "id")) else {
            throw .invalidResponse(operation: op, detail: "no bucket.id")
        }
        guard let entity = WandbJSON.string(WandbJSON.get(bucket, "project", "entity", "name")) ?? fallbackEntity else {
            throw .invalidResponse(operation: op, detail: "no bucket.project.entity.name")
        }
        return WandbRunHandle(
            runId: WandbJSON.string(WandbJSON.get(bucket, "name")) ?? runId,
            entity: entity,
            project: WandbJSON.string(WandbJSON.get(bucket, "project", "name")) ?? fallbackProject,
            storageId: storageId,
            displayName: WandbJSON.string(WandbJSON.get(bucket, "displayName")),
            sweepName: WandbJSON.string(WandbJSON.get(bucket, "sweepName")),
            historyLineCount: WandbJSON.int(WandbJSON.get(bucket, "historyLineCount")) ?? 0)
    }

    // MARK: file_stream

    /// One file_stream request. The caller keeps one request in flight per run and, after a
    /// failure, sends the *same* request again before advancing its offsets.
    @discardableResult
    public func fileStream(_ handle: WandbRunHandle, _ request: FileStreamRequest) async throws(WandbAPIError) -> FileStreamResponse {
        let body = request.encoded()
        guard body.count <= FileStreamRequest.maxRequestBytes else {
            throw .requestTooLarge(bytes: body.count, limit: FileStreamRequest.maxRequestBytes)
        }
        let url = settings.fileStreamURL(entity: handle.entity, project: handle.project, runId: handle.runId)
        let response = try await send(HTTPRequest(method: .post, url: url, headers: jsonHeaders(), body: .bytes(body)),
                                      policy: policies.fileStream, operation: "file_stream", authenticated: true)
        let reply = WandbJSON.parse(response.body)
        return FileStreamResponse(stopped: WandbJSON.bool(WandbJSON.get(reply, "stopped")) ?? false,
                                  exitCode: WandbJSON.int(WandbJSON.get(reply, "exitcode")))
    }

    /// The `{}` heartbeat (send after 30 s without another file_stream request).
    @discardableResult
    public func heartbeat(_ handle: WandbRunHandle) async throws(WandbAPIError) -> FileStreamResponse {
        try await fileStream(handle, .heartbeat)
    }

    // MARK: Run files

    /// `CreateRunFiles` for the files' run paths, then a PUT of each file to its signed URL with
    /// exactly the returned `uploadHeaders` (no `Authorization`). Returns the run paths
    /// uploaded, for the next file_stream request's `uploaded`.
    @discardableResult
    public func uploadRunFiles(_ handle: WandbRunHandle, _ files: [WandbRunFile]) async throws(WandbAPIError) -> [String] {
        var sources: [(String, HTTPRequest.Body)] = []
        for f in files {
            if let content = f.content { sources.append((f.runPath, .bytes(content))) } else { sources.append((f.runPath, try Self.fileBody(f.localPath))) }
        }
        return try await uploadRunFiles(handle, sources)
    }

    /// The same for generated content (`config.yaml`, `wandb-summary.json`, `output.log` …).
    @discardableResult
    public func uploadRunFile(_ handle: WandbRunHandle, runPath: String, bytes: [UInt8]) async throws(WandbAPIError) -> [String] {
        try await uploadRunFiles(handle, [(runPath, .bytes(bytes))])
    }

    private func uploadRunFiles(_ handle: WandbRunHandle, _ sources: [(String, HTTPRequest.Body)]) async throws(WandbAPIError) -> [String] {
        guard !sources.isEmpty else { return [] }
        let op = WandbGraphQLDocument.createRunFiles.operationName
        let data = try await graphQL(.createRunFiles, variables: [
            ("entity", .string(handle.entity)), ("project", .string(handle.project)), ("run", .string(handle.runId)),
            ("files", .array(sources.map { .string($0.0) })),
        ], policy: policies.graphQL)
        let reply = WandbJSON.get(data, "createRunFiles")
        let headers = HTTPHeaders.parseNameColonValue(
            (WandbJSON.array(WandbJSON.get(reply, "uploadHeaders")) ?? []).compactMap(WandbJSON.string))
        var urls: [String: String] = [:]
        for f in WandbJSON.array(WandbJSON.get(reply, "files")) ?? [] {
            if let name = WandbJSON.string(WandbJSON.get(f, "name")), let url = WandbJSON.string(WandbJSON.get(f, "uploadUrl")) {
                urls[name] = url
            }
        }
        var uploaded: [String] = []
        for (runPath, body) in sources {
            guard let url = urls[runPath] else { throw .invalidResponse(operation: op, detail: "no upload URL for \(runPath)") }
            _ = try await put(url: url, headers: headers, body: body, operation: "upload \(runPath)")
            uploaded.append(runPath)
        }
        return uploaded
    }

    /// A `config.yaml` for the run files: `key:\n  value: <JSON>` per key (JSON is valid YAML).
    public static func configYAML(_ config: [String: JSONValue]) -> String {
        var out = ""
        for key in config.keys.sorted() {
            out += "\(WandbValue.quote(key)):\n  value: \(WandbJSON.encode(config[key]!))\n"
        }
        return out
    }

    // MARK: Transport

    func jsonHeaders() -> HTTPHeaders {
        ["User-Agent": settings.userAgent, "Content-Type": "application/json", "Accept-Encoding": "gzip"]
    }

    /// One GraphQL operation; returns `data`. GraphQL `errors` are final (not retried).
    func graphQL(_ document: WandbGraphQLDocument, variables: [(String, JSONValue)],
                 policy: WandbRetryPolicy) async throws(WandbAPIError) -> JSONValue {
        let op = document.operationName
        let request = HTTPRequest(method: .post, url: settings.graphQLURL, headers: jsonHeaders(),
                                  body: .bytes(document.body(variables: variables)))
        let response = try await send(request, policy: policy, operation: op, authenticated: true)
        guard let reply = WandbJSON.parse(response.body) else {
            throw .invalidResponse(operation: op, detail: "reply is not JSON: " + snippet(response.body))
        }
        if let errors = WandbJSON.array(WandbJSON.get(reply, "errors")), !errors.isEmpty {
            let messages = errors.map { WandbJSON.string(WandbJSON.get($0, "message")) ?? WandbJSON.encode($0) }
            throw .graphQL(operation: op, message: apiKey.redact(messages.joined(separator: "; ")))
        }
        guard let data = WandbJSON.get(reply, "data") else { throw .invalidResponse(operation: op, detail: "no data") }
        return data
    }

    /// A PUT to a signed URL: exactly `headers`, never `Authorization`.
    func put(url: String, headers: HTTPHeaders, body: HTTPRequest.Body, operation: String) async throws(WandbAPIError) -> HTTPResponse {
        try await send(HTTPRequest(method: .put, url: url, headers: headers, body: body),
                       policy: policies.fileTransfer, operation: operation, authenticated: false)
    }

    /// Sends `request` under `policy`, re-sending the identical request after retryable failures.
    func send(_ request: HTTPRequest, policy: WandbRetryPolicy, operation: String,
              authenticated: Bool) async throws(WandbAPIError) -> HTTPResponse {
        var request = request
        request.timeout = policy.attemptTimeout
        request.headers.remove("Authorization")
        if authenticated && settings.isUnderBaseURL(request.url) {
            request.headers.set("Authorization", apiKey.basicAuthorization)
        }
        var attempt = 0
        while true {
            if Task.isCancelled { throw .cancelled }
            let outcome: Result<HTTPResponse, HTTPError>
            do { outcome = .success(try await client.send(request)) } catch { outcome = .failure(error) }

            var retryResponse: HTTPResponse?
            let failure: String
            switch outcome {
            case .success(let response):
                if policy.isSuccess(response.status) {
                    if authenticated { unauthorizedReported.store(false, ordering: .relaxed) }
                    return response
                }
                if authenticated && (response.status == 401 || response.status == 403) {
                    reportUnauthorized(operation: operation, status: response.status)
                    throw .unauthorized(operation: operation, status: response.status)
                }
                guard policy.shouldRetry(status: response.status) else {
                    throw .rejected(operation: operation, status: response.status, body: snippet(response.body))
                }
                retryResponse = response
                failure = "HTTP \(response.status)"
            case .failure(.cancelled):
                throw .cancelled
            case .failure(let error):
                guard policy.shouldRetry(error: error) else { throw .transport(operation: operation, error: error) }
                failure = apiKey.redact(error.description)
            }

            guard attempt < policy.maxRetries else {
                throw .exhausted(operation: operation, attempts: attempt + 1, lastFailure: failure)
            }
            let wait = policy.delay(attempt: attempt, response: retryResponse)
            logger.warning("W&B \(operation): \(failure); retry \(attempt + 1) of \(policy.maxRetries) in \(Self.format(wait))")
            do { try await Task.sleep(for: wait) } catch { throw .cancelled }
            attempt += 1
        }
    }

    private func reportUnauthorized(operation: String, status: Int) {
        if unauthorizedReported.exchange(true, ordering: .relaxed) {
            logger.debug("W&B \(operation): HTTP \(status) (API key still rejected)")
            return
        }
        logger.critical("""
            W&B REJECTED THE API KEY: HTTP \(status) on \(operation). Check WANDB_API_KEY (a key of \
            \(apiKey.length) characters is configured; it is not shown) and the entity/project access. \
            Nothing is lost: W&B data stays queued locally until a valid key is configured.
            """)
    }

    /// The start of a reply body for an error message, with the key redacted.
    func snippet(_ body: [UInt8]) -> String {
        let text = String(decoding: body.prefix(512), as: UTF8.self)
        return apiKey.redact(text) + (body.count > 512 ? "…" : "")
    }

    static func format(_ d: Duration) -> String {
        String(format: "%.2f s", WandbRetryPolicy.seconds(d))
    }

    /// A whole local file as a streamed body.
    static func fileBody(_ path: String) throws(WandbAPIError) -> HTTPRequest.Body {
        var st = stat()
        guard stat(path, &st) == 0 else {
            throw .localFile(path: path, detail: String(cString: strerror(errno)))
        }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw .localFile(path: path, detail: "not a regular file") }
        return .file(path: path, offset: 0, length: Int64(st.st_size))
    }
}
