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
    /// wall time of the first undelivered point. `wandb: false` (W&B is off) leaves its backlog
    /// out. The cost grows with the number of runs and of batches not yet delivered, never with
    /// the points already delivered.
    public func outboxBacklog(wandb: Bool = true, now: Date = Date()) throws -> [OutboxBacklog] {
        try read { db in
            var out: [OutboxBacklog] = []
            if wandb {
                var depth = 0
                var oldest: Double?
                let runs = try Row.fetchAll(db, sql: """
                    SELECT r.run_id, COALESCE(ws.cursor, 0) AS cursor FROM (SELECT DISTINCT run_id FROM series) r
                    LEFT JOIN wandb_state ws ON ws.run_id = r.run_id
                    """)
                for r in runs {
                    let run: String = r["run_id"], cursor: Int64 = r["cursor"]
                    // The batch holding the point right after the cursor (if the cursor is inside it) …
                    var firstWaiting: (first: Int64, data: Data)?
                    if let row = try Row.fetchOne(db, sql: """
                        SELECT first_seq, point_count FROM metric_batches WHERE run_id = ? AND first_seq <= ? ORDER BY first_seq DESC LIMIT 1
                        """, arguments: [run, cursor]) {
                        let first: Int64 = row[0], count: Int64 = row[1]
                        if first + count - 1 > cursor {
                            depth += Int(first + count - 1 - cursor)
                            if let data = try Data.fetchOne(db, sql: "SELECT data FROM metric_batches WHERE run_id = ? AND first_seq = ?", arguments: [run, first]) {
                                firstWaiting = (first, data)
                            }
                        }
                    }
                    // … and every batch after it.
                    depth += try Int.fetchOne(db, sql: "SELECT COALESCE(SUM(point_count), 0) FROM metric_batches WHERE run_id = ? AND first_seq > ?",
                                              arguments: [run, cursor]) ?? 0
                    if firstWaiting == nil, let row = try Row.fetchOne(db, sql: """
                        SELECT first_seq, data FROM metric_batches WHERE run_id = ? AND first_seq > ? ORDER BY first_seq LIMIT 1
                        """, arguments: [run, cursor]) {
                        firstWaiting = (row[0], row[1])
                    }
                    if let w = firstWaiting, let batch = try? PointBatch(decoding: Array(w.data)) {
                        let offset = Int(max(0, cursor + 1 - w.first))
                        if offset < batch.wallTimes.count { oldest = min(oldest ?? .infinity, batch.wallTimes[offset]) }
                    }
                }
                out.append(OutboxBacklog(sink: "wandb", depth: depth, oldestAgeSeconds: oldest.map { max(0, now.timeIntervalSince1970 - $0) } ?? 0))
            }
            let slackRow = try Row.fetchOne(db, sql: "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM alert_outbox WHERE state = 'pending'")
            let slackOldest: Double? = slackRow?["oldest"]
            out.append(OutboxBacklog(sink: "slack", depth: slackRow?["n"] ?? 0,
                                     oldestAgeSeconds: slackOldest.map { max(0, now.timeIntervalSince1970 - $0) } ?? 0))
            return out
        }
    }

    /// Alerts by state (`firing`, `resolved`, `notice`) and by rule.
    public func alertCounts() throws -> (byState: [String: Int], byRule: [String: Int]) {
        try read { db in
            var byState: [String: Int] = [:], byRule: [String: Int] = [:]
            for r in try Row.fetchAll(db, sql: "SELECT state, COUNT(*) AS n FROM alerts GROUP BY state") { byState[r["state"]] = r["n"] }
            for r in try Row.fetchAll(db, sql: "SELECT rule, COUNT(*) AS n FROM alerts GROUP BY rule") { byRule[r["rule"]] = r["n"] }
            return (byState, byRule)
        }
    }
}
