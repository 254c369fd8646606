@testable import ClusterAdmin
@testable import Coordinator
import Foundation
import Logging
@testable import Shared
import Testing

/// The alert lifecycle in SQLite: firing → notified → repeated → resolved, with grouping,
/// silences and a durable notification outbox.
@Suite("Alert lifecycle in the store")
struct AlertLifecycleTests {
    let path: String
    let store: Store

    init() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-alerts-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        path = dir.appendingPathComponent("c.sqlite").path
        store = try Store(path: path)
    }

    func signal(_ t: AlertSignal.Transition, run: String = "r1", rule: AlertRule = .nonFinite, series: String = "train/text_loss", step: Int64 = 1) -> AlertSignal {
        AlertSignal(transition: t, key: AlertKey(runId: run, rule: rule, series: series), severity: .critical,
                    summary: "\(series) \(t.rawValue) at step \(step)", step: step, time: 0)
    }

    @Test("a fire queues one notification, due after group_wait; firing again only updates the alert")
    func fireOnce() throws {
        var out = try store.recordAlertSignals([signal(.fire)], now: 100, groupWait: 0.5, queueNotifications: true)
        #expect(out.queued == 1 && out.transitions.count == 1)
        out = try store.recordAlertSignals([signal(.fire, step: 2)], now: 101, groupWait: 0.5, queueNotifications: true)
        #expect(out.queued == 0 && out.transitions.isEmpty)
        #expect(try store.nextAlertNotifications(now: 100.2).isEmpty, "not due before group_wait")
        let due = try store.nextAlertNotifications(now: 100.6)
        #expect(due.map(\.kind) == ["fire"])
        let alerts = try store.alerts(now: 101)
        #expect(alerts.count == 1 && alerts[0].state == "firing" && alerts[0].summary.contains("step 2"))
    }

    @Test("resolving notifies once; resolving what is not firing does nothing")
    func resolve() throws {
        _ = try store.recordAlertSignals([signal(.resolve)], now: 99, groupWait: 0, queueNotifications: true)
        #expect(try store.alerts(now: 99).isEmpty)
        _ = try store.recordAlertSignals([signal(.fire)], now: 100, groupWait: 0, queueNotifications: true)
        let fire = try store.nextAlertNotifications(now: 100)
        try store.markAlertNotificationsDelivered(fire.map(\.id), now: 100)
        _ = try store.recordAlertSignals([signal(.resolve)], now: 110, groupWait: 0, queueNotifications: true)
        #expect(try store.nextAlertNotifications(now: 110).map(\.kind) == ["resolve"])
        let a = try #require(try store.alerts(now: 110).first)
        #expect(a.state == "resolved" && a.notifications == 1 && a.resolvedAt != nil)
    }

    @Test("a burst of one run and rule is one message; other groups wait their turn, in order")
    func grouping() throws {
        _ = try store.recordAlertSignals([signal(.fire, series: "a"), signal(.fire, rule: .lossSpike, series: "b"), signal(.fire, series: "c")],
                                         now: 100, groupWait: 0.3, queueNotifications: true)
        let first = try store.nextAlertNotifications(now: 101)
        #expect(first.map(\.signal.key.series) == ["a", "c"], "same run and rule: together")
        try store.markAlertNotificationsDelivered(first.map(\.id), now: 101)
        #expect(try store.nextAlertNotifications(now: 101).map(\.signal.key.series) == ["b"])
    }

    @Test("a silenced run's alerts are stored but never sent; expiring the silence lets new ones through")
    func silences() throws {
        let s = try store.addSilence(runId: "r1", rule: "non_finite", comment: "known NaN", seconds: 3600, now: 50)
        _ = try store.recordAlertSignals([signal(.fire), signal(.fire, rule: .lossSpike)], now: 100, groupWait: 0, queueNotifications: true)
        let sent = try store.nextAlertNotifications(now: 100)
        #expect(sent.map(\.signal.rule) == [.lossSpike])
        try store.markAlertNotificationsDelivered(sent.map(\.id), now: 100)
        #expect(try store.alerts(now: 100).first { $0.rule == "non_finite" }?.silenced == true)
        #expect(try store.expireSilence(id: s.id, now: 200))
        #expect(try store.expireSilence(id: s.id, now: 201) == false)
        _ = try store.recordAlertSignals([signal(.fire, run: "r1", series: "train/mel_loss")], now: 300, groupWait: 0, queueNotifications: true)
        #expect(try store.nextAlertNotifications(now: 300).map(\.signal.key.series) == ["train/mel_loss"])
    }

    @Test("an alert still firing after repeat_interval is sent again, once per interval")
    func repeats() throws {
        _ = try store.recordAlertSignals([signal(.fire)], now: 0, groupWait: 0, queueNotifications: true)
        try store.markAlertNotificationsDelivered(try store.nextAlertNotifications(now: 0).map(\.id), now: 0)
        #expect(try store.enqueueRepeats(now: 3_000, repeatInterval: 3_600) == 0)
        #expect(try store.enqueueRepeats(now: 3_601, repeatInterval: 3_600) == 1)
        #expect(try store.enqueueRepeats(now: 3_602, repeatInterval: 3_600) == 0, "one pending repeat at a time")
        #expect(try store.nextAlertNotifications(now: 3_601).map(\.kind) == ["repeat"])
    }

    @Test("a failed attempt waits for its retry time and keeps its place; a permanent failure is given up")
    func retries() throws {
        _ = try store.recordAlertSignals([signal(.fire, series: "a"), signal(.fire, rule: .oom, series: "b")], now: 0, groupWait: 0, queueNotifications: true)
        let head = try store.nextAlertNotifications(now: 0)
        try store.markAlertNotificationsFailed(head.map(\.id), error: "HTTP 500", retryAt: 10)
        #expect(try store.nextAlertNotifications(now: 5).isEmpty, "in order: nothing overtakes the head while it waits")
        let again = try store.nextAlertNotifications(now: 10)
        #expect(again.map(\.id) == head.map(\.id) && again[0].attempts == 1)
        try store.markAlertNotificationsFailed(again.map(\.id), error: "invalid_payload", retryAt: nil)
        #expect(try store.nextAlertNotifications(now: 10).map(\.signal.key.series) == ["b"])
        #expect(try store.alertNotifications(state: "failed").count == 1)
    }

    @Test("pending notifications survive a restart (a new store on the same file); delivered ones stay delivered")
    func durable() throws {
        _ = try store.recordAlertSignals([signal(.fire, series: "a"), signal(.fire, rule: .oom, series: "b")], now: 0, groupWait: 0, queueNotifications: true)
        try store.markAlertNotificationsDelivered(try store.nextAlertNotifications(now: 0).map(\.id), now: 1)
        let reopened = try Store(path: path)
        #expect(try reopened.nextAlertNotifications(now: 2).map(\.signal.key.series) == ["b"])
        #expect(try reopened.alertNotifications(state: "delivered").map(\.signal.key.series) == ["a"])
    }

    @Test("without a notifier (console only) nothing is queued, but alerts are recorded")
    func consoleOnly() throws {
        let out = try store.recordAlertSignals([signal(.fire)], now: 0, groupWait: 0, queueNotifications: false)
        #expect(out.queued == 0 && out.transitions.count == 1)
        #expect(try store.nextAlertNotifications(now: 10).isEmpty)
        #expect(try store.alerts(now: 0).count == 1)
    }
}

