import ClusterAdmin
import Foundation
import GRDB
import Shared

extension Store {
    /// Every worker the cluster has seen, newest registration first.
    public func workers() throws -> [WorkerSummary] {
        try read { db in
            let current = try Row.fetchAll(db, sql: "SELECT id, worker_id FROM shards WHERE state IN ('leased', 'running')")
            var shardOf: [String: Int64] = [:]
            for r in current { shardOf[r["worker_id"]] = r["id"] }
            return try Row.fetchAll(db, sql: "SELECT * FROM workers ORDER BY name").map { row in
                let id: String = row["id"]
                return WorkerSummary(
                    id: id, name: row["name"], host: row["host"],
                    device: jsonDecode(DeviceInfo.self, row["device"]) ?? DeviceInfo(kind: .cpu, index: 0, name: "?", memoryBytes: 0),
                    capabilities: jsonDecode([String].self, row["capabilities"]) ?? [], version: row["version"],
                    state: WorkerSummary.State(rawValue: row["state"]), status: WorkerSummary.Status(rawValue: row["status"]), lastSeen: dateFrom(row["last_seen"]),
                    registeredAt: dateFrom(row["registered_at"]), currentShard: shardOf[id],
                    progress: jsonDecode(ShardProgress.self, row["progress"]), telemetry: jsonDecode(DeviceTelemetry.self, row["telemetry"]))
            }
        }
    }

    /// Shards with their attempt history, optionally only those in `state` or of `jobId`.
    public func shards(state: String? = nil, jobId: Int64? = nil) throws -> [ShardSummary] {
        try read { db in
            var sql = "SELECT s.*, w.name AS worker_name FROM shards s LEFT JOIN workers w ON w.id = s.worker_id WHERE 1 = 1"
            var args: [any DatabaseValueConvertible] = []
            if let state { sql += " AND s.state = ?"; args.append(state) }
            if let jobId { sql += " AND s.job_id = ?"; args.append(jobId) }
            sql += " ORDER BY s.id"
            var attemptsByShard: [Int64: [ShardAttemptSummary]] = [:]
            for a in try Row.fetchAll(db, sql: "SELECT * FROM shard_attempts ORDER BY shard_id, attempt") {
                attemptsByShard[a["shard_id"], default: []].append(ShardAttemptSummary(
                    attempt: a["attempt"], leaseEpoch: a["lease_epoch"], workerId: a["worker_id"], workerName: a["worker_name"],
                    state: ShardAttemptSummary.State(rawValue: a["state"]), leasedAt: dateFrom(a["leased_at"]), startedAt: dateFrom(a["started_at"]),
                    endedAt: dateFrom(a["ended_at"]), message: a["message"]))
            }
            return try Row.fetchAll(db, sql: sql, arguments: StatementArguments(args)).map { row in
                let id: Int64 = row["id"]
                return ShardSummary(
                    id: id, jobId: row["job_id"], kind: row["kind"], state: ShardSummary.State(rawValue: row["state"]), attempts: row["attempts"],
                    failures: row["failures"], maxRetries: row["max_retries"], leaseEpoch: row["lease_epoch"],
                    workerId: row["worker_id"], workerName: row["worker_name"], createdAt: dateFrom(row["created_at"]),
                    finishedAt: dateFrom(row["finished_at"]), message: row["message"], output: row["output"],
                    history: attemptsByShard[id] ?? [], runId: row["run_id"], rank: row["rank"])
            }
        }
    }

    /// Counts for `status`.
    public func counts() throws -> (workers: [String: Int], shards: [String: Int], jobs: Int) {
        try read { db in
            var w: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM workers GROUP BY state") { w[r["state"]] = r["n"] }
            var s: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM shards GROUP BY state") { s[r["state"]] = r["n"] }
            let jobs = try Int.fetchOne(db, sql: "SELECT COUNT(*) FROM jobs") ?? 0
            return (w, s, jobs)
        }
    }

    /// Events recorded for a shard, oldest first.
    public func events(shardId: Int64) throws -> [(kind: String, message: String)] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT kind, message FROM events WHERE shard_id = ? ORDER BY id", arguments: [shardId]).map { ($0["kind"], $0["message"]) }
        }
    }
}

extension Store {
    /// Jobs, newest first (`id`: only that one, with its spec text).
    public func jobs(id: Int64? = nil, limit: Int = 200) throws -> [JobSummary] {
        try read { db in
            let rows = id == nil
                ? try Row.fetchAll(db, sql: "SELECT id, name, kind, state, created_at FROM jobs ORDER BY id DESC LIMIT ?", arguments: [limit])
                : try Row.fetchAll(db, sql: "SELECT id, name, kind, state, created_at, spec FROM jobs WHERE id = ?", arguments: [id])
            return try rows.map { row in
                let jobId: Int64 = row["id"]
                let runs = try String.fetchAll(db, sql: "SELECT id FROM runs WHERE job_id = ? ORDER BY created_at, id", arguments: [jobId])
                var byState: [String: Int] = [:]
                for r in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM shards WHERE job_id = ? GROUP BY state", arguments: [jobId]) {
                    byState[r["state"]] = r["n"]
                }
                return JobSummary(id: jobId, name: row["name"], kind: row["kind"], state: JobSummary.State(rawValue: row["state"]), createdAt: dateFrom(row["created_at"]),
                                  runs: runs, shardsByState: byState, spec: id == nil ? nil : row["spec"])
            }
        }
    }
}
