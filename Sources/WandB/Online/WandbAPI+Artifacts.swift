import Foundation
#if canImport(Glibc)
import Glibc
import CurlHTTP
import Shared
#endif

extension WandbAPI {
    /// Logs a checkpoint (or any files) as an artifact, the way wandb-core's `ArtifactSaver`
    /// does (reference §4.1):
    ///
    /// 1. `CreateArtifact` (digest, `MANIFEST_MD5`, aliases with `latest` added, deterministic
    ///    128-character client ids); a `COMMITTED` reply means the server already has this
    ///    exact artifact: stop there.
    /// 2. `CreateArtifactManifest` (digest `""`, `includeUpload: false`).
    /// 3. `CreateArtifactFiles` in the 0.31 `input: {artifactFiles, storageLayout: "V2"}` shape,
    ///    then a PUT per file with a non-null `uploadUrl` (exactly its `uploadHeaders`); files of
    ///    ``ArtifactOptions/multipartThreshold`` and more go multipart
    ///    (`CompleteMultipartUploadArtifact` with the parts' ETags).
    /// 4–5. The manifest JSON, `CreateArtifactManifest` with its base64 MD5 and
    ///    `includeUpload: true`, and a PUT of the manifest.
    /// 6. `CommitArtifact`.
    ///
    /// Safe to call again after a failure: the ids are derived from the run, name and digest,
    /// and a committed artifact is recognised in step 1.
    public func logArtifact(_ handle: WandbRunHandle, _ artifact: WandbArtifactUpload) async throws(WandbAPIError) -> WandbArtifactResult {
        guard !artifact.files.isEmpty else { throw .artifact("an artifact needs at least one file") }

        // Digests (off the cooperative pool: checkpoints are gigabytes).
        var hashed: [HashedArtifactFile] = []
        for file in artifact.files {
            let options = artifactOptions
            let result = await WandbBlocking.run { HashedArtifactFile.hash(file, options: options) }
            hashed.append(try result.get())
        }
        let draft = WandbArtifactManifest(entries: hashed.map {
            .init(path: $0.name, digest: WandbArtifactManifest.base64($0.md5), size: $0.size)
        })
        let digest = draft.digest

        // 1. CreateArtifact.
        var aliases = artifact.aliases
        if artifact.addsLatestAlias, !aliases.contains("latest") { aliases.insert("latest", at: 0) }
        let input: JSONValue = .object([
            "aliases": .array(aliases.map { .object(["alias": .string($0), "artifactCollectionName": .string(artifact.name)]) }),
            "artifactCollectionName": .string(artifact.name),
            "artifactCollectionNames": .null,
            "artifactTypeName": .string(artifact.type),
            "clientID": .string(Self.clientID("artifact", handle.runId, artifact.name, digest)),
            "sequenceClientID": .string(Self.clientID("sequence", handle.runId, artifact.name)),
            "clientMutationId": .null,
            "description": .null,
            "digest": .string(digest),
            "digestAlgorithm": .string("MANIFEST_MD5"),
            "distributedID": .null,
            "enableDigestDeduplication": .bool(true),
            "entityName": .string(handle.entity),
            "historyStep": .number(Double(artifact.historyStep)),
            "labels": .null,
            "metadata": .string(WandbJSON.encode(.object(artifact.metadata))),
            "projectName": .string(handle.project),
            "runName": .string(handle.runId),
            "storageRegion": .null,
            "ttlDurationSeconds": .null,
        ])
        let created = try await graphQL(.createArtifact, variables: [("input", input)], policy: policies.graphQL)
        let createdArtifact = WandbJSON.get(created, "createArtifact", "artifact")
        guard let artifactID = WandbJSON.string(WandbJSON.get(createdArtifact, "id")) else {
            throw .invalidResponse(operation: "CreateArtifact", detail: "no artifact.id")
        }
        let state = WandbJSON.string(WandbJSON.get(createdArtifact, "state")) ?? ""
        if state == "COMMITTED" {
            logger.info("W&B artifact \(artifact.name): the server already has digest \(digest); nothing to upload")
            return WandbArtifactResult(artifactId: artifactID, digest: digest, deduplicated: true, uploadedFiles: [])
        }
        guard state == "PENDING" || state == "DELETED" else { throw .artifact("unexpected artifact state \(state)") }
        let baseArtifactID = WandbJSON.string(WandbJSON.get(createdArtifact, "artifactSequence", "latestArtifact", "id"))

        // 2. The manifest record, without upload.
        let manifestID = try await createManifest(handle, artifactID: artifactID, baseArtifactID: baseArtifactID,
                                                  digest: "", includeUpload: false).id

        // 3. Files.
        var birth: [String: String] = [:]
        var uploaded: [String] = []
        let batchSize = max(1, artifactOptions.filesPerBatch)
        for start in stride(from: 0, to: hashed.count, by: batchSize) {
            let batch = Array(hashed[start..<min(hashed.count, start + batchSize)])
            let filesInput: JSONValue = .object([
                "artifactFiles": .array(batch.map { f in
                    .object([
                        "artifactID": .string(artifactID),
                        "artifactManifestID": .string(manifestID),
                        "md5": .string(WandbArtifactManifest.base64(f.md5)),
                        "mimetype": .null,
                        "name": .string(f.name),
                        "uploadPartsInput": f.parts.map { parts in
                            .array(parts.map { .object(["partNumber": .number(Double($0.number)), "hexMD5": .string($0.hexMD5)]) })
                        } ?? .null,
                    ])
                }),
                "storageLayout": .string("V2"),
                "clientMutationId": .null,
                "cloudRegionID": .null,
            ])
            let reply = try await graphQL(.createArtifactFiles, variables: [("input", filesInput)], policy: policies.graphQL)
            let edges = WandbJSON.array(WandbJSON.get(reply, "createArtifactFiles", "files", "edges")) ?? []
            guard edges.count == batch.count else {
                throw .invalidResponse(operation: "CreateArtifactFiles", detail: "\(edges.count) files for \(batch.count) requested")
            }
            for (file, edge) in zip(batch, edges) {
                let node = WandbJSON.get(edge, "node")
                birth[file.name] = WandbJSON.string(WandbJSON.get(node, "artifact", "id")) ?? artifactID
                let headers = HTTPHeaders.parseNameColonValue(
                    (WandbJSON.array(WandbJSON.get(node, "uploadHeaders")) ?? []).compactMap(WandbJSON.string))
                if let multipart = WandbJSON.get(node, "uploadMultipartUrls"), multipart != .null, let parts = file.parts {
                    try await uploadMultipart(file, parts: parts, info: multipart, headers: headers,
                                              artifactID: birth[file.name]!, storagePath: WandbJSON.string(WandbJSON.get(node, "storagePath")))
                    uploaded.append(file.name)
                } else if let url = WandbJSON.string(WandbJSON.get(node, "uploadUrl")) {
                    _ = try await put(url: url, headers: headers, body: .file(path: file.localPath, offset: 0, length: file.size),
                                      operation: "artifact upload \(file.name)")
                    uploaded.append(file.name)
                } // uploadUrl null: the server already has these bytes.
            }
        }

        // 4–5. The manifest with birth artifact ids, registered with its digest, then uploaded.
        var manifest = draft
        for i in manifest.entries.indices { manifest.entries[i].birthArtifactID = birth[manifest.entries[i].path] }
        let manifestBytes = manifest.jsonBytes()
        let upload = try await createManifest(handle, artifactID: artifactID, baseArtifactID: baseArtifactID,
                                              digest: WandbArtifactManifest.base64(MD5.hash(manifestBytes)), includeUpload: true)
        guard let manifestURL = upload.uploadURL else {
            throw .invalidResponse(operation: "CreateArtifactManifest", detail: "no manifest upload URL")
        }
        _ = try await put(url: manifestURL, headers: upload.headers, body: .bytes(manifestBytes), operation: "artifact manifest upload")

        // 6. Commit.
        _ = try await graphQL(.commitArtifact, variables: [("artifactID", .string(artifactID))], policy: policies.graphQL)
        logger.info("W&B artifact \(artifact.name) (\(artifact.type)) committed: \(uploaded.count) of \(hashed.count) files uploaded, aliases \(aliases.joined(separator: ","))")
        return WandbArtifactResult(artifactId: artifactID, digest: digest, deduplicated: false, uploadedFiles: uploaded)
    }

