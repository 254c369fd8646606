import Foundation
import FuzzSupport
import Shared
import Worker

/// Writes the seed corpora under `Fuzz/Corpus/<Target>/` from real encoders: wire messages from the
/// protocol's own codec, `.npy` files laid out as `numpy.save` does, manifest lines, TFRecord event
/// files. Run it after changing the protocol and commit what changes:
///
///     Fuzz/.build/debug/FuzzSeeds Fuzz/Corpus
///
/// (Job spec seeds are YAML files copied from `examples/` and written by hand.)
@main
struct FuzzSeeds {
    static func main() throws {
        let root = CommandLine.arguments.dropFirst().first ?? "Fuzz/Corpus"
        var written = 0
        func write(_ target: String, _ name: String, _ bytes: [UInt8]) throws {
            let dir = "\(root)/\(target)"
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: "\(dir)/\(name)"))
            written += 1
        }
        for (name, bytes) in wireSeeds() { try write("FuzzWireDecoder", name, bytes) }
        for (name, bytes) in npySeeds() { try write("FuzzNpy", name, bytes) }
        for (name, bytes) in tensorBoardSeeds() { try write("FuzzTensorBoard", name, bytes) }
        try write("FuzzPairManifest", "pairs.jsonl", Array("""
            {"id": "ko_0001", "target_text": "안녕하세요", "target_text_ids_path": "features/ko_0001_text.npy", "target_codes_path": "features/ko_0001_codes.npy", "target_text_len": 12, "target_code_len": 240}
            {"id": "ko_0002", "target_text": "감사합니다", "target_text_ids_path": "/data/ko/ko_0002_text.npy", "target_codes_path": "/data/ko/ko_0002_codes.npy", "prompt_condition_path": "c.npy"}

            """.utf8))
        try write("FuzzEvalManifest", "test.jsonl", Array("""
            {"id": "ko_test_0001", "target_text": "오늘 날씨가 좋네요", "target_audio_path": "wavs/0001.wav", "prompt_audio_path": "prompts/p1.wav"}
            {"id": "ko_test_0002", "text": "내일 봐요", "audio_path": "/data/eval/0002.wav"}
            {"id": "ko_test_0001", "target_text": "중복", "target_audio_path": "wavs/dup.wav"}

            """.utf8))
        print("wrote \(written) seeds under \(root)")
    }

    static func wireSeeds() -> [(String, [UInt8])] {
        let ref = ShardRef(shardId: 42, leaseEpoch: 3)
        let proof = TokenProof(timestampMs: 1_765_000_000_000, nonce: Array(repeating: 7, count: 16), mac: Array(repeating: 9, count: 32))
        let device = DeviceInfo(kind: .cuda, index: 1, name: "NVIDIA RTX A6000", memoryBytes: 51_527_024_640,
                                driverVersion: "550.54", cudaVersion: "12.4", uuid: "GPU-0f00")
        let telemetry = DeviceTelemetry(utilization: 97, memoryUsedBytes: 40 << 30, memoryTotalBytes: 48 << 30, temperatureC: 71)
        let point = MetricPoint(runId: "ko-finetune", step: 1200, key: "train/mel_loss", value: 2.75, wallTime: 1_765_000_000.5)
        let nan = MetricPoint(runId: "ko-finetune", step: 1201, key: "train/lr", value: .nan, wallTime: 1_765_000_001)
        let event = EventRequest(kind: .checkpointSaved, shard: ref, message: "checkpoint 1200", data: Array(#"{"step":1200}"#.utf8), wallTime: 1_765_000_002)
        let assignment = ShardAssignment(shard: ref, jobId: 5, kind: "train", attempt: 2, payload: Array(#"{"lr":"1e-5"}"#.utf8), runId: "ko-finetune")
        let worker = "0f3c9a2e-worker"
        let messages: [(String, Envelope)] = [
            ("register", Envelope(.register, RegisterRequest(name: "box-a-gpu1", host: "box-a", device: device,
                capabilities: ["shard:sleep", "runner:command"], version: "0.9.0", pid: 4242, proof: proof, activeShard: ref), workerId: worker)),
            ("heartbeat", Envelope(.heartbeat, HeartbeatRequest(status: .busy,
                progress: ShardProgress(shard: ref, step: 1200, totalSteps: 240_000, stepsPerSecond: 3.5), telemetry: telemetry),
                workerId: worker, session: 77, sequence: 9)),
            ("heartbeat-idle", Envelope(.heartbeat, HeartbeatRequest(status: .idle), workerId: worker, session: 77, sequence: 10)),
            ("poll", Envelope(.poll, PollRequest(waitMs: 30_000), workerId: worker, session: 77, sequence: 11)),
            ("metrics", Envelope(.metrics, MetricsRequest(entries: [
                SpoolEntry(sequence: 1, points: [point, nan], events: [event]), SpoolEntry(sequence: 2, points: [point])]),
                workerId: worker, session: 77, sequence: 12)),
            ("event", Envelope(.event, event, workerId: worker, session: 77, sequence: 13)),
            ("result", Envelope(.result, ResultRequest(shard: ref, outcome: .failed, message: "exit 1", output: Array("{}".utf8),
                logTail: ["Traceback", "CUDA out of memory"]), workerId: worker, session: 77, sequence: 14)),
            ("admin", Envelope(.admin, AdminRequest(command: "enqueue", arguments: Array(#"{"kind":"sleep","count":2}"#.utf8), proof: proof))),
            ("registered", Envelope(.registered, RegisterReply(session: 77, heartbeatIntervalMs: 2000, lostAfterMs: 10_000,
                coordinatorVersion: "0.9.0", activeShardKept: true, spoolHighWater: 12))),
            ("heartbeat-reply", Envelope(.heartbeatReply, HeartbeatReply(commands: [.cancelShard(ref, reason: "cancelled by user"), .drain]))),
            ("poll-reply", Envelope(.pollReply, PollReply(assignment: assignment))),
            ("poll-reply-empty", Envelope(.pollReply, PollReply(assignment: nil))),
            ("metrics-ack", Envelope(.metricsAck, Ack(highestSequence: 2))),
            ("result-ack", Envelope(.resultAck, Ack(highestSequence: 14, accepted: false, note: "stale lease"))),
            ("admin-reply", Envelope(.adminReply, AdminReply(json: Array(#"{"workers":[]}"#.utf8)))),
            ("error", Envelope(.error, ProtocolError(.staleLease, "the lease moved on", retryable: false))),
        ]
        return messages.map { ("\($0.0).bin", $0.1.encoded()) }
    }

    static func npySeeds() -> [(String, [UInt8])] {
        let ints: [UInt64] = [1, 2, 3, UInt64(bitPattern: -4), 300_000, 6]
        var v2 = NpyEncoding.encode(descr: "<i8", shape: [3], data: NpyEncoding.littleEndian([7, 8, 9], width: 8))
        // Version 2.0: a 4-byte header length.
        v2[6] = 2
        v2.insert(contentsOf: [0, 0], at: 10)
        return [
            ("int32-2x3.npy", NpyEncoding.encode(descr: "<i4", shape: [2, 3], data: NpyEncoding.littleEndian(ints, width: 4))),
            ("int64-vector.npy", NpyEncoding.encode(descr: "<i8", shape: [6], data: NpyEncoding.littleEndian(ints, width: 8))),
            ("float32-1x2x2.npy", NpyEncoding.encode(descr: "<f4", shape: [1, 2, 2],
                data: NpyEncoding.littleEndian([0.5, -1.25, .infinity, .nan].map { UInt64(Float($0).bitPattern) }, width: 4))),
            ("scalar.npy", NpyEncoding.encode(descr: "<i4", shape: [], data: NpyEncoding.littleEndian([5], width: 4))),
            ("empty.npy", NpyEncoding.encode(descr: "<f4", shape: [0, 4], data: [])),
            ("int64-v2.npy", v2),
        ]
    }

    static func tensorBoardSeeds() -> [(String, [UInt8])] {
        let first = EventEncoding.event(wallTime: 1_765_000_000, step: 0, fileVersion: "brain.Event:2")
        let events = (1...3).map { step in
            EventEncoding.event(wallTime: 1_765_000_000 + Double(step), step: Int64(step),
                                scalars: [("train/mel_loss", 3 - Float(step) / 4), ("train/lr", 1e-5)])
        }
        let file = ([first] + events).flatMap { TFRecordReader.frame($0) }
        // The first byte picks the mode: even = one Event, odd = an event file (64 + byte/2 chunks).
        return [
            ("event.bin", [0] + events[0]),
            ("event-file-version.bin", [0] + first),
            ("events.tfevents", [1] + file),
            ("events-torn-tail.tfevents", [3] + file.dropLast(5)),
        ]
    }
}

/// Unused: `-sanitize=fuzzer` links libFuzzer into every executable of the package, and libFuzzer
/// needs this symbol even when, as here, its driver is never started.
@_cdecl("LLVMFuzzerTestOneInput")
public func unusedFuzzTarget(_ start: UnsafeRawPointer, _ count: Int) -> CInt { 0 }
