@testable import ClusterAdmin
@testable import Coordinator
import Foundation
import GRDB
@testable import JobSpecs
@testable import Shared
import Testing

/// Issue 5, in the store: a submitted job becomes runs and `train` shards; each dispatch renders
/// the trainer command for the worker's card (preset, OOM downshifts, resume checkpoint).
@Suite("Training jobs in the store")
struct TrainingJobTests {
    let dir: URL
    let store: Store

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-train-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
    }

    static let spec = """
        name: ko-test
        project: indextts-korean
        command: [python, train.py, --output-dir, "{output_dir}", --batch-size, "{batch_size}",
                  --grad-accumulation, "{grad_accum}", --learning-rate, "{lr}", --gpu, "{gpu}",
                  [--resume, "{resume_checkpoint}"]]
        hyperparameters: {lr: 1e-5, warmup: 1000}
        max_steps: 500
        max_retries: 1
        min_batch_size: 4
        presets:
          a6000: {match: {name: A6000, min_memory_gb: 40}, batch_size: 16, grad_accum: 1}
          "4090": {match: {name: "4090"}, batch_size: 8, grad_accum: 2}
        """

    func submit(_ text: String = spec) throws -> SubmitReply {
        try store.submit(try JobSpecParser.parse(yaml: text), text: text, checkpointRoot: dir.appendingPathComponent("runs").path)
    }

    func register(_ id: String, device: String, memoryGB: Double, gpu: Int = 0) throws -> UInt64 {
        let req = RegisterRequest(name: id, host: "h", device: DeviceInfo(kind: .cuda, index: gpu, name: device, memoryBytes: UInt64(memoryGB * 1e9)),
                                  capabilities: ["shard:train"], version: "t", pid: 1, proof: .none)
        return try store.register(workerId: id, request: req).session
    }

    func payload(_ a: ShardAssignment) throws -> TrainPayload { try TrainPayload.parse(a.payload, runId: a.runId) }

    func run(_ id: String) throws -> RunSummary { try #require(try RunSummaries.list(store).first { $0.id == id }) }

    @Test("a 2 × 2 sweep makes four runs named after their values, in one W&B group, with the values in their config")
    func sweep() throws {
        let reply = try submit(Self.spec + "\nsweep: {grid: {lr: [1e-5, 2e-5], warmup: [1000, 30000]}}\n")
        #expect(reply.runs.map(\.name) == ["lr1e-5_warmup1k", "lr1e-5_warmup30k", "lr2e-5_warmup1k", "lr2e-5_warmup30k"])
        #expect(Set(reply.runs.map(\.group)) == ["ko-test"])
        #expect(Set(reply.runs.map(\.id)).count == 4)
        #expect(reply.runs.allSatisfy { $0.id.count == 8 })
        let rows = try store.pool.read { db in try Row.fetchAll(db, sql: "SELECT id, name, group_name, config, state FROM runs ORDER BY run_index") }
        #expect(rows.map { $0["state"] as String } == ["queued", "queued", "queued", "queued"])
        let configs = rows.map { jsonDecode([String: JSONValue].self, $0["config"] as String) ?? [:] }
        #expect(configs.map { $0["lr"] } == [.number(1e-5), .number(1e-5), .number(2e-5), .number(2e-5)])
        #expect(configs.map { $0["warmup"] } == [.number(1000), .number(30000), .number(1000), .number(30000)])
        #expect(configs.allSatisfy { $0["effective_batch"] == .number(16) })
        #expect(try store.shards().map(\.kind) == ["train", "train", "train", "train"])
    }

    @Test("each card gets its class's preset and the same effective batch; the command is rendered for it")
    func presetsPerCard() throws {
        let reply = try submit(Self.spec + "\nsweep: {grid: {lr: [1e-5, 2e-5]}}\n")
        let a = try register("a6000", device: "NVIDIA RTX A6000", memoryGB: 51.5, gpu: 1)
        let b = try register("4090", device: "NVIDIA GeForce RTX 4090", memoryGB: 25.7, gpu: 0)
        let onA = try #require(try store.lease(workerId: "a6000", workerName: "a6000", session: a, kinds: ["train"]))
        let onB = try #require(try store.lease(workerId: "4090", workerName: "4090", session: b, kinds: ["train"]))
        let pa = try payload(onA), pb = try payload(onB)
        #expect((pa.batchSize, pa.gradAccum) == (16, 1))
        #expect((pb.batchSize, pb.gradAccum) == (8, 2))
        #expect(pa.argv.contains("16") && pb.argv.contains("8"))
        #expect(pa.argv[pa.argv.firstIndex(of: "--gpu")! + 1] == "1", "{gpu} is the worker's GPU index")
        #expect(!pa.argv.contains("--resume"), "no resume on a first start")
        #expect(pa.maxSteps == 500)
        #expect(pa.outputDir.hasSuffix("/ko-test/lr1e-5-\(reply.runs[0].id)"))
        #expect(try run(reply.runs[0].id).preset == "a6000")
        #expect(try run(reply.runs[1].id).preset == "4090")
        #expect(try run(reply.runs[0].id).state == "running")
    }

    @Test("a card that fits no preset leaves the run queued with the reason")
    func noPresetFits() throws {
        let reply = try submit()
        let s = try register("cpu", device: "AMD EPYC", memoryGB: 8)
        #expect(try store.lease(workerId: "cpu", workerName: "cpu", session: s, kinds: ["train"]) == nil)
        let r = try run(reply.runs[0].id)
        #expect(r.state == "queued")
        #expect(r.waitReason?.contains("no preset fits AMD EPYC") == true)
        #expect(r.waitReason?.contains("a6000 needs name contains 'A6000'") == true)
        #expect(try store.shards().first?.state == "queued")
    }

    @Test("OOM at batch 16: retried at 8 × 2 from the last checkpoint without using a retry; the floor ends it")
    func outOfMemoryDownshift() throws {
        let reply = try submit()
        let runId = reply.runs[0].id
        let s = try register("a6000", device: "NVIDIA RTX A6000", memoryGB: 51.5)
        let first = try #require(try store.lease(workerId: "a6000", workerName: "a6000", session: s, kinds: ["train"]))
        // The trainer logged steps 1…120 and a checkpoint at step 100, then ran out of memory.
        let points = (1...120).map { MetricPoint(runId: runId, step: Int64($0), key: "train/text_loss", value: 1, wallTime: Double($0)) }
        let checkpoint = EventRequest(kind: .checkpointSaved, shard: first.shard, message: "checkpoint model_step100.pth",
                                      data: Array(#"{"step": 100, "path": "/shared/model_step100.pth", "kind": "step", "sha256": "ab"}"#.utf8), wallTime: 0)
        let best = EventRequest(kind: .checkpointSaved, shard: first.shard, message: "best",
                                data: Array(#"{"step": 110, "path": "/shared/best_model.pth", "kind": "best", "best": true}"#.utf8), wallTime: 0)
        // latest.pth's step is only the step reached when it was seen: a numbered checkpoint wins.
        let latest = EventRequest(kind: .checkpointSaved, shard: first.shard, message: "latest",
                                  data: Array(#"{"step": 115, "path": "/shared/latest.pth", "kind": "latest"}"#.utf8), wallTime: 0)
        _ = try store.ingestSpool(workerId: "a6000", entries: [SpoolEntry(sequence: 1, points: points, events: [checkpoint, best, latest])])
        var seq: UInt64 = 0
        func next() -> UInt64 { seq += 1; return seq }
        let oom = try store.ingest(workerId: "a6000", session: s, sequence: next(),
                                   .result(ResultRequest(shard: first.shard, outcome: .outOfMemory, message: "CUDA out of memory")))
        #expect(oom.disposition?.requeued == true)
        #expect(try run(runId).downshifts == 1)
        let second = try #require(try store.lease(workerId: "a6000", workerName: "a6000", session: s, kinds: ["train"]))
        let p = try payload(second)
        #expect((p.batchSize, p.gradAccum) == (8, 2), "half the micro-batch, twice the accumulation")
        #expect(p.resumeCheckpoint == "/shared/model_step100.pth", "the numbered checkpoint, not best_model or latest")
        #expect(p.resumeStep == 100)
        #expect(p.metricsFloors == ["train/text_loss": 120], "steps already stored are not logged twice, key by key")
        #expect(p.argv.suffix(2) == ["--resume", "/shared/model_step100.pth"])
        let shard = try #require(try store.shards().first)
        #expect(shard.failures == 0, "a downshift is not a failure")
        let logs = try RunLogFormatter.logs(store, LogsRequest(run: runId))
        #expect(logs.lines.contains { $0.stream == "cluster" && $0.text.contains("OOM downshift") && $0.text.contains("batch 8 × accumulation 2") })
        #expect(logs.lines.contains { $0.text.hasPrefix("[resume] resuming from /shared/model_step100.pth") })

        // 8 → 4 is allowed (min_batch_size 4); below that the OOM is a failure, and the budget (1) ends the run.
        _ = try store.ingest(workerId: "a6000", session: s, sequence: next(), .result(ResultRequest(shard: second.shard, outcome: .outOfMemory)))
        let third = try #require(try store.lease(workerId: "a6000", workerName: "a6000", session: s, kinds: ["train"]))
        #expect((try payload(third).batchSize, try payload(third).gradAccum) == (4, 4))
        _ = try store.ingest(workerId: "a6000", session: s, sequence: next(), .result(ResultRequest(shard: third.shard, outcome: .outOfMemory)))
        let fourth = try #require(try store.lease(workerId: "a6000", workerName: "a6000", session: s, kinds: ["train"]))
        #expect(try payload(fourth).batchSize == 4)
        _ = try store.ingest(workerId: "a6000", session: s, sequence: next(), .result(ResultRequest(shard: fourth.shard, outcome: .outOfMemory)))
        #expect(try store.shards().first?.state == "failed")
        #expect(try run(runId).state == "failed")
        #expect(try run(runId).downshifts == 2)
    }

    @Test("a later 4090 dispatch keeps the OOM cap: 8 × 2 stays 8 × 2 rather than shrinking again")
    func capAppliesAcrossClasses() throws {
        #expect(TrainingDispatch.batch(BatchSettings(batchSize: 16, gradAccum: 1), cap: 8, floor: 1) == BatchSettings(batchSize: 8, gradAccum: 2))
        #expect(TrainingDispatch.batch(BatchSettings(batchSize: 8, gradAccum: 2), cap: 8, floor: 1) == BatchSettings(batchSize: 8, gradAccum: 2))
        #expect(TrainingDispatch.batch(BatchSettings(batchSize: 8, gradAccum: 2), cap: 2, floor: 4) == nil)
        #expect(TrainingDispatch.batch(BatchSettings(batchSize: 6, gradAccum: 1), cap: 2, floor: 1) == nil, "3 cannot be halved without changing the effective batch")
    }

    @Test("cancel: a queued run is cancelled at once; a running one when its worker reports the stop")
    func cancel() throws {
        let reply = try submit(Self.spec + "\nsweep: {grid: {lr: [1e-5, 2e-5]}}\n")
        let s = try register("a6000", device: "NVIDIA RTX A6000", memoryGB: 51.5)
        let running = try #require(try store.lease(workerId: "a6000", workerName: "a6000", session: s, kinds: ["train"]))
        let queuedRun = reply.runs[1].id
        let q = try store.cancelRun(queuedRun)
        #expect(q.reply.cancelledQueued == 1 && q.stopping.isEmpty)
        #expect(try run(queuedRun).state == "cancelled")
        let r = try store.cancelRun(reply.runs[0].id)
        #expect(r.reply.stopping == 1 && r.stopping.first?.shard == running.shard)
        #expect(try store.cancelRequestedShards() == [running.shard])
        #expect(try run(reply.runs[0].id).state == "running")
        _ = try store.ingest(workerId: "a6000", session: s, sequence: 1, .result(ResultRequest(shard: running.shard, outcome: .cancelled, message: "cancelled by the user")))
        #expect(try run(reply.runs[0].id).state == "cancelled")
        #expect(try store.lease(workerId: "a6000", workerName: "a6000", session: s, kinds: ["train"]) == nil)
        #expect(throws: ProtocolError.self) { try store.cancelRun("nosuchrn") }
    }

    @Test("`runs` shows the latest losses, the step, the speed and the ETA from the stored series")
    func runsSummary() throws {
        let reply = try submit()
        let runId = reply.runs[0].id
        let s = try register("a6000", device: "NVIDIA RTX A6000", memoryGB: 51.5)
        _ = try #require(try store.lease(workerId: "a6000", workerName: "a6000", session: s, kinds: ["train"]))
        // 100 steps at 2 steps/s.
        var points: [MetricPoint] = []
        for step in 1...100 {
            let t: Double = 1_000 + Double(step) / 2
            let loss: Double = 3 - Double(step) / 100
            points.append(MetricPoint(runId: runId, step: Int64(step), key: "train/text_loss", value: loss, wallTime: t))
            points.append(MetricPoint(runId: runId, step: Int64(step), key: "train/mel_loss", value: 5, wallTime: t))
        }
        _ = try store.ingestSpool(workerId: "a6000", entries: [SpoolEntry(sequence: 1, points: Array(points[..<100])),
                                                              SpoolEntry(sequence: 2, points: Array(points[100...]))])
        let r = try run(runId)
        #expect(r.step == 100)
        #expect(r.losses["train/text_loss"] == 2)
        #expect(r.losses["train/mel_loss"] == 5)
        #expect(abs((r.stepsPerSecond ?? 0) - 2) < 1e-9)
        #expect(abs((r.etaSeconds ?? 0) - 200) < 1e-6, "400 steps left at 2 steps/s")
        #expect(r.worker == "a6000")
        #expect((r.batchSize, r.gradAccum) == (16, 1))
    }
}
