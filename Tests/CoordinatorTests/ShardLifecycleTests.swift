@testable import ClusterAdmin
@testable import Coordinator
import Foundation
@testable import Shared
import Testing

/// The shard state machine as stored in SQLite: every transition one transaction.
@Suite("Shard lifecycle in the store")
struct ShardLifecycleTests {
    let dir: URL
    let store: Store

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-store-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
    }

    func register(_ id: String, activeShard: ShardRef? = nil) throws -> UInt64 {
        let req = RegisterRequest(name: id, host: "h", device: DeviceInfo(kind: .cpu, index: 0, name: "cpu", memoryBytes: 1),
                                  capabilities: ["shard:sleep"], version: "t", pid: 1, proof: .none, activeShard: activeShard)
        return try store.register(workerId: id, request: req).session
    }

    func enqueue(_ n: Int, retries: Int = 2) throws -> [Int64] {
        try store.enqueue(EnqueueRequest(kind: "sleep", count: n, payload: [:], maxRetries: retries), defaultMaxRetries: 3).shardIds
    }

    @Test("the database is in WAL mode with every migration applied")
    func schema() throws {
        #expect(try store.schemaVersion() == 15)
        let mode = try store.pool.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        #expect(mode == "wal")
    }

    @Test("queued → leased → running → succeeded, with one attempt recorded")
    func happyPath() throws {
        let s = try register("w1")
        let id = try #require(try enqueue(1).first)
        let a = try #require(try store.lease(workerId: "w1", workerName: "w1", session: s, kinds: ["sleep"]))
        #expect(a.shard == ShardRef(shardId: id, leaseEpoch: 1))
        #expect(a.attempt == 1)
        var seq: UInt64 = 0
        func next() -> UInt64 { seq += 1; return seq }
        let started = try store.ingest(workerId: "w1", session: s, sequence: next(), .event(EventRequest(kind: .shardStarted, shard: a.shard, message: "", wallTime: 0)))
        #expect(started.started == a.shard)
        #expect(try store.shards().first?.state == "running")
        let done = try store.ingest(workerId: "w1", session: s, sequence: next(), .result(ResultRequest(shard: a.shard, outcome: .succeeded, message: "ok")))
        #expect(done.ack.accepted)
        let shard = try #require(try store.shards().first)
        #expect(shard.state == "succeeded")
        #expect(shard.history.map(\.state) == ["succeeded"])
    }

    @Test("a retried poll gets the shard already leased to it, never a second one")
    func pollIsIdempotent() throws {
        let s = try register("w1")
        _ = try enqueue(2)
        let first = try store.lease(workerId: "w1", workerName: "w1", session: s, kinds: ["sleep"])
        let again = try store.lease(workerId: "w1", workerName: "w1", session: s, kinds: ["sleep"])
        #expect(first == again)
        #expect(try store.shards(state: "queued").count == 1)
    }

    @Test("a lost worker's shard is requeued with a new lease epoch; the stale holder's result is refused")
    func fencing() throws {
        let s1 = try register("w1")
        let s2 = try register("w2")
        _ = try enqueue(1)
        let a1 = try #require(try store.lease(workerId: "w1", workerName: "w1", session: s1, kinds: ["sleep"]))
        #expect(try store.markWorkerLost(workerId: "w1", silentFor: 10.5) == [a1.shard.shardId])
        let a2 = try #require(try store.lease(workerId: "w2", workerName: "w2", session: s2, kinds: ["sleep"]))
        #expect(a2.shard.shardId == a1.shard.shardId)
        #expect(a2.shard.leaseEpoch == a1.shard.leaseEpoch + 1)
        #expect(a2.attempt == 2)
        let stale = try store.ingest(workerId: "w1", session: s1, sequence: 1, .result(ResultRequest(shard: a1.shard, outcome: .succeeded)))
        #expect(!stale.ack.accepted)
        #expect(stale.ack.note.contains("stale lease"))
        let fresh = try store.ingest(workerId: "w2", session: s2, sequence: 1, .result(ResultRequest(shard: a2.shard, outcome: .succeeded)))
        #expect(fresh.ack.accepted)
        let shard = try #require(try store.shards().first)
        #expect(shard.history.map(\.state) == ["lost", "succeeded"])
        #expect(shard.history.map(\.workerName) == ["w1", "w2"])
    }

    @Test("a retried result with the same (session, sequence) is applied once and answered the same")
    func dedup() throws {
        let s = try register("w1")
        _ = try enqueue(1)
        let a = try #require(try store.lease(workerId: "w1", workerName: "w1", session: s, kinds: ["sleep"]))
        let first = try store.ingest(workerId: "w1", session: s, sequence: 7, .result(ResultRequest(shard: a.shard, outcome: .failed, message: "x")))
        let retry = try store.ingest(workerId: "w1", session: s, sequence: 7, .result(ResultRequest(shard: a.shard, outcome: .failed, message: "x")))
        #expect(!first.duplicate)
        #expect(retry.duplicate)
        #expect(retry.ack == first.ack)
        #expect(try store.shards().first?.failures == 1, "the failure was counted once")
        #expect(try store.ingest(workerId: "w1", session: s, sequence: 3, .result(ResultRequest(shard: a.shard, outcome: .failed))).duplicate)
    }

    func entry(_ seq: UInt64, run: String = "r1", steps: Range<Int64>) -> SpoolEntry {
        SpoolEntry(sequence: seq, points: steps.flatMap { step in
            ["train/text_loss", "train/mel_loss"].map { MetricPoint(runId: run, step: step, key: $0, value: Double(step), wallTime: 1) }
        })
    }

    @Test("spool entries are stored exactly once across re-sends, by the worker's spool sequence")
    func spoolDedup() throws {
        let first = try store.ingestSpool(workerId: "w1", entries: [entry(1, steps: 0..<5), entry(2, steps: 5..<10)])
        #expect(first.highWater == 2)
        #expect(first.storedPoints == 20)
        // A lost ack: the same entries again, plus one new.
        let again = try store.ingestSpool(workerId: "w1", entries: [entry(1, steps: 0..<5), entry(2, steps: 5..<10), entry(3, steps: 10..<12)])
        #expect(again.highWater == 3)
        #expect(again.storedPoints == 4)
        #expect(try store.metricSeries(runId: "r1", key: "train/text_loss").map(\.step) == Array(0..<12))
        #expect(try store.pointCounts(runId: "r1") == ["train/text_loss": 12, "train/mel_loss": 12])
        // Another worker's sequences are its own.
        #expect(try store.ingestSpool(workerId: "w2", entries: [entry(1, run: "r2", steps: 0..<1)]).storedPoints == 2)
    }

    @Test("registration tells the worker its spool high-water mark")
    func markAtRegistration() throws {
        _ = try store.ingestSpool(workerId: "w1", entries: [entry(1, steps: 0..<1), entry(2, steps: 1..<2)])
        let req = RegisterRequest(name: "w1", host: "h", device: DeviceInfo(kind: .cpu, index: 0, name: "cpu", memoryBytes: 1),
                                  capabilities: [], version: "t", pid: 1, proof: .none)
        #expect(try store.register(workerId: "w1", request: req).spoolHighWater == 2)
        #expect(try store.register(workerId: "w9", request: req).spoolHighWater == 0)
    }

    @Test("an entry after a gap is not stored; the worker re-sends from the mark")
    func spoolGap() throws {
        _ = try store.ingestSpool(workerId: "w1", entries: [entry(1, steps: 0..<1)])
        let gap = try store.ingestSpool(workerId: "w1", entries: [entry(3, steps: 2..<3)])
        #expect(gap.highWater == 1)
        #expect(gap.storedEntries == 0)
    }

    @Test("NaN and infinities are stored bit for bit; series can be read by step range")
    func nonFinite() throws {
        _ = try store.ingestSpool(workerId: "w1", entries: [SpoolEntry(sequence: 1, points: [
            MetricPoint(runId: "r", step: 1, key: "k", value: .nan, wallTime: 0),
            MetricPoint(runId: "r", step: 2, key: "k", value: .infinity, wallTime: 0),
            MetricPoint(runId: "r", step: 3, key: "k", value: -.infinity, wallTime: 0),
        ])])
        let series = try store.metricSeries(runId: "r", key: "k")
        #expect(series[0].value.isNaN)
        #expect(series[1].value == .infinity)
        #expect(series[2].value == -.infinity)
        #expect(try store.metricSeries(runId: "r", key: "k", fromStep: 2, toStep: 2).map(\.step) == [2])
        #expect(try store.metricKeys(runId: "r") == ["k"])
    }

    @Test("a request under a session that is not the worker's is refused as unknown")
    func unknownSession() throws {
        _ = try register("w1")
        #expect(throws: ProtocolError.self) {
            try store.ingest(workerId: "w1", session: 12345, sequence: 1, .event(EventRequest(kind: .log, shard: nil, message: "", wallTime: 0)))
        }
    }

    @Test("failures beyond the retry budget fail the shard for good")
    func retryBudget() throws {
        let s = try register("w1")
        _ = try enqueue(1, retries: 1)
        var seq: UInt64 = 0
        for attempt in 1...2 {
            let a = try #require(try store.lease(workerId: "w1", workerName: "w1", session: s, kinds: ["sleep"]))
            #expect(a.attempt == attempt)
            seq += 1
            let r = try store.ingest(workerId: "w1", session: s, sequence: seq, .result(ResultRequest(shard: a.shard, outcome: .failed, message: "boom", logTail: ["last line"])))
            #expect(r.disposition?.requeued == (attempt == 1))
        }
        let shard = try #require(try store.shards().first)
        #expect(shard.state == "failed")
        #expect(shard.message.contains("retry budget of 1 exhausted"))
        #expect(shard.message.contains("last line"))
        #expect(try store.lease(workerId: "w1", workerName: "w1", session: s, kinds: ["sleep"]) == nil)
    }

    @Test("a restarted worker re-attaching with its lease keeps it; without it the shard is requeued")
    func reattach() throws {
        let s1 = try register("w1")
        _ = try enqueue(2)
        let a = try #require(try store.lease(workerId: "w1", workerName: "w1", session: s1, kinds: ["sleep"]))
        let req = RegisterRequest(name: "w1", host: "h", device: DeviceInfo(kind: .cpu, index: 0, name: "cpu", memoryBytes: 1),
                                  capabilities: ["shard:sleep"], version: "t", pid: 2, proof: .none, activeShard: a.shard)
        let kept = try store.register(workerId: "w1", request: req)
        #expect(kept.activeShardKept)
        #expect(kept.requeued.isEmpty)
        let fresh = try store.register(workerId: "w1", request: RegisterRequest(name: "w1", host: "h", device: req.device, capabilities: req.capabilities, version: "t", pid: 3, proof: .none))
        #expect(!fresh.activeShardKept)
        #expect(fresh.requeued == [a.shard.shardId])
    }

    @Test("a worker only leases kinds it advertises")
    func capabilities() throws {
        let s = try register("w1")
        _ = try store.enqueue(EnqueueRequest(kind: "echo", count: 1, payload: [:]), defaultMaxRetries: 1)
        #expect(try store.lease(workerId: "w1", workerName: "w1", session: s, kinds: ["sleep"]) == nil)
        #expect(try store.lease(workerId: "w1", workerName: "w1", session: s, kinds: ["echo"]) != nil)
    }
}

