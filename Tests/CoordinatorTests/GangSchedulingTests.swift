@testable import ClusterAdmin
@testable import Coordinator
import Foundation
import GRDB
@testable import JobSpecs
@testable import Shared
import Testing

/// Issue 18, in the store: a run with `world: {gpus: N}` is N rank shards leased together or not
/// at all, placed by host with one rendezvous, one preset and the run's effective batch; when one
/// rank ends badly the others are stopped and the gang is requeued whole, its budget counted once.
@Suite("Data-parallel gangs in the store")
struct GangSchedulingTests {
    let dir: URL
    let store: Store

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-gang-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
    }

    static func spec(gpus: Int, retries: Int = 1, name: String = "ddp", a6000: String = "batch_size: 16, grad_accum: 1",
                     rtx4090: String = "batch_size: 8, grad_accum: 2") -> String {
        """
        name: \(name)
        project: p
        command: [torchrun, --nnodes, "{nnodes}", --node_rank, "{node_rank}", --master_addr, "{master_addr}", --master_port, "{master_port}",
                  train.py, --batch-size, "{batch_size}", --grad-accumulation, "{grad_accum}", --rank, "{rank}"]
        max_steps: 500
        max_retries: \(retries)
        presets:
          a6000: {match: {name: A6000}, \(a6000)}
          "4090": {match: {name: "4090"}, \(rtx4090)}
        world: {gpus: \(gpus)}
        """
    }

    static let single = """
        name: one
        project: p
        command: [python, train.py, --batch-size, "{batch_size}"]
        max_steps: 500
        presets:
          any: {match: {}, batch_size: 8, grad_accum: 2}
        """

    func submit(_ text: String) throws -> SubmitReply {
        try store.submit(try JobSpecParser.parse(yaml: text), text: text, checkpointRoot: dir.appendingPathComponent("runs").path)
    }

    @discardableResult
    func register(_ id: String, host: String = "box1", device: String = "NVIDIA RTX A6000", gpu: Int = 0) throws -> IdleWorker {
        let req = RegisterRequest(name: id, host: host, device: DeviceInfo(kind: .cuda, index: gpu, name: device, memoryBytes: 51_500_000_000),
                                  capabilities: ["shard:train"], version: "t", pid: 1, proof: .none)
        let session = try store.register(workerId: id, request: req).session
        return IdleWorker(workerId: id, name: id, session: session, kinds: ["train"],
                          rendezvous: RendezvousEndpoint(address: "10.0.0.\(abs(host.hashValue % 200) + 1)", port: 40_000 + gpu))
    }

    /// The holder's result for a leased rank, as the worker sends it.
    func report(_ w: IdleWorker, _ sequence: UInt64, _ a: ShardAssignment?, _ outcome: ShardOutcome, _ message: String = "") throws {
        let a = try #require(a, "\(w.workerId) holds no rank")
        _ = try store.ingest(workerId: w.workerId, session: w.session, sequence: sequence,
                             .result(ResultRequest(shard: a.shard, outcome: outcome, message: message)))
    }

    /// The run's attempts, rank by rank: (state, message).
    func attempts(_ runId: String) throws -> [(state: String, message: String)] {
        try store.pool.read { db in
            try Row.fetchAll(db, sql: "SELECT a.state, a.message FROM shard_attempts a JOIN shards s ON s.id = a.shard_id WHERE s.run_id = ? ORDER BY s.rank, a.attempt",
                             arguments: [runId]).map { ($0["state"], $0["message"] ?? "") }
        }
    }

    func payload(_ a: ShardAssignment) throws -> TrainPayload { try TrainPayload.parse(a.payload, runId: a.runId) }
    func run(_ id: String) throws -> RunSummary { try #require(try RunSummaries.list(store).first { $0.id == id }) }
    func shards(_ runId: String) throws -> [Row] {
        try store.pool.read { db in try Row.fetchAll(db, sql: "SELECT * FROM shards WHERE run_id = ? ORDER BY rank", arguments: [runId]) }
    }

    @Test("a gang of 2 is two rank shards that no single lease takes; one idle worker is not enough (with the reason), two are leased in one go")
    func allOrNone() throws {
        let runId = try submit(Self.spec(gpus: 2)).runs[0].id
        #expect(try shards(runId).map { $0["rank"] as Int? } == [0, 1])
        let a = try register("a", gpu: 0)
        #expect(try store.lease(workerId: "a", workerName: "a", session: a.session, kinds: ["train"]) == nil, "a rank is never leased alone")
        let alone = try store.leaseGangs(idle: [a], reserveAfter: 3_600)
        #expect(alone.assignments.isEmpty)
        let reason = try run(runId).waitReason ?? "-"
        #expect(reason.hasPrefix("waiting for 1 of 2 GPUs: 1 idle worker fits the gang"), "\(reason)")
        #expect(try shards(runId).allSatisfy { ($0["state"] as String) == "queued" }, "no partial hold")
        let b = try register("b", gpu: 1)
        let leases = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600)
        #expect(Set(leases.assignments.keys) == ["a", "b"])
        let p0 = try payload(try #require(leases.assignments["a"])), p1 = try payload(try #require(leases.assignments["b"]))
        #expect(p0.placement?.rank == 0 && p1.placement?.rank == 1)
        #expect(p0.placement?.masterAddress == a.rendezvous?.address && p0.placement?.masterPort == a.rendezvous?.port)
        #expect(p1.placement?.masterPort == p0.placement?.masterPort, "one rendezvous for the gang")
        #expect((p0.placement?.localRank, p1.placement?.localRank, p1.placement?.localWorldSize, p1.placement?.nodes) == (0, 1, 2, 1))
        #expect(p1.env["RANK"] == "1" && p1.env["WORLD_SIZE"] == "2" && p1.env["LOCAL_RANK"] == "1" && p1.env["MASTER_PORT"] == String(a.rendezvous!.port))
        #expect(p0.gpu == "0,1" && p1.gpu == "0,1", "each rank sees its host's gang GPUs in local-rank order")
        #expect((p0.batchSize, p0.gradAccum) == (8, 1), "A6000's 16 × 1 shared by two ranks: 8 × 1 each, effective 16")
        #expect(p1.argv.joined(separator: " ").hasPrefix("torchrun --nnodes 1 --node_rank 0 --master_addr \(a.rendezvous!.address) --master_port \(a.rendezvous!.port) train.py --batch-size 8 --grad-accumulation 1 --rank 1"))
        #expect(p0.reportsMetrics && !p1.reportsMetrics)
        #expect(try run(runId).waitReason == nil && run(runId).state == "running")
    }

    @Test("ranks fill the host with most idle workers first; rank 0 is where a rendezvous port was offered; the gang takes the smallest card's preset")
    func placement() throws {
        // Effective batch 24: 8 per rank.
        let runId = try submit(Self.spec(gpus: 3, a6000: "batch_size: 12, grad_accum: 2", rtx4090: "batch_size: 6, grad_accum: 4")).runs[0].id
        var lone = try register("lone", host: "box2", device: "NVIDIA GeForce RTX 4090", gpu: 0)
        let x = try register("x", host: "box1", gpu: 0)
        var y = try register("y", host: "box1", gpu: 1)
        y.rendezvous = nil // an older worker: cannot be rank 0, can be rank 1
        lone.rendezvous = RendezvousEndpoint(address: "10.0.0.99", port: 41_000)
        let leases = try store.leaseGangs(idle: [lone, y, x], reserveAfter: 3_600)
        #expect(leases.assignments.count == 3)
        let p = try ["x", "y", "lone"].map { try payload(try #require(leases.assignments[$0])) }
        #expect(p.map { $0.placement!.rank } == [0, 1, 2])
        #expect(p.map { $0.placement!.nodeRank } == [0, 0, 1] && p.map { $0.placement!.localRank } == [0, 1, 0])
        #expect(p.allSatisfy { $0.placement!.masterAddress == x.rendezvous!.address && $0.placement!.nodes == 2 })
        #expect(p[2].gpu == "0" && p[0].gpu == "0,1")
        // The 4090's preset (6 × 4) has the smallest micro-batch: every rank takes 8 samples per
        // step as 4 × 2 (6 does not divide 8; the largest micro-batch below it that does is 4).
        #expect(p.allSatisfy { ($0.batchSize, $0.gradAccum) == (4, 2) })
        #expect(try run(runId).preset == "4090")
    }

    @Test("two gangs of 2 on 3 free workers: one runs, the other waits with a reason and holds nobody; a later single-GPU run backfills the third worker; the waiting gang starts when the first ends")
    func twoGangsAndBackfill() throws {
        let first = try submit(Self.spec(gpus: 2, name: "g1")).runs[0].id
        let second = try submit(Self.spec(gpus: 2, name: "g2")).runs[0].id
        let w = try (0..<3).map { try register("w\($0)", gpu: $0) }
        let leases = try store.leaseGangs(idle: w, reserveAfter: 3_600)
        #expect(leases.assignments.count == 2 && Set(leases.assignments.values.map(\.runId)) == [first])
        #expect(try run(second).waitReason?.hasPrefix("waiting for 1 of 2 GPUs") == true)
        #expect(leases.reserved.isEmpty, "the waiting gang has not waited long: nothing is reserved")
        let idle = w.first { leases.assignments[$0.workerId] == nil }!
        let single = try submit(Self.single).runs[0].id
        let backfill = try #require(try store.lease(workerId: idle.workerId, workerName: idle.name, session: idle.session, kinds: ["train"]))
        #expect(backfill.runId == single, "the later single-GPU run uses the idle worker")
        // The first gang finishes; its workers poll again; the second gang starts on them.
        for worker in w where leases.assignments[worker.workerId] != nil {
            try report(worker, 1, leases.assignments[worker.workerId], .succeeded)
        }
        #expect(try run(first).state == "succeeded")
        let freed = w.filter { leases.assignments[$0.workerId] != nil }
        let next = try store.leaseGangs(idle: freed, reserveAfter: 3_600)
        #expect(Set(next.assignments.values.map(\.runId)) == [second])
    }

    @Test("a gang that has waited past the reservation delay holds back the idle workers that fit it; younger work does not get them")
    func reservation() throws {
        _ = try submit(Self.spec(gpus: 2, name: "g1"))
        let younger = try submit(Self.single).runs[0].id
        let a = try register("a")
        let leases = try store.leaseGangs(idle: [a], reserveAfter: 0)
        #expect(leases.assignments.isEmpty && leases.reserved == ["a"])
        // (The scheduler then gives "a" no single shard; the store's single lease would.)
        #expect(try run(younger).state == "queued")
    }

    @Test("one rank fails: the others are told to stop, the gang's budget counts one failure, and the whole gang is leased again; the budget's end fails the run")
    func failureIsTheGangs() throws {
        let runId = try submit(Self.spec(gpus: 2, retries: 1)).runs[0].id
        let a = try register("a", gpu: 0), b = try register("b", gpu: 1)
        let first = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600).assignments
        try report(b, 1, first["b"], .failed, "exit 1")
        #expect(try store.gangStops().map(\.workerId) == ["a"])
        #expect(try shards(runId).map { $0["failures"] as Int } == [1, 1], "one gang restart, counted on every rank")
        #expect(try store.leaseGangs(idle: [b], reserveAfter: 3_600).assignments.isEmpty, "rank 0 still runs: the gang is not whole in the queue")
        // Rank 0's trainer lost its peer: it reports a failure too, but it was being stopped.
        try report(a, 1, first["a"], .failed, "gloo: connection closed by peer")
        #expect(try store.gangStops().isEmpty)
        #expect(try shards(runId).map { $0["failures"] as Int } == [1, 1])
        #expect(try shards(runId).map { $0["state"] as String } == ["queued", "queued"])
        #expect(try attempts(runId).map(\.state) == ["cancelled", "failed"], "rank 0 stopped with its gang, rank 1 failed")
        let second = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600).assignments
        #expect(second.count == 2)
        try report(a, 2, second["a"], .failed)
        try report(b, 2, second["b"], .cancelled)
        #expect(try shards(runId).map { $0["state"] as String } == ["failed", "failed"])
        #expect(try run(runId).state == "failed")
    }

    @Test("a drain of one rank's worker ends the gang without using its budget, even when a peer's collective failure is reported before the planned stop")
    func drainIsNoFailure() throws {
        let runId = try submit(Self.spec(gpus: 2, retries: 1)).runs[0].id
        let a = try register("a", gpu: 0), b = try register("b", gpu: 1)
        let leased = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600).assignments
        // Worker a drains: its heartbeats say so; its trainer is stopped after a full checkpoint,
        // and rank 1's trainer fails on the closed collective before a's result arrives.
        try store.flushHeartbeats([HeartbeatSnapshot(workerId: "a", lastSeen: Date(), status: .draining, progress: nil, telemetry: nil, state: "live")])
        try report(b, 1, leased["b"], .failed, "exit 75: peer lost")
        #expect(try shards(runId).map { $0["failures"] as Int } == [0, 0], "a planned stop is not a failure of the gang")
        try report(a, 1, leased["a"], .cancelled, "worker draining: stopped")
        #expect(try shards(runId).map { $0["state"] as String } == ["queued", "queued"])
        #expect(try shards(runId).map { $0["failures"] as Int } == [0, 0])
        let ended = try attempts(runId)
        #expect(ended.map(\.state) == ["cancelled", "cancelled"])
        #expect(ended.last?.message.contains("a peer rank on a was stopped for a drain or shutdown") == true, "\(ended)")
        // Without a drain the same failure is the gang's (failureIsTheGangs): the budget counts it.
        try store.flushHeartbeats([HeartbeatSnapshot(workerId: "a", lastSeen: Date(), status: .idle, progress: nil, telemetry: nil, state: "live")])
        let again = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600).assignments
        try report(b, 2, again["b"], .failed, "exit 1")
        #expect(try shards(runId).map { $0["failures"] as Int } == [1, 1])
    }

    @Test("a lost rank stops the gang; a worker that failed the gang twice is left out of it, with the reason")
    func lostAndExcluded() throws {
        let runId = try submit(Self.spec(gpus: 2, retries: 5)).runs[0].id
        let a = try register("a", gpu: 0), b = try register("b", gpu: 1)
        var seq: UInt64 = 0
        for _ in 0..<2 {
            let leased = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600).assignments
            #expect(leased.count == 2)
            _ = try store.markWorkerLost(workerId: "b", silentFor: 30)
            #expect(try store.gangStops().map(\.workerId) == ["a"])
            seq += 1
            try report(a, seq, leased["a"], .cancelled)
            try store.markWorkerLive(workerId: "b")
        }
        let c = try register("c", gpu: 2)
        let third = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600)
        #expect(third.assignments.isEmpty)
        let reason = try run(runId).waitReason ?? "-"
        #expect(reason.contains("left out after failing this gang twice: b"), "\(reason)")
        #expect(Set(try store.leaseGangs(idle: [a, b, c], reserveAfter: 3_600).assignments.keys) == ["a", "c"])
    }

    @Test("an OOM on any rank halves every rank's micro-batch at the gang's next start (accumulation doubles, effective batch kept), without using the budget")
    func outOfMemoryDownshiftsTheGang() throws {
        let runId = try submit(Self.spec(gpus: 2)).runs[0].id
        let a = try register("a", gpu: 0), b = try register("b", gpu: 1)
        let first = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600).assignments
        try report(b, 1, first["b"], .outOfMemory, "CUDA out of memory")
        try report(a, 1, first["a"], .cancelled)
        #expect(try run(runId).downshifts == 1)
        let second = try store.leaseGangs(idle: [a, b], reserveAfter: 3_600).assignments
        for w in ["a", "b"] {
            let p = try payload(try #require(second[w]))
            #expect((p.batchSize, p.gradAccum) == (4, 2), "8 × 1 per rank → 4 × 2")
        }
        #expect(try shards(runId).map { $0["failures"] as Int } == [0, 0])
    }
}