    private func createManifest(_ handle: WandbRunHandle, artifactID: String, baseArtifactID: String?, digest: String,
                                includeUpload: Bool) async throws(WandbAPIError) -> (id: String, uploadURL: String?, headers: HTTPHeaders) {
        let data = try await graphQL(.createArtifactManifest, variables: [
            ("artifactID", .string(artifactID)),
            ("baseArtifactID", WandbJSON.optionalString(baseArtifactID)),
            ("name", .string("wandb_manifest.json")),
            ("digest", .string(digest)),
            ("entityName", .string(handle.entity)),
            ("projectName", .string(handle.project)),
            ("runName", .string(handle.runId)),
            ("manifestType", .string("FULL")),
            ("includeUpload", .bool(includeUpload)),
        ], policy: policies.graphQL)
        let manifest = WandbJSON.get(data, "createArtifactManifest", "artifactManifest")
        guard let id = WandbJSON.string(WandbJSON.get(manifest, "id")) else {
            throw .invalidResponse(operation: "CreateArtifactManifest", detail: "no artifactManifest.id")
        }
        let headers = HTTPHeaders.parseNameColonValue(
            (WandbJSON.array(WandbJSON.get(manifest, "file", "uploadHeaders")) ?? []).compactMap(WandbJSON.string))
        return (id, WandbJSON.string(WandbJSON.get(manifest, "file", "uploadUrl")), headers)
    }