@Suite("Worker registry (heartbeat hot path)")
struct WorkerRegistryTests {
    @Test("a heartbeat for a shard the worker no longer holds is answered with a cancel")
    func cancelsStaleShards() throws {
        let r = WorkerRegistry()
        r.upsert(workerId: "w", name: "w", session: 9, capabilities: ["shard:sleep"])
        let held = ShardRef(shardId: 1, leaseEpoch: 1)
        r.leaseGranted(workerId: "w", held)
        let ok = try r.heartbeat(workerId: "w", session: 9, HeartbeatRequest(status: .busy, progress: ShardProgress(shard: held, step: 1, totalSteps: 2, stepsPerSecond: 1))).get()
        #expect(ok.reply.commands.isEmpty)
        r.leaseEnded(shardId: 1)
        let stale = try r.heartbeat(workerId: "w", session: 9, HeartbeatRequest(status: .busy, progress: ShardProgress(shard: held, step: 2, totalSteps: 2, stepsPerSecond: 1))).get()
        guard case .cancelShard(let ref, _) = stale.reply.commands.first else { Issue.record("expected a cancel"); return }
        #expect(ref == held)
    }

    @Test("a stop asked for a lease that has already ended (a gang's stop racing its rank's own result) never stops the shard's next lease")
    func lateCancelKeepsTheNextLease() throws {
        let r = WorkerRegistry()
        r.upsert(workerId: "w", name: "w", session: 9, capabilities: ["shard:train"])
        let first = ShardRef(shardId: 7, leaseEpoch: 1), next = ShardRef(shardId: 7, leaseEpoch: 2)
        r.leaseGranted(workerId: "w", first)
        r.leaseEnded(shardId: 7)
        r.requestCancel(first, reason: "another rank of its gang ended") // arrives after the rank's result
        r.leaseGranted(workerId: "w", next)
        let beat = try r.heartbeat(workerId: "w", session: 9, HeartbeatRequest(status: .busy, progress: ShardProgress(shard: next, step: 1, totalSteps: 9, stepsPerSecond: 1))).get()
        #expect(beat.reply.commands.isEmpty, "the new lease runs: \(beat.reply.commands)")
        r.requestCancel(next, reason: "cancelled by the user")
        let stop = try r.heartbeat(workerId: "w", session: 9, HeartbeatRequest(status: .busy, progress: ShardProgress(shard: next, step: 2, totalSteps: 9, stepsPerSecond: 1))).get()
        guard case .cancelShard(let ref, _) = stop.reply.commands.first else { Issue.record("expected a cancel"); return }
        #expect(ref == next)
    }

