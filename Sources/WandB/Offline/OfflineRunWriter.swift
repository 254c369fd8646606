import Foundation
import Shared
#if canImport(Glibc)
import Glibc
#endif

/// Why an offline-run operation failed; every case names the path involved and what to do.
public enum OfflineRunError: Error, Equatable, CustomStringConvertible {
    /// A system call failed.
    case io(path: String, operation: String, errno: Int32)
    /// A Foundation file operation failed.
    case fileSystem(path: String, operation: String, message: String)
    /// A run-relative path (media file, artifact entry) is empty, absolute or climbs out with `..`.
    case invalidRunPath(path: String, reason: String)
    /// History rows must come in strictly increasing step order.
    case stepOutOfOrder(path: String, step: Int64, lastStep: Int64)
    /// The exit record was written; nothing may follow it.
    case finished(path: String)
    /// `reopen` was pointed at something that is not an offline run directory written here.
    case notARunDirectory(path: String, reason: String)
    /// `reopen(directory:validSize:)` was given a size that is not the end of a complete record.
    case notAtRecordBoundary(path: String, requested: Int, lastRecordEnd: Int, problem: String?)

    public var description: String {
        switch self {
        case .io(let path, let op, let e):
            return "\(path): \(op) failed: \(String(cString: strerror(e))) (errno \(e)); check the path exists, is writable and the disk is not full"
        case .fileSystem(let path, let op, let message):
            return "\(path): \(op) failed: \(message)"
        case .invalidRunPath(let path, let reason):
            return "run file path \"\(path)\" is invalid: \(reason); use a relative path such as media/audio/x.wav"
        case .stepOutOfOrder(let path, let step, let last):
            return "\(path): history step \(step) does not follow step \(last); W&B history rows must be logged in increasing step order"
        case .finished(let path):
            return "\(path): the run was finished (exit record written); start a new run to log more"
        case .notARunDirectory(let path, let reason):
            return "\(path): not an offline W&B run directory (\(reason)); pass the offline-run-… directory created by OfflineRunWriter"
        case .notAtRecordBoundary(let path, let requested, let end, let problem):
            return "\(path): cannot resume at byte \(requested): the last complete record ends at byte \(end)"
                + (problem.map { " (\($0))" } ?? "") + "; pass a size returned by sync(), or nil to resume after the last complete record"
        }
    }
}

/// Writes one W&B run in offline mode, as `wandb offline` does, so that `wandb sync` can upload it
/// later:
///
/// ```
/// <root>/wandb/offline-run-YYYYMMDD_HHMMSS-<runid>/
///     run-<runid>.wandb        transaction log of wandb_internal.Record protobufs
///     files/<runPath>          media referenced by FilesRecords
///     artifacts/<num>-<name>/  hard links (or copies) of artifact files, the manifest's local_path
/// ```
///
/// Record order: header, run, then per history step a summary record and a history record (with
/// `_step`, `_timestamp`, `_runtime` items), interleaved with stats, files, artifact, summary and
/// output records as they are logged, and the exit record last.
///
/// Not `Sendable`: it owns the log's file descriptor. Confine each writer to one actor (the
/// coordinator keeps one per run inside its W&B actor).
///
/// Crash recovery: after each ``sync()`` store the returned ``DurablePoint``; after a crash,
/// ``reopen(directory:validSize:)`` with its `size` cuts off whatever followed and continues with
/// the next record number, so replaying the events after that point writes each exactly once.
public final class OfflineRunWriter {
    /// A state of the log that ``sync()`` made durable: the number of records and the file size.
    public struct DurablePoint: Sendable, Equatable, Codable {
        public var records: Int
        public var size: Int

        public init(records: Int, size: Int) {
            self.records = records
            self.size = size
        }
    }

    /// The absolute run directory, `<root>/wandb/offline-run-…-<runid>`.
    public let directory: String
    /// The absolute path of `run-<runid>.wandb`.
    public let logPath: String
    public let runId: String
    public let project: String
    public let entity: String?
    /// Records written so far; also the `num` of the last one.
    public private(set) var recordCount: Int
    /// The step of the last history row, nil before the first.
    public private(set) var lastStep: Int64?
    /// True once the exit record is written.
    public private(set) var isFinished: Bool
    /// The log's size in bytes.
    public var size: Int { logWriter.size }
    /// `<directory>/files`.
    public var filesDirectory: String { directory + "/files" }

