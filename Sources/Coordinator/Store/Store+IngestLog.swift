import Foundation
import GRDB
import Shared

/// One fact the store committed, as its consumers read it from the ingest log.
public struct IngestLogEntry: Sendable {
    public enum Fact: Sendable {
        /// Points stored for a run (after step de-duplication), in arrival order, as stored.
        case points(PointBatch)
        /// An event a worker sent (or a spool entry carried).
        case event(EventRequest)
        /// A shard result that was applied (or refused: see the disposition).
        case result(ResultRequest, accepted: Bool, requeued: Bool, finishedRun: String?)
        /// A worker was declared lost; `runs` are the runs of the shards it held.
        case workerLost(name: String, requeuedShards: [Int64], runs: [String])
        /// An evaluation completed (its scores are stored; its reports are to be written).
        case evalCompleted(evalId: Int64)
    }

    /// The entry's position in the log (increasing; a consumer's cursor is the last one it took).
    public var sequence: Int64
    /// When it was committed (seconds since 1970): the rules' clock for it, so that reading the
    /// log again gives the same decisions.
    public var at: Double
    public var runId: String?
    public var workerId: String?
    public var fact: Fact
}

/// The ingest log: every fact that something reacts to after a commit (points, worker events,
/// results, lost workers) is appended to `ingest_log` in the transaction that stores it. Each
/// consumer (the alert rules, …) reads it in order from its own durable cursor in
/// `consumer_cursors` and moves the cursor in the same transaction as its own writes, so a crash
/// between a commit and its consequences loses nothing and doubles nothing: the consumer
/// continues from its cursor.
extension Store {
    enum LogKind: String {
        case points, event, result
        case workerLost = "worker_lost"
        case evalDone = "eval_done"
    }

    /// Appends one entry (inside the transaction that stores the fact).
    static func appendLog(_ db: Database, _ kind: LogKind, runId: String?, workerId: String?, ref: Int64? = nil,
                          data: [UInt8]? = nil, detail: String? = nil, at: Double) throws {
        let statement = try db.cachedStatement(sql: "INSERT INTO ingest_log (kind, run_id, worker_id, ref, data, detail, at) VALUES (?, ?, ?, ?, ?, ?, ?)")
        try statement.execute(arguments: [kind.rawValue, runId, workerId, ref, data.map { Data($0) }, detail, at])
    }

    /// Stores an event a worker sent and logs it for the consumers.
    static func recordWorkerEvent(_ db: Database, workerId: String, _ e: EventRequest, now: Double) throws {
        let runId: String? = try e.shard.flatMap { try String.fetchOne(db, sql: "SELECT run_id FROM shards WHERE id = ?", arguments: [$0.shardId]) }
        let id = try insertEvent(db, kind: e.kind.rawValue, message: e.message, data: String(decoding: e.data, as: UTF8.self),
                                 workerId: workerId, shardId: e.shard?.shardId, leaseEpoch: e.shard?.leaseEpoch, runId: runId,
                                 wallTime: e.wallTime, receivedAt: now)
        try appendLog(db, .event, runId: runId, workerId: workerId, ref: id, at: now)
    }

    /// Writes one row of `events` (the only place that does): a worker's event, or a note of the
    /// coordinator's own (`resume`, `downshift`, `cancel`, `lost`, `retention`, media of an
    /// evaluation, …) for a run's log and the W&B outbox. Returns the row's id.
    @discardableResult
    static func insertEvent(_ db: Database, kind: String, message: String, data: String = "", workerId: String? = nil, shardId: Int64? = nil,
                            leaseEpoch: Int64? = nil, runId: String?, wallTime: Double, receivedAt: Double) throws -> Int64 {
        let insert = try db.cachedStatement(sql: """
            INSERT INTO events (worker_id, shard_id, run_id, lease_epoch, kind, message, data, wall_time, received_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
            """)
        try insert.execute(arguments: [workerId, shardId, runId, leaseEpoch, kind, message, data, wallTime, receivedAt])
        return db.lastInsertedRowID
    }

