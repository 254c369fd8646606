@testable import ClusterAdmin
@testable import Coordinator
import Foundation
import GRDB
@testable import JobSpecs
@testable import Shared
import Synchronization
import Testing

/// Issue 15, in the store: the worker's pins are the run's checkpoints — resume points chosen by
/// optimizer state, evaluations at the `eval_every` pins, retention by `keep:`.
@Suite("Pinned checkpoints in the store")
struct CheckpointPinTests {
    let dir: URL
    let store: Store

    init() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-pins-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        store = try Store(path: dir.appendingPathComponent("c.sqlite").path)
    }

    func spec(_ extra: String = "") -> String {
        """
        name: ko-pins
        project: p
        command: [python, train.py, --output-dir, "{output_dir}", [--resume, "{resume_checkpoint}"]]
        max_steps: 5000
        max_retries: 3
        eval_every: 1000
        checkpoint_every: 1000
        \(extra)
        """
    }

    struct Cluster {
        let runId: String
        let session: UInt64
        let shard: ShardRef
    }

    func start(_ text: String) throws -> Cluster {
        let reply = try store.submit(try JobSpecParser.parse(yaml: text), text: text, checkpointRoot: dir.appendingPathComponent("runs").path)
        let req = RegisterRequest(name: "w", host: "h", device: DeviceInfo(kind: .cuda, index: 0, name: "NVIDIA RTX A6000", memoryBytes: 51_500_000_000),
                                  capabilities: ["shard:train"], version: "t", pid: 1, proof: .none)
        let session = try store.register(workerId: "w", request: req).session
        let lease = try #require(try store.lease(workerId: "w", workerName: "w", session: session, kinds: ["train"]))
        return Cluster(runId: reply.runs[0].id, session: session, shard: lease.shard)
    }

    /// A pin file on disk and its `checkpoint_saved` event.
    func pin(_ c: Cluster, step: Int64, full: Bool, roles: [String]) throws -> EventRequest {
        let pins = dir.appendingPathComponent("pins").path
        try FileManager.default.createDirectory(atPath: pins, withIntermediateDirectories: true)
        let path = "\(pins)/step-\(step)\(full ? "" : "-model").pth"
        FileManager.default.createFile(atPath: path, contents: Data("ckpt \(step)".utf8))
        let data: [String: JSONValue] = [
            "step": .number(Double(step)), "path": .string(path), "source": .string("/out/latest\(full ? "_full" : "").pth"),
            "kind": .string("pin"), "pinned": .bool(true), "full_state": .bool(full), "roles": .array(roles.map(JSONValue.string)),
            "size": .number(10), "sha256": .string("ab"),
        ]
        return EventRequest(kind: .checkpointSaved, shard: c.shard, message: "pin \(step)", data: try JSONCoding.encode(data), wallTime: 0)
    }

    func light(_ c: Cluster, step: Int64) throws -> EventRequest {
        let data: [String: JSONValue] = ["step": .number(Double(step)), "path": .string("/out/latest.pth"), "kind": .string("latest"),
                                         "pinned": .bool(false), "full_state": .bool(false)]
        return EventRequest(kind: .checkpointSaved, shard: c.shard, message: "latest \(step)", data: try JSONCoding.encode(data), wallTime: 0)
    }

    /// Spool sequence numbers of the one worker.
    final class Sequence: Sendable {
        private let value = Mutex<UInt64>(0)
        func next() -> UInt64 { value.withLock { $0 += 1; return $0 } }
    }
    let sequence = Sequence()
    func send(_ c: Cluster, _ events: [EventRequest], points: [MetricPoint] = []) throws {
        _ = try store.ingestSpool(workerId: "w", entries: [SpoolEntry(sequence: sequence.next(), points: points, events: events)])
    }

    /// Loses the worker's shard (as a kill -9 would) and leases it again.
    func resumePayload(_ c: Cluster) throws -> TrainPayload {
        _ = try store.ingest(workerId: "w", session: c.session, sequence: 100,
                             .result(ResultRequest(shard: c.shard, outcome: .failed, message: "killed")))
        let next = try #require(try store.lease(workerId: "w", workerName: "w", session: c.session, kinds: ["train"]))
        return try TrainPayload.parse(next.payload, runId: next.runId)
    }

    @Test("a resume starts from the newest pin with optimizer state, not a newer light checkpoint, and says what it skipped")
    func resumeFromFullState() throws {
        let c = try start(spec())
        try send(c, [try pin(c, step: 1000, full: true, roles: ["eval", "checkpoint", "resume"]), try light(c, step: 1300)])
        let p = try resumePayload(c)
        #expect(p.resumeCheckpoint?.hasSuffix("/pins/step-1000.pth") == true)
        #expect(p.resumeStep == 1000 && p.resumeFullState == true)
        #expect(p.argv.suffix(2).last == p.resumeCheckpoint)
        let logs = try RunLogFormatter.logs(store, LogsRequest(run: c.runId)).lines.map(\.text)
        #expect(logs.contains { $0.contains("with full state") && $0.contains("light checkpoint at step 1300") && $0.contains("skipped") })
    }

    @Test("resume: newest takes the newer light checkpoint and says the optimizer and schedule are lost")
    func resumeNewest() throws {
        let c = try start(spec("resume: newest"))
        try send(c, [try pin(c, step: 1000, full: true, roles: ["resume"]), try light(c, step: 1300)])
        let p = try resumePayload(c)
        #expect(p.resumeCheckpoint == "/out/latest.pth" && p.resumeStep == 1300 && p.resumeFullState == false)
        let logs = try RunLogFormatter.logs(store, LogsRequest(run: c.runId)).lines.map(\.text)
        #expect(logs.contains { $0.contains("model weights only") && $0.contains("warm-up") })
    }

    @Test("with no full-state checkpoint yet, the light one is used rather than starting over")
    func lightWhenNothingElse() throws {
        let c = try start(spec())
        try send(c, [try light(c, step: 300)])
        let p = try resumePayload(c)
        #expect(p.resumeCheckpoint == "/out/latest.pth" && p.resumeStep == 300 && p.resumeFullState == false)
    }

    @Test("an eval-role pin starts one evaluation of that pin at its step; best_model.pth is no resume point")
    func evaluatesPins() throws {
        let manifest = dir.appendingPathComponent("eval.jsonl").path
        try Data(#"{"id": "u1", "target_text": "안녕하세요"}"#.utf8 + [10]).write(to: URL(fileURLWithPath: manifest))
        let c = try start(spec("eval: {manifests: [\(manifest)::ko]}"))
        let best: [String: JSONValue] = ["step": .number(1500), "path": .string("/out/best_model.pth"), "kind": .string("best"),
                                         "best": .bool(true), "pinned": .bool(false), "full_state": .bool(true)]
        try send(c, [try pin(c, step: 1000, full: true, roles: ["eval", "checkpoint", "resume"]),
                     EventRequest(kind: .checkpointSaved, shard: c.shard, message: "best", data: try JSONCoding.encode(best), wallTime: 0)])
        try send(c, [try pin(c, step: 1000, full: true, roles: ["eval", "checkpoint", "resume"])])
        let evals = try store.evals()
        #expect(evals.count == 1)
        #expect(evals.first?.step == 1000 && evals.first?.checkpoint.hasSuffix("/pins/step-1000.pth") == true)
        let run = try #require(try RunSummaries.list(store).first { $0.id == c.runId })
        #expect(run.checkpointStep == 1000, "best_model.pth (step 1500) is not where a resume starts")
    }

    @Test("keep: {last: 2} deletes older pins and logs each deletion; the resume point and pending evaluations are never deleted")
    func retentionLast() throws {
        let c = try start(spec("keep: {last: 2}"))
        for step in stride(from: Int64(1000), through: 4000, by: 1000) {
            try send(c, [try pin(c, step: step, full: step == 2000, roles: step == 2000 ? ["checkpoint", "resume"] : ["checkpoint"])])
        }
        let pins = try store.pins(runId: c.runId)
        let alive = pins.filter { $0.deletedAt == nil }.map(\.step)
        #expect(alive == [2000, 3000, 4000], "step 2000 is the only full-state pin: the run's resume point stays")
        #expect(!FileManager.default.fileExists(atPath: pins[0].path))
        #expect(FileManager.default.fileExists(atPath: pins[1].path))
        let logs = try RunLogFormatter.logs(store, LogsRequest(run: c.runId)).lines.map(\.text)
        #expect(logs.filter { $0.contains("[retention] deleted pin") }.count == 1)
        #expect(logs.contains { $0.contains("step-1000-model.pth") && $0.contains("not among the newest 2") })
    }

    @Test("keep: {best: 1, by: val/text_loss} keeps the pin with the lowest validation loss at its step")
    func retentionBest() throws {
        let c = try start(spec("keep: {last: 1, best: 1, by: val/text_loss}"))
        let losses: [Int64: Double] = [1000: 3.0, 2000: 1.5, 3000: 2.0, 4000: 2.5]
        for step in stride(from: Int64(1000), through: 4000, by: 1000) {
            try send(c, [try pin(c, step: step, full: false, roles: ["checkpoint"])],
                     points: [MetricPoint(runId: c.runId, step: step, key: "val/text_loss", value: losses[step]!, wallTime: 0)])
        }
        let alive = try store.pins(runId: c.runId).filter { $0.deletedAt == nil }.map(\.step)
        #expect(alive == [2000, 4000], "the best (2000) and the newest (4000)")
        // W&B's `best` alias followed the best pin: 1000, then 2000, and never a deleted pin.
        let announced = try store.pool.read { db in
            try String.fetchAll(db, sql: "SELECT data FROM events WHERE run_id = ? AND kind = 'checkpoint_saved' AND data LIKE '%\"alias\"%' ORDER BY id",
                                arguments: [c.runId])
        }.compactMap { jsonDecode([String: JSONValue].self, $0) }
        #expect(announced.map { $0["step"] } == [.number(1000), .number(2000)])
        #expect(announced.allSatisfy { $0["alias"] == .string("best") && $0["pinned"] == .bool(true) })
    }

    @Test("keep: {best: 1, by: eval/cer} does not rank a checkpoint by the CER of a set the ASR cannot read")
    func retentionBestSkipsUnreadableCER() throws {
        let c = try start(spec("keep: {last: 1, best: 1, by: eval/cer}"))
        // Step 2000's CER is the lowest, but its evaluation's ASR could not read the test set.
        let cer: [Int64: Double] = [1000: 0.40, 2000: 0.05, 3000: 0.30, 4000: 0.50]
        for step in stride(from: Int64(1000), through: 4000, by: 1000) {
            try send(c, [try pin(c, step: step, full: false, roles: ["checkpoint"])],
                     points: [MetricPoint(runId: c.runId, step: step, key: "eval/asr_unreadable", value: step == 2000 ? 1 : 0, wallTime: 0),
                              MetricPoint(runId: c.runId, step: step, key: "eval/cer", value: cer[step]!, wallTime: 0)])
        }
        let alive = try store.pins(runId: c.runId).filter { $0.deletedAt == nil }.map(\.step)
        #expect(alive == [3000, 4000], "the best readable (3000) and the newest (4000), not the unreadable 2000: \(alive)")
    }

    @Test("without keep:, pins stay, except a resume-only pin superseded by a newer full-state one")
    func defaultRetention() throws {
        let c = try start(spec())
        try send(c, [try pin(c, step: 1000, full: true, roles: ["eval", "resume"]), try pin(c, step: 1500, full: true, roles: ["resume"]),
                     try pin(c, step: 1700, full: true, roles: ["resume"])])
        let alive = try store.pins(runId: c.runId).filter { $0.deletedAt == nil }.map(\.step)
        #expect(alive == [1000, 1700])
    }
}