    /// PUTs each part with `Content-Md5`, `Content-Length` and the upload `Content-Type`, collects
    /// the ETags and completes the upload.
    private func uploadMultipart(_ file: HashedArtifactFile, parts: [HashedArtifactFile.Part], info: JSONValue,
                                 headers: HTTPHeaders, artifactID: String, storagePath: String?) async throws(WandbAPIError) {
        let op = "CreateArtifactFiles"
        guard let uploadID = WandbJSON.string(WandbJSON.get(info, "uploadID")), let storagePath else {
            throw .invalidResponse(operation: op, detail: "multipart upload without uploadID or storagePath")
        }
        var urls: [Int: String] = [:]
        for p in WandbJSON.array(WandbJSON.get(info, "uploadUrlParts")) ?? [] {
            if let n = WandbJSON.int(WandbJSON.get(p, "partNumber")), let u = WandbJSON.string(WandbJSON.get(p, "uploadUrl")) { urls[n] = u }
        }
        var completed: [JSONValue] = []
        for part in parts {
            guard let url = urls[part.number] else { throw .invalidResponse(operation: op, detail: "no URL for part \(part.number)") }
            var partHeaders: HTTPHeaders = [
                "Content-Md5": WandbArtifactManifest.base64(part.md5),
                "Content-Length": String(part.length),
            ]
            if let type = headers["Content-Type"], !type.isEmpty { partHeaders.add("Content-Type", type) }
            let response = try await put(url: url, headers: partHeaders,
                                         body: .file(path: file.localPath, offset: part.offset, length: part.length),
                                         operation: "artifact upload \(file.name) part \(part.number)/\(parts.count)")
            guard let etag = response.headers["ETag"], !etag.isEmpty else {
                throw .invalidResponse(operation: "artifact upload \(file.name)", detail: "no ETag for part \(part.number)")
            }
            completed.append(.object(["partNumber": .number(Double(part.number)), "hexMD5": .string(etag)]))
        }
        _ = try await graphQL(.completeMultipartUploadArtifact, variables: [
            ("completeMultipartAction", .string("Complete")),
            ("completedParts", .array(completed)),
            ("artifactID", .string(artifactID)),
            ("storagePath", .string(storagePath)),
            ("uploadID", .string(uploadID)),
        ], policy: policies.graphQL)
    }