/// The alert center between ingest and the store: rules see stored points; runs bring their own settings.
@Suite("Alert center")
struct AlertCenterTests {
    @Test("a run's own alert settings (its config's `alerts`) apply; other runs keep the defaults")
    func perRunSettings() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-center-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        let quiet = try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [
            "alerts": .object(["non_finite": .object(["enabled": .bool(false)])]),
        ]), defaultMaxRetries: 1)
        let loud = try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [:]), defaultMaxRetries: 1)
        let center = AlertCenter(store: store, registry: WorkerRegistry(), logger: Logger(label: "test"),
                                 groupWait: 0, repeatInterval: 3600, queueNotifications: true)
        for (i, run) in [quiet.runId!, loud.runId!].enumerated() {
            let nan = MetricPoint(runId: run, step: 10, key: "train/text_loss", value: .nan, wallTime: 1)
            await center.handle(.stored(.metrics(workerId: "w", entries: [SpoolEntry(sequence: UInt64(i + 1), points: [nan])])), now: 100)
        }
        let alerts = try store.alerts(now: 100)
        #expect(alerts.map(\.runId) == [loud.runId], "only the run with default settings alerts on NaN")
        #expect(alerts.first?.rule == "non_finite")
    }

    @Test("a run whose result was stored but whose completion notice was not (the coordinator died in between) is announced once at the next start; an old one is not")
    func completionRecoveredAfterACrash() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-center-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        let recent = try #require(try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [:]), defaultMaxRetries: 1).runId)
        let old = try #require(try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [:]), defaultMaxRetries: 1).runId)
        let now = Date().timeIntervalSince1970
        try await store.pool.write { db in
            try db.execute(sql: "UPDATE runs SET state = 'succeeded', finished_at = ?, exit_code = 0 WHERE id = ?", arguments: [now - 60, recent])
            try db.execute(sql: "UPDATE runs SET state = 'succeeded', finished_at = ?, exit_code = 0 WHERE id = ?", arguments: [now - 7 * 3600, old])
        }
        func completions() throws -> [String?] { try store.alerts(now: now).filter { $0.rule == "run_completed" }.map(\.runId) }
        let center = AlertCenter(store: store, registry: WorkerRegistry(), logger: Logger(label: "test"),
                                 groupWait: 0, repeatInterval: 3600, queueNotifications: true)
        await center.announceRunsFinishedUnannounced(now: now)
        #expect(try completions() == [recent], "the recent run is announced, the 7-hour-old one is not")
        let restarted = AlertCenter(store: store, registry: WorkerRegistry(), logger: Logger(label: "test"),
                                    groupWait: 0, repeatInterval: 3600, queueNotifications: true)
        await restarted.announceRunsFinishedUnannounced(now: now + 1)
        #expect(try completions() == [recent], "announced once, not at every start")
    }

    @Test("a NaN stored just before a crash whose alert was not is raised at the next start, once; a NaN already alerted is not raised again")
    func nonFiniteRecoveredAfterACrash() async throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-center-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
        let alerted = try #require(try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [:]), defaultMaxRetries: 1).runId)
        let lost = try #require(try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [:]), defaultMaxRetries: 1).runId)
        func points(_ run: String, nanAt: Int64) -> [MetricPoint] {
            (1...20).map { s in MetricPoint(runId: run, step: s, key: "train/text_loss", value: s == nanAt ? .nan : 2, wallTime: 1) }
        }
        // Both runs' points are stored; only the first run's NaN reached the rules before the "crash".
        let before = AlertCenter(store: store, registry: WorkerRegistry(), logger: Logger(label: "test"),
                                 groupWait: 0, repeatInterval: 3600, queueNotifications: true)
        let e1 = SpoolEntry(sequence: 1, points: points(alerted, nanAt: 10)), e2 = SpoolEntry(sequence: 2, points: points(lost, nanAt: 15))
        _ = try store.ingestSpool(workerId: "w", entries: [e1, e2])
        await before.handle(.stored(.metrics(workerId: "w", entries: [e1])), now: 100)
        func nonFinite() throws -> [String?] { try store.alerts(now: 200).filter { $0.rule == "non_finite" }.map(\.runId).sorted { ($0 ?? "") < ($1 ?? "") } }
        #expect(try nonFinite() == [alerted])
        let restarted = AlertCenter(store: store, registry: WorkerRegistry(), logger: Logger(label: "test"),
                                    groupWait: 0, repeatInterval: 3600, queueNotifications: true)
        await restarted.raiseLostNonFiniteAlerts(now: 200)
        #expect(try nonFinite() == [alerted, lost].sorted(), "the lost NaN alert is raised; the recorded one is not raised again")
        let again = AlertCenter(store: store, registry: WorkerRegistry(), logger: Logger(label: "test"),
                                groupWait: 0, repeatInterval: 3600, queueNotifications: true)
        await again.raiseLostNonFiniteAlerts(now: 300)
        #expect(try store.alerts(now: 300).filter { $0.rule == "non_finite" }.count == 2, "once, not at every start")
    }
}
