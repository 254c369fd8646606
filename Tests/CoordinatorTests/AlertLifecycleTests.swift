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

/// The alert center between ingest and the store: the rules read the store's ingest log from a
/// durable cursor; runs bring their own settings.
@Suite("Alert center")
struct AlertCenterTests {
    let dir: URL
    let store: Store

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-center-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
    }

    func center() -> AlertCenter {
        AlertCenter(store: store, registry: WorkerRegistry(), logger: Logger(label: "test"), groupWait: 0, repeatInterval: 3600, queueNotifications: true)
    }

    func run() throws -> String {
        try #require(try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [:]), defaultMaxRetries: 1).runId)
    }

    /// A steady, slightly noisy loss for `steps`, then `spike` (if any) from step `spikeAt` on.
    static func loss(_ run: String, _ steps: ClosedRange<Int64>, spikeAt: Int64 = .max, nanAt: Int64 = -1) -> [MetricPoint] {
        steps.map { s in
            let base = 2.0 + 0.01 * sin(Double(s))
            let v = s == nanAt ? .nan : (s >= spikeAt ? base * 3 : base)
            return MetricPoint(runId: run, step: s, key: "train/text_loss", value: v, wallTime: 1_700_000_000 + Double(s))
        }
    }

    func rules(_ rule: String) throws -> [String?] {
        try store.alerts(limit: 1_000, now: 0).filter { $0.rule == rule }.map(\.runId)
    }

    @Test("a run's own alert settings (its config's `alerts`) apply; other runs keep the defaults")
    func perRunSettings() async throws {
        let quiet = try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [
            "alerts": .object(["non_finite": .object(["enabled": .bool(false)])]),
        ]), defaultMaxRetries: 1)
        let loud = try store.enqueue(EnqueueRequest(kind: "synthetic", count: 1, payload: [:]), defaultMaxRetries: 1)
        for (i, run) in [quiet.runId!, loud.runId!].enumerated() {
            let nan = MetricPoint(runId: run, step: 10, key: "train/text_loss", value: .nan, wallTime: 1)
            _ = try store.ingestSpool(workerId: "w", entries: [SpoolEntry(sequence: UInt64(i + 1), points: [nan])])
        }
        await center().catchUp()
        #expect(try rules("non_finite") == [loud.runId], "only the run with default settings alerts on NaN")
    }

    @Test("what was committed while no rules ran (a crash right after the commit) is alerted at the next start, once: a NaN and a loss spike")
    func factsCommittedBeforeACrashAreAlertedOnce() async throws {
        let r = try run()
        // 200 steady steps, a sustained 3× excursion, then a NaN: stored, never seen by rules.
        _ = try store.ingestSpool(workerId: "w", entries: [SpoolEntry(sequence: 1, points: Self.loss(r, 1...200)),
                                                           SpoolEntry(sequence: 2, points: Self.loss(r, 201...230, spikeAt: 201, nanAt: 225))])
        #expect(try store.alerts(now: 0).isEmpty)
        await center().catchUp()
        #expect(try rules("loss_spike") == [r])
        #expect(try rules("non_finite") == [r])
        let cursor = try store.consumerPosition(AlertCenter.consumerName)
        #expect(cursor == (try store.ingestLogEnd()), "the cursor moved with the alerts")
        // Another start reads nothing new and raises nothing again.
        await center().catchUp()
        await center().catchUp()
        #expect(try rules("loss_spike").count == 1 && (try rules("non_finite")).count == 1)
    }

    @Test("rules rebuilt from the log after a restart keep their baselines: a spike right after the restart fires (a fresh rule would still be warming up)")
    func stateIsRebuiltFromTheLog() async throws {
        let r = try run()
        _ = try store.ingestSpool(workerId: "w", entries: [SpoolEntry(sequence: 1, points: Self.loss(r, 1...200))])
        await center().catchUp()
        #expect(try store.alerts(now: 0).isEmpty)
        // Restart: a new center, then 30 spiking steps (fewer than the 50-point warm-up a fresh
        // detector needs before it judges anything).
        let restarted = center()
        _ = try store.ingestSpool(workerId: "w", entries: [SpoolEntry(sequence: 2, points: Self.loss(r, 201...230, spikeAt: 201))])
        await restarted.catchUp()
        #expect(try rules("loss_spike") == [r])
        // Without the rebuild the same input raises nothing: the test has teeth.
        let other = try run()
        _ = try store.ingestSpool(workerId: "w2", entries: [SpoolEntry(sequence: 1, points: Self.loss(other, 201...230, spikeAt: 201))])
        await center().catchUp()
        #expect(try rules("loss_spike") == [r])
    }

    @Test("a finished run is announced from its logged result, also when the coordinator stopped between the result's commit and the notice")
    func completionFromTheLog() async throws {
        let session = try store.register(workerId: "w1", request: RegisterRequest(
            name: "w1", host: "h", device: DeviceInfo(kind: .cpu, index: 0, name: "cpu", memoryBytes: 1),
            capabilities: ["shard:synthetic"], version: "t", pid: 1, proof: .none)).session
        let r = try run()
        let lease = try #require(try store.lease(workerId: "w1", workerName: "w1", session: session, kinds: ["synthetic"]))
        _ = try store.ingest(workerId: "w1", session: session, sequence: 1, .event(EventRequest(kind: .shardStarted, shard: lease.shard, message: "", wallTime: 0)))
        let done = try store.ingest(workerId: "w1", session: session, sequence: 2, .result(ResultRequest(shard: lease.shard, outcome: .succeeded, message: "ok")))
        #expect(done.disposition?.finishedRun == r)
        // The result is committed; no rules ran (the crash). The next start announces it.
        await center().catchUp()
        #expect(try rules("run_completed") == [r])
        await center().catchUp()
        #expect(try rules("run_completed") == [r], "once")
    }

    @Test("a lost worker's alert comes from the log entry written with the loss")
    func workerLostFromTheLog() async throws {
        _ = try store.register(workerId: "w9", request: RegisterRequest(
            name: "box-a-gpu0", host: "h", device: DeviceInfo(kind: .cpu, index: 0, name: "cpu", memoryBytes: 1),
            capabilities: [], version: "t", pid: 1, proof: .none))
        _ = try store.markWorkerLost(workerId: "w9", silentFor: 12)
        await center().catchUp()
        let lost = try store.alerts(now: 0).filter { $0.rule == "worker_lost" }
        #expect(lost.count == 1 && lost.first?.summary.contains("box-a-gpu0") == true)
    }
}