    /// A stable 128-character `[0-9a-f]` id (the SDK uses random `[a-z0-9]`; stable ids make a
    /// repeated call the same request).
    static func clientID(_ parts: String...) -> String {
        let seed = (["tts-cluster"] + parts).joined(separator: "\u{1F}")
        return SHA256.hash(Array((seed + "|0").utf8)).hexString + SHA256.hash(Array((seed + "|1").utf8)).hexString
    }
}

/// A file of an artifact with its digests, computed in one pass.
struct HashedArtifactFile: Sendable {
    struct Part: Sendable {
        var number: Int
        var offset: Int64
        var length: Int64
        var md5: [UInt8]
        var hexMD5: String { WandbArtifactManifest.hex(md5) }
    }

    var name: String
    var localPath: String
    var size: Int64
    var md5: [UInt8]
    /// Set for multipart uploads.
    var parts: [Part]?

    static func hash(_ file: WandbRunFile, options: WandbAPI.ArtifactOptions) -> Result<HashedArtifactFile, WandbAPIError> {
        let path = file.localPath
        var st = stat()
        guard stat(path, &st) == 0 else { return .failure(.localFile(path: path, detail: String(cString: strerror(errno)))) }
        guard (st.st_mode & S_IFMT) == S_IFREG else { return .failure(.localFile(path: path, detail: "not a regular file")) }
        let size = Int64(st.st_size)
        var partSize: Int64? = nil
        if size >= options.multipartThreshold && size > 0 {
            var chunk = max(options.partSize, 1)
            if size > chunk * 10_000 { chunk = (size + 9_999) / 10_000; chunk = (chunk + 4095) / 4096 * 4096 }
            partSize = chunk
        }
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(.localFile(path: path, detail: String(cString: strerror(errno)))) }
        defer { close(fd) }
        var whole = MD5()
        var partHash = MD5()
        var parts: [Part] = []
        var partStart: Int64 = 0
        var partFill: Int64 = 0
        var total: Int64 = 0
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let want = partSize.map { Int(min(Int64(buffer.count), $0 - partFill)) } ?? buffer.count
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, want) }
            if n < 0 {
                if errno == EINTR { continue }
                return .failure(.localFile(path: path, detail: String(cString: strerror(errno))))
            }
            if n == 0 { break }
            let slice = buffer[0..<n]
            whole.update(slice)
            total += Int64(n)
            if let partSize {
                partHash.update(slice)
                partFill += Int64(n)
                if partFill == partSize {
                    parts.append(Part(number: parts.count + 1, offset: partStart, length: partFill, md5: partHash.finalize()))
                    partHash = MD5()
                    partStart += partFill
                    partFill = 0
                }
            }
        }
        if partSize != nil && partFill > 0 {
            parts.append(Part(number: parts.count + 1, offset: partStart, length: partFill, md5: partHash.finalize()))
        }
        guard total == size else { return .failure(.localFile(path: path, detail: "file changed while hashing")) }
        return .success(HashedArtifactFile(name: file.runPath, localPath: path, size: size, md5: whole.finalize(),
                                           parts: partSize == nil ? nil : parts))
    }
}

/// Runs blocking work (hashing gigabytes) on its own thread, not the cooperative pool.
enum WandbBlocking {
    static func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { (c: CheckedContinuation<T, Never>) in
            let thread = Thread { c.resume(returning: work()) }
            thread.name = "wandb-blocking"
            thread.start()
        }
    }
}
