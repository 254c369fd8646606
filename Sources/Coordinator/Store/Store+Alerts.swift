import ClusterAdmin
import Foundation
import GRDB
import Shared

/// A notification waiting in (or delivered from) the alert outbox.
public struct AlertNotification: Sendable, Equatable {
    public var id: Int64
    public var alertId: Int64
    public var groupKey: String
    /// `fire`, `resolve`, `repeat` or `notify`.
    public var kind: String
    public var signal: AlertSignal
    public var attempts: Int
    public var createdAt: Double
}

/// What recording signals did (for the console and the notifier).
public struct AlertRecordOutcome: Sendable, Equatable {
    /// Signals that changed an alert's state (a repeated `fire` of a firing alert is not one).
    public var transitions: [AlertSignal] = []
    /// Notifications queued for delivery (not silenced).
    public var queued = 0
}

extension Store {
    /// Applies rule signals to the alert lifecycle in one transaction:
    /// - `fire`: a new alert (or one that had resolved) becomes `firing` and a `fire` notification is
    ///   queued, due after `groupWait`; a `fire` for an alert already firing only updates it.
    /// - `resolve`: a firing alert becomes `resolved` and a `resolve` notification is queued.
    /// - `notify`: a one-shot notice (completion, digest, lost worker …) is stored and queued.
    /// Notifications of a silenced run/rule are stored as `silenced` (never sent). With
    /// `queueNotifications` false (no Slack) nothing is queued.
    ///
    /// `consumer` (name, position): the ingest-log consumer whose reading produced these signals
    /// moves its cursor to `position` in the same transaction.
    public func recordAlertSignals(_ signals: [AlertSignal], now: Double, groupWait: Double, queueNotifications: Bool,
                                   consumer: (name: String, position: Int64)? = nil) throws -> AlertRecordOutcome {
        guard !signals.isEmpty || consumer != nil else { return AlertRecordOutcome() }
        return try write { db in
            var out = AlertRecordOutcome()
            if let consumer { try Self.setCursor(db, consumer.name, consumer.position) }
            let silences = try activeSilences(db, now: now)
            for signal in signals {
                let fp = signal.key.fingerprint
                let json = jsonString(signal) ?? "{}"
                let firing = try Int64.fetchOne(db, sql: "SELECT id FROM alerts WHERE fingerprint = ? AND state = 'firing' ORDER BY id DESC LIMIT 1", arguments: [fp])
                let alertId: Int64
                switch signal.transition {
                case .fire:
                    if let id = firing {
                        try db.execute(sql: "UPDATE alerts SET signal = ?, summary = ?, severity = ?, updated_at = ? WHERE id = ?",
                                       arguments: [json, signal.summary, signal.severity.rawValue, now, id])
                        continue
                    }
                    try insertAlert(db, signal, json: json, state: "firing", now: now)
                    alertId = db.lastInsertedRowID
                case .resolve:
                    guard let id = firing else { continue }
                    try db.execute(sql: "UPDATE alerts SET state = 'resolved', resolved_at = ?, updated_at = ?, signal = ? WHERE id = ?",
                                   arguments: [now, now, json, id])
                    alertId = id
                case .notify:
                    try insertAlert(db, signal, json: json, state: "notice", now: now)
                    alertId = db.lastInsertedRowID
                }
                out.transitions.append(signal)
                guard queueNotifications else { continue }
                let silenced = Self.isSilenced(signal, silences)
                try db.execute(sql: """
                    INSERT INTO alert_outbox (alert_id, group_key, kind, signal, created_at, due_at, state, next_attempt_at)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, arguments: [alertId, Self.groupKey(signal), signal.transition.rawValue, json, now, now + groupWait,
                                     silenced ? "silenced" : "pending", now + groupWait])
                if !silenced { out.queued += 1 }
            }
            return out
        }
    }

    private func insertAlert(_ db: Database, _ s: AlertSignal, json: String, state: String, now: Double) throws {
        try db.execute(sql: """
            INSERT INTO alerts (fingerprint, run_id, rule, series, severity, state, summary, signal, started_at, updated_at)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """, arguments: [s.key.fingerprint, s.key.runId, s.key.rule.rawValue, s.key.series, s.severity.rawValue, state,
                             s.summary, json, now, now])
    }

    /// Alerts of one run and rule share a message when they come within `group_wait`.
    static func groupKey(_ s: AlertSignal) -> String { "\(s.key.runId ?? "-")|\(s.key.rule.rawValue)" }

    private func activeSilences(_ db: Database, now: Double) throws -> [(run: String, rule: String?)] {
        try Row.fetchAll(db, sql: "SELECT run_id, rule FROM silences WHERE expires_at > ?", arguments: [now]).map { ($0[0], $0[1]) }
    }

    static func isSilenced(_ s: AlertSignal, _ silences: [(run: String, rule: String?)]) -> Bool {
        guard let run = s.key.runId else { return false }
        return silences.contains { $0.run == run && ($0.rule == nil || $0.rule == s.key.rule.rawValue) }
    }

    /// Queues a `repeat` notification for every alert firing without a notification for longer
    /// than `repeatInterval` seconds (and with none pending). Returns how many.
    public func enqueueRepeats(now: Double, repeatInterval: Double) throws -> Int {
        try write { db in
            let silences = try activeSilences(db, now: now)
            let due = try Row.fetchAll(db, sql: """
                SELECT a.id, a.signal FROM alerts a
                WHERE a.state = 'firing' AND COALESCE(a.last_notified_at, a.started_at) <= ?
                  AND NOT EXISTS (SELECT 1 FROM alert_outbox o WHERE o.alert_id = a.id AND o.state = 'pending')
                """, arguments: [now - repeatInterval])
            var n = 0
            for row in due {
                guard var signal = jsonDecode(AlertSignal.self, row[1]) else { continue }
                if Self.isSilenced(signal, silences) { continue }
                signal.transition = .fire
                try db.execute(sql: """
                    INSERT INTO alert_outbox (alert_id, group_key, kind, signal, created_at, due_at, state, next_attempt_at)
                    VALUES (?, ?, 'repeat', ?, ?, ?, 'pending', ?)
                    """, arguments: [row[0] as Int64, Self.groupKey(signal), jsonString(signal) ?? "{}", now, now, now])
                // Counts as notified now for the next interval even if delivery takes a while.
                try db.execute(sql: "UPDATE alerts SET last_notified_at = ? WHERE id = ?", arguments: [now, row[0] as Int64])
                n += 1
            }
            return n
        }
    }

    /// The next notifications to send, in order: the oldest pending one that is due, and every
    /// other due pending one of its group (one message). Silences added after queueing apply:
    /// such notifications become `silenced` here.
    public func nextAlertNotifications(now: Double, limit: Int = 20) throws -> [AlertNotification] {
        try write { db in
            let silences = try activeSilences(db, now: now)
            while true {
                guard let head = try Row.fetchOne(db, sql: "SELECT id, group_key FROM alert_outbox WHERE state = 'pending' ORDER BY id LIMIT 1") else { return [] }
                let rows = try Row.fetchAll(db, sql: """
                    SELECT id, alert_id, group_key, kind, signal, attempts, created_at, due_at, next_attempt_at FROM alert_outbox
                    WHERE state = 'pending' AND group_key = ? ORDER BY id LIMIT ?
                    """, arguments: [head[1] as String, limit])
                var out: [AlertNotification] = []
                var silencedIds: [Int64] = []
                for r in rows {
                    guard let signal = jsonDecode(AlertSignal.self, r[4]) else { silencedIds.append(r[0]); continue }
                    if Self.isSilenced(signal, silences) { silencedIds.append(r[0]); continue }
                    // In order: the head must be due; the rest of the group rides along if due.
                    let due: Double = max(r[7] as Double, r[8] as Double)
                    if due > now { if out.isEmpty && silencedIds.isEmpty { return [] } else { break } }
                    out.append(AlertNotification(id: r[0], alertId: r[1], groupKey: r[2], kind: r[3], signal: signal, attempts: r[5], createdAt: r[6]))
                }
                if !silencedIds.isEmpty {
                    for id in silencedIds { try db.execute(sql: "UPDATE alert_outbox SET state = 'silenced' WHERE id = ?", arguments: [id]) }
                    if out.isEmpty { continue }
                }
                return out
            }
        }
    }

    /// Records delivery of notifications (one transaction).
    public func markAlertNotificationsDelivered(_ ids: [Int64], now: Double) throws {
        try write { db in
            for id in ids {
                try db.execute(sql: "UPDATE alert_outbox SET state = 'delivered', delivered_at = ?, attempts = attempts + 1 WHERE id = ?", arguments: [now, id])
                try db.execute(sql: """
                    UPDATE alerts SET last_notified_at = ?, notifications = notifications + 1
                    WHERE id = (SELECT alert_id FROM alert_outbox WHERE id = ?)
                    """, arguments: [now, id])
            }
        }
    }

    /// Records a failed attempt: retried at `retryAt`, or given up (`retryAt` nil) with the error.
    public func markAlertNotificationsFailed(_ ids: [Int64], error: String, retryAt: Double?) throws {
        try write { db in
            for id in ids {
                if let retryAt {
                    try db.execute(sql: "UPDATE alert_outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ? WHERE id = ?", arguments: [retryAt, error, id])
                } else {
                    try db.execute(sql: "UPDATE alert_outbox SET attempts = attempts + 1, state = 'failed', last_error = ? WHERE id = ?", arguments: [error, id])
                }
            }
        }
    }

    /// Notifications in a state, oldest first (tests and diagnostics).
    public func alertNotifications(state: String) throws -> [AlertNotification] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT id, alert_id, group_key, kind, signal, attempts, created_at FROM alert_outbox WHERE state = ? ORDER BY id", arguments: [state]).compactMap { r in
                jsonDecode(AlertSignal.self, r[4]).map { AlertNotification(id: r[0], alertId: r[1], groupKey: r[2], kind: r[3], signal: $0, attempts: r[5], createdAt: r[6]) }
            }
        }
    }

    /// Firing alerts first, then the most recent others (at most `limit`).
    public func alerts(limit: Int = 50, now: Double = Date().timeIntervalSince1970) throws -> [AlertSummary] {
        try read { db in
            let silences = try activeSilences(db, now: now)
            return try Row.fetchAll(db, sql: """
                SELECT * FROM alerts ORDER BY CASE state WHEN 'firing' THEN 0 ELSE 1 END, updated_at DESC, id DESC LIMIT ?
                """, arguments: [limit]).map { r in
                let run: String? = r["run_id"]
                let rule: String = r["rule"]
                return AlertSummary(id: r["id"], runId: run, rule: rule, series: r["series"], severity: r["severity"], state: AlertSummary.State(rawValue: r["state"]),
                                   summary: r["summary"], startedAt: Date(timeIntervalSince1970: r["started_at"]),
                                   updatedAt: Date(timeIntervalSince1970: r["updated_at"]), resolvedAt: dateFrom(r["resolved_at"]),
                                   lastNotifiedAt: dateFrom(r["last_notified_at"]), notifications: r["notifications"],
                                   silenced: run.map { run in silences.contains { $0.run == run && ($0.rule == nil || $0.rule == rule) } } ?? false)
            }
        }
    }

    /// Adds a silence; returns it.
    public func addSilence(runId: String, rule: String?, comment: String, seconds: Double, now: Double = Date().timeIntervalSince1970) throws -> SilenceSummary {
        try write { db in
            try db.execute(sql: "INSERT INTO silences (run_id, rule, comment, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                           arguments: [runId, rule, comment, now, now + seconds])
            return SilenceSummary(id: db.lastInsertedRowID, runId: runId, rule: rule, comment: comment,
                           createdAt: Date(timeIntervalSince1970: now), expiresAt: Date(timeIntervalSince1970: now + seconds))
        }
    }

    /// Silences not yet expired.
    public func silences(now: Double = Date().timeIntervalSince1970) throws -> [SilenceSummary] {
        try read { db in
            try Row.fetchAll(db, sql: "SELECT * FROM silences WHERE expires_at > ? ORDER BY id", arguments: [now]).map {
                SilenceSummary(id: $0["id"], runId: $0["run_id"], rule: $0["rule"], comment: $0["comment"],
                        createdAt: Date(timeIntervalSince1970: $0["created_at"]), expiresAt: Date(timeIntervalSince1970: $0["expires_at"]))
            }
        }
    }

    /// Ends a silence now; false when there is no such active silence.
    public func expireSilence(id: Int64, now: Double = Date().timeIntervalSince1970) throws -> Bool {
        try write { db in
            try db.execute(sql: "UPDATE silences SET expires_at = ? WHERE id = ? AND expires_at > ?", arguments: [now, id, now])
            return db.changesCount > 0
        }
    }

    /// A run's own alert settings: the `alerts` object of its config (the job's `alerts:`), if any.
    /// - Throws: when the object does not decode (a field of the wrong type), naming it.
    public func runAlertConfiguration(_ runId: String) throws -> AlertRulesConfiguration? {
        let config = try read { db in try String.fetchOne(db, sql: "SELECT config FROM runs WHERE id = ?", arguments: [runId]) }
        guard let alerts = config.flatMap({ jsonDecode([String: JSONValue].self, $0) })?["alerts"] else { return nil }
        return try JSONCoding.decode(AlertRulesConfiguration.self, from: try JSONCoding.encode(alerts))
    }

    /// The runs that have not finished (queued or running), whose rule state matters.
    public func unfinishedRunIds() throws -> [String] {
        try read { db in try String.fetchAll(db, sql: "SELECT id FROM runs WHERE finished_at IS NULL") }
    }

    /// The run a shard belongs to (nil for a shard of no run) and, for a rank of a data-parallel
    /// gang, its rank (nil otherwise).
    public func runAndRank(ofShard shardId: Int64) throws -> (runId: String, rank: Int?)? {
        try read { db in
            guard let row = try Row.fetchOne(db, sql: "SELECT run_id, rank FROM shards WHERE id = ?", arguments: [shardId]),
                  let run: String = row["run_id"] else { return nil }
            return (run, row["rank"])
        }
    }

    /// A finished run's facts for `run_completed`: state, exit code, start and end, last checkpoint.
    public func finishedRun(_ runId: String) throws -> (state: RunState, exitCode: Int?, createdAt: Double, finishedAt: Double, checkpoint: String?)? {
        try read { db in
            guard let r = try Row.fetchOne(db, sql: "SELECT state, exit_code, created_at, finished_at FROM runs WHERE id = ? AND finished_at IS NOT NULL", arguments: [runId]) else { return nil }
            let checkpoint = try String.fetchOne(db, sql: "SELECT data FROM events WHERE run_id = ? AND kind = 'checkpoint_saved' ORDER BY id DESC LIMIT 1", arguments: [runId])
                .flatMap { jsonDecode([String: JSONValue].self, $0)?["path"]?.stringValue }
            return (r[0], r[1], r[2], r[3], checkpoint)
        }
    }
}
