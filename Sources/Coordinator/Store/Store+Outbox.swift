import Foundation
import GRDB
import Shared

/// How much a delivery sink still has to send, for `/metrics` and the dashboard.
public struct OutboxBacklog: Sendable, Equatable {
    /// `wandb` (metric points not yet in the W&B stream or offline log) or `slack` (alert
    /// notifications not yet accepted by the webhook).
    public var sink: String
    /// Items waiting.
    public var depth: Int
    /// Seconds since the oldest waiting item was logged or raised (0 when nothing waits).
    public var oldestAgeSeconds: Double

    public init(sink: String, depth: Int, oldestAgeSeconds: Double) {
        self.sink = sink
        self.depth = depth
        self.oldestAgeSeconds = oldestAgeSeconds
    }
}

extension Store {
    /// The W&B and Slack backlogs now. W&B counts the points past each run's delivery cursor
    /// (every run's points are meant for W&B when it is on); the oldest age is taken from the
    /// wall time of the first undelivered point.
    public func outboxBacklog(now: Date = Date()) throws -> [OutboxBacklog] {
        try pool.read { db in
            var depth = 0
            var oldest: Double?
            let rows = try Row.fetchAll(db, sql: """
                SELECT mb.run_id, mb.first_seq, mb.point_count, mb.data, COALESCE(ws.cursor, 0) AS cursor
                FROM metric_batches mb LEFT JOIN wandb_state ws ON ws.run_id = mb.run_id
                WHERE mb.first_seq + mb.point_count - 1 > COALESCE(ws.cursor, 0)
                ORDER BY mb.run_id, mb.first_seq
                """)
            var seenRun = Set<String>()
            for r in rows {
                let first: Int64 = r["first_seq"], count: Int64 = r["point_count"], cursor: Int64 = r["cursor"]
                let waiting = first > cursor ? count : first + count - 1 - cursor
                depth += Int(waiting)
                let run: String = r["run_id"]
                // The first undelivered batch of each run holds its oldest waiting point.
                let data: Data = r["data"]
                if seenRun.insert(run).inserted, let batch = try? PointBatch(decoding: Array(data)) {
                    let offset = Int(max(0, cursor + 1 - first))
                    if offset < batch.wallTimes.count { oldest = min(oldest ?? .infinity, batch.wallTimes[offset]) }
                }
            }
            let wandb = OutboxBacklog(sink: "wandb", depth: depth, oldestAgeSeconds: oldest.map { max(0, now.timeIntervalSince1970 - $0) } ?? 0)
            let slackRow = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM alert_outbox WHERE state = 'pending'")
            let slackOldest: Double? = slackRow?["oldest"]
            let slack = OutboxBacklog(sink: "slack", depth: slackRow?["n"] ?? 0,
                                      oldestAgeSeconds: slackOldest.map { max(0, now.timeIntervalSince1970 - $0) } ?? 0)
            return [wandb, slack]
        }
    }

    /// Alerts by state (`firing`, `resolved`, `notice`) and by rule.
    public func alertCounts() throws -> (byState: [String: Int], byRule: [String: Int]) {
        try pool.read { db in
            var byState: [String: Int] = [:], byRule: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM alerts GROUP BY state") { byState[r["state"]] = r["n"] }
            for r in try Row.fetchAll(db, sql: "SELECT rule, COUNT(*) AS n FROM alerts GROUP BY rule") { byRule[r["rule"]] = r["n"] }
            return (byState, byRule)
        }
    }
}