    @Test("a wrong session is refused; silence beyond the limit marks the worker lost; a heartbeat revives it")
    func liveness() throws {
        let r = WorkerRegistry()
        r.upsert(workerId: "w", name: "w", session: 9, capabilities: [])
        if case .success = r.heartbeat(workerId: "w", session: 8, HeartbeatRequest(status: .idle)) { Issue.record("wrong session accepted") }
        #expect(r.expire(lostAfter: .seconds(10)).isEmpty)
        let lost = r.expire(lostAfter: .seconds(10), now: .now + .seconds(11))
        #expect(lost.map(\.workerId) == ["w"])
        #expect(r.expire(lostAfter: .seconds(10), now: .now + .seconds(12)).isEmpty, "lost is reported once")
        let back = try r.heartbeat(workerId: "w", session: 9, HeartbeatRequest(status: .idle)).get()
        #expect(back.revived)
    }

    @Test("dirty heartbeat state is handed out once for the batched flush")
    func dirtyBatches() {
        let r = WorkerRegistry()
        r.upsert(workerId: "a", name: "a", session: 1, capabilities: [])
        r.upsert(workerId: "b", name: "b", session: 2, capabilities: [])
        _ = r.heartbeat(workerId: "a", session: 1, HeartbeatRequest(status: .idle))
        _ = r.heartbeat(workerId: "b", session: 2, HeartbeatRequest(status: .busy))
        #expect(Set(r.takeDirty().map(\.workerId)) == ["a", "b"])
        #expect(r.takeDirty().isEmpty)
    }
}