    private let logWriter: TransactionLogWriter

    /// The run directory's name: `offline-run-YYYYMMDD_HHMMSS-<runid>`, the time being the run's
    /// start in the local time zone (`TZ`), as the SDK's `_start_datetime`.
    public static func directoryName(runId: String, startTime: Date) -> String {
        var t = time_t(startTime.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        localtime_r(&t, &parts)
        var buf = [CChar](repeating: 0, count: 32)
        let n = strftime(&buf, buf.count, "%Y%m%d_%H%M%S", &parts)
        let stamp = String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return "offline-run-\(stamp)-\(runId)"
    }

    /// The absolute run directory ``init(root:run:)`` uses for `run` under `root`; lets a caller
    /// that crashed before recording it find the run again (then ``reopen(directory:validSize:)``
    /// with `validSize: nil`).
    public static func directory(root: String, run: WandbRunInfo) -> String {
        absolute(root) + "/wandb/" + directoryName(runId: run.runId, startTime: run.startTime)
    }

    /// Creates `root/wandb/offline-run-…-<runid>/` with `files/`, and writes the header and run
    /// records. `root` is `WANDB_DIR` (or the working directory). Throws
    /// ``TransactionLogError/alreadyExists(path:)`` if this run's log exists: reopen it instead.
    public init(root: String, run: WandbRunInfo) throws {
        let dir = OfflineRunWriter.directory(root: root, run: run)
        try OfflineRunWriter.makeDirectory(dir + "/files")
        directory = dir
        logPath = dir + "/run-\(run.runId).wandb"
        runId = run.runId
        project = run.project
        entity = run.entity
        recordCount = 0
        isFinished = false
        logWriter = try TransactionLogWriter(path: logPath)
        OfflineRunWriter.syncDirectory(dir)
        try write(.header(producer: "tts-cluster \(TTSCluster.version)", minConsumer: ""))
        try write(.run(run))
    }

    private init(directory: String, logPath: String, runId: String, project: String, entity: String?,
                 recordCount: Int, lastStep: Int64?, isFinished: Bool, logWriter: TransactionLogWriter) {
        self.directory = directory
        self.logPath = logPath
        self.runId = runId
        self.project = project
        self.entity = entity
        self.recordCount = recordCount
        self.lastStep = lastStep
        self.isFinished = isFinished
        self.logWriter = logWriter
    }

    /// Logs one history row: a summary record with the row's values (plus `_step`, `_timestamp`,
    /// `_runtime`), then the history record, as the SDK does (`wandb sync` does not derive the
    /// summary from history). Steps must increase strictly.
    public func log(_ row: WandbHistoryRow) throws {
        try log([row])
    }

    /// Logs history rows in order, followed by one summary record holding the values of the
    /// last row that carried each key (plus `_step`, `_timestamp`, `_runtime` of the last row):
    /// the run's summary ends up the same as with a summary record per row, at half the records.
    public func log(_ rows: [WandbHistoryRow]) throws {
        try checkOpen()
        guard !rows.isEmpty else { return }
        var previous = lastStep
        for row in rows {
            if let p = previous, row.step <= p {
                throw OfflineRunError.stepOutOfOrder(path: logPath, step: row.step, lastStep: p)
            }
            previous = row.step
        }
        if rows.count == 1 {
            try write(.summary(WandbRecord.historyItems(rows[0])))
            try write(.history(rows[0]))
        } else {
            var latest: [String: WandbValue] = [:]
            var order: [String] = []
            // One write(2) for all the rows (numbered in order), then the summary.
            var records: [[UInt8]] = []
            records.reserveCapacity(rows.count)
            for (i, row) in rows.enumerated() { records.append(WandbRecord.history(row).encoded(num: Int64(recordCount + 1 + i))) }
            try logWriter.append(contentsOf: records)
            recordCount += rows.count
            for row in rows {
                for (k, v) in row.values {
                    if latest.updateValue(v, forKey: k) == nil { order.append(k) }
                }
            }
            let last = rows[rows.count - 1]
            let merged = WandbHistoryRow(step: last.step, timestamp: last.timestamp, runtime: last.runtime,
                                         values: order.map { ($0, latest[$0]!) })
            try write(.summary(WandbRecord.historyItems(merged)))
        }
        lastStep = previous
    }

    /// Sets summary keys that are not (only) history values, e.g. `val/best_text_loss`.
    public func summary(_ values: [String: WandbValue]) throws {
        try checkOpen()
        try write(.summary(values.keys.sorted().map { ($0, values[$0]!.jsonText) }))
    }

    /// Logs one system-metrics sample (keys without the `system.` prefix).
    public func stats(_ sample: WandbStatsSample) throws {
        try checkOpen()
        try write(.stats(sample))
    }

    /// Copies `file.localPath` to `files/<file.runPath>` and writes a FilesRecord naming it, so
    /// that `wandb sync` uploads it. Log the matching history value (e.g. an `audio-file` object
    /// with the same path) with ``log(_:)``.
    public func addMedia(_ file: WandbRunFile) throws {
        try checkOpen()
        try OfflineRunWriter.validate(runPath: file.runPath)
        let dest = filesDirectory + "/" + file.runPath
        if let content = file.content {
            try OfflineRunWriter.write(content, to: dest)
        } else {
            try OfflineRunWriter.copy(from: file.localPath, to: dest, link: false)
        }
        try write(.files([WandbFilesItem(path: file.runPath)]))
    }

    /// An artifact's files staged in the run directory, waiting for their digests
    /// (``stageArtifact(_:)``, then ``writeArtifact(_:digests:)``).
    public struct StagedArtifact: Sendable, Equatable {
        public var upload: WandbArtifactUpload
        /// Per file of the upload, in order: its path in the run and its staged copy.
        public var files: [(runPath: String, stagedPath: String)]

        public static func == (a: StagedArtifact, b: StagedArtifact) -> Bool {
            a.upload == b.upload && a.files.map(\.runPath) == b.files.map(\.runPath) && a.files.map(\.stagedPath) == b.files.map(\.stagedPath)
        }
    }

    /// Writes an ArtifactRecord for a checkpoint: each file is hard-linked (or copied, across file
    /// systems) into `artifacts/<num>-<name>/` so that it still exists at sync time, hashed
    /// (`base64(md5)`), and listed in the manifest. `latest` is added to the aliases if missing
    /// (unless ``WandbArtifactUpload/addsLatestAlias`` is false).
    /// Call it after logging the row of `upload.historyStep`: wandb-core takes the artifact's
    /// history step from the run's step when it replays the record. Returns the record written.
    /// (It hashes on the calling thread; an actor stages, hashes with ``FileHasher`` and writes
    /// in three steps instead.)
    @discardableResult
    public func artifact(_ upload: WandbArtifactUpload) throws -> WandbArtifactRecord {
        let staged = try stageArtifact(upload)
        return try writeArtifact(staged, digests: try staged.files.map { try MD5.hashFile(path: $0.stagedPath) })
    }

    /// Links (or copies) an artifact's files into `artifacts/<num>-<name>/`, where `num` is the
    /// number of the record that ``writeArtifact(_:digests:)`` writes next.
    public func stageArtifact(_ upload: WandbArtifactUpload) throws -> StagedArtifact {
        try checkOpen()
        let num = recordCount + 1
        let stage = directory + "/artifacts/\(num)-" + OfflineRunWriter.safeName(upload.name)
        var files: [(runPath: String, stagedPath: String)] = []
        for f in upload.files {
            try OfflineRunWriter.validate(runPath: f.runPath)
            let staged = stage + "/" + f.runPath
            try OfflineRunWriter.copy(from: f.localPath, to: staged, link: true)
            files.append((f.runPath, staged))
        }
        return StagedArtifact(upload: upload, files: files)
    }

    /// Writes the ArtifactRecord of staged files with their MD5 digests and sizes (in the order
    /// of ``StagedArtifact/files``). Returns the record written.
    @discardableResult
    public func writeArtifact(_ staged: StagedArtifact, digests: [(digest: [UInt8], size: Int64)]) throws -> WandbArtifactRecord {
        try checkOpen()
        let upload = staged.upload
        let entries = zip(staged.files, digests).map { f, d in
            WandbArtifactRecord.Entry(path: f.runPath, digest: Data(d.digest).base64EncodedString(), size: d.size, localPath: f.stagedPath)
        }
        var aliases = upload.aliases
        if upload.addsLatestAlias, !aliases.contains("latest") { aliases.insert("latest", at: 0) }
        let record = WandbArtifactRecord(
            runId: runId, project: project, entity: entity, type: upload.type, name: upload.name,
            metadataJSON: WandbRecord.jsonText(.object(upload.metadata)), aliases: aliases, entries: entries)
        try write(.artifact(record))
        return record
    }

    /// Writes console lines as `output_raw` records (stdout, or stderr), one per line.
    public func output(lines: [String], stderr: Bool = false, timestamp: Date = Date()) throws {
        try checkOpen()
        for line in lines {
            try write(.outputRaw(line: line.hasSuffix("\n") ? line : line + "\n", stderr: stderr, timestamp: timestamp))
        }
    }

    /// Writes the exit record (which must be last: `wandb sync` ignores what follows and, without
    /// it, reports exit code 1), syncs, and returns the final durable point.
    @discardableResult
    public func finish(exitCode: Int32, runtime: Double) throws -> DurablePoint {
        try checkOpen()
        let seconds = runtime.isFinite ? Int32(clamping: Int64(runtime.rounded())) : 0
        try write(.exit(code: exitCode, runtimeSeconds: seconds))
        isFinished = true
        return try sync()
    }

    /// `fsync`s the log and returns what is now durable; store it to resume exactly here after a
    /// crash.
    @discardableResult
    public func sync() throws -> DurablePoint {
        try logWriter.sync()
        return DurablePoint(records: recordCount, size: logWriter.size)
    }

    /// Closes the log without syncing.
    public func close() {
        logWriter.close()
    }

    /// Re-opens the run in `directory` after a crash: cuts the log back to `validSize` (a
    /// ``DurablePoint/size`` returned by ``sync()``; nil: the end of the last complete record) and
    /// continues numbering after the last record kept. Run id, project, entity, last step and
    /// whether the run finished are read back from the log.
    public static func reopen(directory: String, validSize: Int? = nil) throws -> OfflineRunWriter {
        let dir = absolute(directory)
        let logs = ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [])
            .filter { $0.hasPrefix("run-") && $0.hasSuffix(".wandb") }
        guard logs.count == 1 else {
            throw OfflineRunError.notARunDirectory(path: dir, reason: "expected one run-<id>.wandb file, found \(logs.count)")
        }
        let logPath = dir + "/" + logs[0]
        var lastNum: Int64 = 0
        var runFields: ProtobufFields?
        var lastStep: Int64?
        var finished = false
        let scan = try TransactionLogReader.scan(path: logPath, limit: validSize) { payload in
            let record = try ProtobufFields(payload)
            lastNum = Int64(bitPattern: record.varint(1) ?? 0)
            if runFields == nil, let run = try record.message(17) { runFields = run }
            if let history = try record.message(2) {
                lastStep = Int64(bitPattern: try history.message(2)?.varint(1) ?? 0)
            }
            if record.bytes(18) != nil { finished = true }
        }
        if let validSize, scan.validEnd != validSize {
            throw OfflineRunError.notAtRecordBoundary(path: logPath, requested: validSize, lastRecordEnd: scan.validEnd,
                                                      problem: scan.problem.map { "\($0)" })
        }
        guard let run = runFields, let runId = run.string(1), let project = run.string(3) else {
            throw OfflineRunError.notARunDirectory(path: dir, reason: "the log holds no run record before byte \(scan.validEnd)")
        }
        let writer = try TransactionLogWriter.open(path: logPath, truncatingTo: scan.validEnd)
        return OfflineRunWriter(directory: dir, logPath: logPath, runId: runId, project: project, entity: run.string(2),
                                recordCount: Int(lastNum), lastStep: lastStep, isFinished: finished, logWriter: writer)
    }