    /// The newest position of the log (0 when empty).
    public func ingestLogEnd() throws -> Int64 {
        try read { db in try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM ingest_log") ?? 0 }
    }

    /// A consumer's durable position.
    public func consumerPosition(_ name: String) throws -> Int64 {
        try read { db in try Self.cursor(db, name) }
    }

    /// Moves a consumer's durable position (a consumer whose own effects are outside the store,
    /// such as files, moves it after they are done).
    public func setConsumerPosition(_ name: String, _ position: Int64) throws {
        try write { db in try Self.setCursor(db, name, position) }
    }

    /// What one read of the log found.
    public struct IngestLogChunk: Sendable {
        public var entries: [IngestLogEntry]
        /// The last position read (entries the reader skipped included): where the next read
        /// starts, and what a consumer that has handled `entries` may move its cursor to.
        public var through: Int64
    }

    /// The entries after `after`, in order, reading at most `limit` rows. With `runs`, only
    /// entries of those runs and entries of no run (`through` bounds the read: a replay up to a
    /// cursor).
    /// `evalsOnly`: only `evalCompleted` entries (the report writer); `through` then also
    /// covers the entries of other kinds up to the end of the log when fewer than `limit` were found.
    public func ingestLog(after: Int64, through: Int64 = .max, limit: Int, runs: Set<String>? = nil, evalsOnly: Bool = false) throws -> IngestLogChunk {
        try read { db in
            var out: [IngestLogEntry] = []
            var last = after
            let rows = try Row.fetchAll(db, sql: """
                SELECT l.seq, l.kind, l.run_id, l.worker_id, l.ref, l.data, l.detail, l.at FROM ingest_log l
                WHERE l.seq > ? AND l.seq <= ? \(evalsOnly ? "AND l.kind = 'eval_done'" : "") ORDER BY l.seq LIMIT ?
                """, arguments: [after, through, limit])
            if evalsOnly, rows.count < limit {
                last = max(after, min(through, try Int64.fetchOne(db, sql: "SELECT MAX(seq) FROM ingest_log") ?? after))
            }
            let batchData = try db.cachedStatement(sql: "SELECT data FROM metric_batches WHERE id = ?")
            let eventRow = try db.cachedStatement(sql: "SELECT * FROM events WHERE id = ?")
            for row in rows {
                let runId: String? = row["run_id"]
                let seq: Int64 = row["seq"], at: Double = row["at"], workerId: String? = row["worker_id"]
                last = max(last, seq)
                if let runs, let runId, !runs.contains(runId) { continue }
                let kind: String = row["kind"]
                let fact: IngestLogEntry.Fact
                switch LogKind(rawValue: kind) {
                case .points:
                    guard let ref: Int64 = row["ref"], runId != nil,
                          let batch = try recentBatches.batch(id: ref, firstSeq: nil, orLoad: {
                              try Data.fetchOne(batchData, arguments: [ref]).map { try PointBatch(decoding: Array($0)) }
                          }) else { continue }
                    fact = .points(batch)
                case .event:
                    guard let ref: Int64 = row["ref"], let e = try Row.fetchOne(eventRow, arguments: [ref]) else { continue }
                    let shardId: Int64? = e["shard_id"], epoch: Int64? = e["lease_epoch"]
                    let kindText: String = e["kind"], dataText: String = e["data"]
                    fact = .event(EventRequest(kind: EventRequest.Kind(rawValue: kindText),
                                               shard: shardId.map { ShardRef(shardId: $0, leaseEpoch: epoch ?? 0) },
                                               message: e["message"], data: Array(dataText.utf8), wallTime: e["wall_time"]))
                case .result:
                    guard let data: Data = row["data"] else { continue }
                    let request = try ResultRequest.decode(Array(data))
                    let d = jsonDecode([String: JSONValue].self, row["detail"]) ?? [:]
                    fact = .result(request, accepted: d["accepted"] == .bool(true), requeued: d["requeued"] == .bool(true),
                                   finishedRun: d["finished_run"]?.stringValue)
                case .workerLost:
                    let d = jsonDecode(WorkerLostDetail.self, row["detail"]) ?? WorkerLostDetail(name: workerId ?? "?", requeued: [], runs: [])
                    fact = .workerLost(name: d.name, requeuedShards: d.requeued, runs: d.runs)
                case .evalDone:
                    guard let ref: Int64 = row["ref"] else { continue }
                    fact = .evalCompleted(evalId: ref)
                case nil:
                    continue // written by a newer coordinator: not this one's to interpret
                }
                out.append(IngestLogEntry(sequence: seq, at: at, runId: runId, workerId: workerId, fact: fact))
            }
            return IngestLogChunk(entries: out, through: last)
        }
    }

    struct WorkerLostDetail: Codable {
        var name: String
        var requeued: [Int64]
        var runs: [String]
    }
}