@Suite("Coordinator configuration")
struct CoordinatorConfigurationTests {
    @Test("defaults are valid: loopback, no token")
    func defaults() throws { try CoordinatorConfiguration().validate() }

    @Test("non-loopback needs a token or --insecure")
    func tokenOffLoopback() throws {
        var c = CoordinatorConfiguration()
        c.listen = "tcp://0.0.0.0:5555"
        #expect(throws: ConfigurationError.self) { try c.validate() }
        c.insecure = true
        try c.validate()
        c.insecure = false
        c.token = ClusterToken("x")
        try c.validate()
    }

    @Test("a TLS address needs a certificate; a bad address is explained")
    func tlsAndAddresses() {
        var c = CoordinatorConfiguration()
        c.listen = "tls+tcp://127.0.0.1:5555"
        #expect(throws: ConfigurationError.self) { try c.validate() }
        c.listen = "127.0.0.1:5555"
        #expect(throws: ConfigurationError.self) { try c.validate() }
        c.listen = "http://127.0.0.1:5555"
        #expect(throws: ConfigurationError.self) { try c.validate() }
    }
}

@Suite("Replay guard")
struct ReplayGuardTests {
    @Test("a proof is admitted once; a stale or future one is refused")
    func replay() {
        let g = ReplayGuard(windowSeconds: 300)
        let p = ClusterToken("t").prove("register|w|h")
        #expect(g.admit(p) == nil)
        #expect(g.admit(p)?.contains("replayed") == true)
        let old = ClusterToken("t").prove("register|w|h", now: Date().addingTimeInterval(-1000))
        #expect(g.admit(old)?.contains("clock") == true)
    }
}