    // MARK: - Internals

    private func write(_ record: WandbRecord) throws {
        let num = recordCount + 1
        try logWriter.append(record.encoded(num: Int64(num)))
        recordCount = num
    }

    private func checkOpen() throws {
        if isFinished { throw OfflineRunError.finished(path: logPath) }
    }

    private static func absolute(_ path: String) -> String {
        var p = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
        while p.count > 1, p.hasSuffix("/") { p.removeLast() }
        return p
    }

    private static func makeDirectory(_ path: String) throws {
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw OfflineRunError.fileSystem(path: path, operation: "create directory", message: "\(error.localizedDescription); check that the parent is writable (WANDB_DIR)")
        }
    }

    /// Best effort: makes a new directory entry durable.
    private static func syncDirectory(_ path: String) {
        let fd = Glibc.open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            _ = Glibc.close(fd)
        }
    }

    static func validate(runPath: String) throws {
        if runPath.isEmpty { throw OfflineRunError.invalidRunPath(path: runPath, reason: "it is empty") }
        if runPath.hasPrefix("/") { throw OfflineRunError.invalidRunPath(path: runPath, reason: "it is absolute") }
        let parts = runPath.split(separator: "/", omittingEmptySubsequences: false)
        if parts.contains(where: { $0 == ".." || $0 == "." || $0.isEmpty }) {
            throw OfflineRunError.invalidRunPath(path: runPath, reason: "it has an empty, '.' or '..' component")
        }
    }

    /// A directory-name-safe version of an artifact name.
    private static func safeName(_ name: String) -> String {
        String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }

    /// Writes `bytes` to `dest` (creating parent directories, replacing an existing file).
    private static func write(_ bytes: [UInt8], to dest: String) throws {
        try placeAtomically(dest) { output, tmp in
            try bytes.withUnsafeBytes { try writeAll(output, $0.baseAddress!, $0.count, path: tmp) }
        }
    }

    /// Places `source` at `dest` (creating parent directories, replacing an existing file):
    /// a hard link when `link` is set and possible, else a copy.
    private static func copy(from source: String, to dest: String, link: Bool) throws {
        if let a = realpathString(source), let b = realpathString(dest), a == b { return }
        if link {
            try makeDirectory(String(dest[..<dest.lastIndex(of: "/")!]))
            let tmp = dest + ".tmp-\(getpid())"
            _ = unlink(tmp)
            if Glibc.link(source, tmp) == 0 {
                guard rename(tmp, dest) == 0 else { throw OfflineRunError.io(path: dest, operation: "rename", errno: errno) }
                return
            }
        }
        let input = Glibc.open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else { throw OfflineRunError.io(path: source, operation: "open for reading", errno: errno) }
        defer { _ = Glibc.close(input) }
        try placeAtomically(dest) { output, tmp in
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { Glibc.read(input, $0.baseAddress, $0.count) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw OfflineRunError.io(path: source, operation: "read", errno: errno)
                }
                if n == 0 { break }
                try buffer.withUnsafeBytes { try writeAll(output, $0.baseAddress!, n, path: tmp) }
            }
        }
    }

    /// Creates a temporary file beside `dest` (and `dest`'s directory), lets `fill` write it,
    /// then fsyncs it, renames it over `dest` and syncs the directory; the temporary file is
    /// removed on any failure.
    private static func placeAtomically(_ dest: String, fill: (_ fd: Int32, _ tmp: String) throws -> Void) throws {
        let parent = String(dest[..<dest.lastIndex(of: "/")!])
        try makeDirectory(parent)
        let tmp = dest + ".tmp-\(getpid())"
        _ = unlink(tmp)
        let output = Glibc.open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else { throw OfflineRunError.io(path: tmp, operation: "create", errno: errno) }
        var ok = false
        defer {
            _ = Glibc.close(output)
            if !ok { _ = unlink(tmp) }
        }
        try fill(output, tmp)
        guard fsync(output) == 0 else { throw OfflineRunError.io(path: tmp, operation: "fsync", errno: errno) }
        guard rename(tmp, dest) == 0 else { throw OfflineRunError.io(path: dest, operation: "rename", errno: errno) }
        ok = true
        syncDirectory(parent)
    }

    /// Writes `count` bytes at `base` to `fd`, retrying short writes and EINTR.
    private static func writeAll(_ fd: Int32, _ base: UnsafeRawPointer, _ count: Int, path: String) throws {
        var done = 0
        while done < count {
            let w = Glibc.write(fd, base + done, count - done)
            if w < 0 {
                if errno == EINTR { continue }
                throw OfflineRunError.io(path: path, operation: "write", errno: errno)
            }
            done += w
        }
    }

    private static func realpathString(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}
