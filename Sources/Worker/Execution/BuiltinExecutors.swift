import Foundation
import Shared

/// `sleep`: waits `seconds` (default 1) in `steps` steps (default 10), reporting progress.
/// `fail_attempts: N` makes the first N attempts fail (for retry tests and demos).
public struct SleepExecutor: ShardExecutor {
    public let kind = "sleep"
    public init() {}

    public func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport {
        let p = context.parameters
        let seconds = p["seconds"]?.doubleValue ?? 1
        let steps = max(1, Int64(p["steps"]?.doubleValue ?? 10))
        if let failing = p["fail_attempts"]?.doubleValue, Double(assignment.attempt) <= failing {
            return ShardReport(outcome: .failed, message: "failed on purpose (attempt \(assignment.attempt) of the first \(Int(failing)))")
        }
        guard seconds >= 0, seconds <= 86_400 else {
            return ShardReport(outcome: .failed, message: "sleep: seconds must be between 0 and 86400 (got \(seconds))")
        }
        let started = Date()
        for step in 1...steps {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000 / Double(steps))))
            context.progress(step: step, of: steps)
        }
        let output = try JSONCoding.encode(["slept_seconds": JSONValue.number(Date().timeIntervalSince(started)), "pid": .number(Double(getpid()))])
        return ShardReport(outcome: .succeeded, message: String(format: "slept %.2f s", seconds), output: output)
    }
}

/// `echo`: returns its `text` parameter as output.
public struct EchoExecutor: ShardExecutor {
    public let kind = "echo"
    public init() {}

    public func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport {
        let text = context.parameters["text"]?.stringValue ?? ""
        context.progress(step: 1, of: 1)
        return ShardReport(outcome: .succeeded, message: "echo", output: try JSONCoding.encode(["text": text]))
    }
}

/// `synthetic`: a stand-in trainer that logs `keys` scalars (default 10) for `steps` steps of run
/// `run` through the spool, at up to `rate` steps per second (0: as fast as possible). Values
/// are deterministic (``value(keyIndex:step:)``: a decaying loss), so tests can check every point. With
/// `nan_at` the first key is NaN at those steps, with `spike_at` 3× its value for `spike_steps`; with `checkpoint_every`/`checkpoint_dir` it writes stand-in checkpoints, with `media_every`/`media_dir`
/// short audio samples (`eval/sample`), each reported as an event.
public struct SyntheticMetricsExecutor: ShardExecutor {
    public let kind = "synthetic"
    let spool: MetricSpool

    public init(spool: MetricSpool) { self.spool = spool }

    /// The first key (`train/text_loss`) decays like a training loss (with a little deterministic
    /// noise); the others rise slowly (`key index + step / 1000`).
    public static func value(keyIndex: Int, step: Int64) -> Double {
        let t = Double(step)
        return keyIndex == 0 ? 2 + 3 * exp(-t / 2_000) + 0.02 * sin(t * 12.9898) : Double(keyIndex) + t / 1000
    }

    public func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport {
        let p = context.parameters
        guard let run = p["run"]?.stringValue, !run.isEmpty else {
            return ShardReport(outcome: .failed, message: "synthetic: the parameter run=RUN_ID is required")
        }
        let steps = Int64(p["steps"]?.doubleValue ?? 100)
        let keys = Int(p["keys"]?.doubleValue ?? 10)
        let rate = p["rate"]?.doubleValue ?? 0
        let first = Int64(p["first_step"]?.doubleValue ?? 0)
        let checkpointEvery = Int64(p["checkpoint_every"]?.doubleValue ?? 0)
        let checkpointDir = p["checkpoint_dir"]?.stringValue
        let mediaEvery = Int64(p["media_every"]?.doubleValue ?? 0)
        let mediaDir = p["media_dir"]?.stringValue
        // `nan_at`: steps (a number or "100,500") where the first key (train/text_loss) is NaN.
        let nanAt: Set<Int64> = p["nan_at"].map { v -> Set<Int64> in
            if let d = v.doubleValue { return [Int64(d)] }
            return Set((v.stringValue ?? "").split(separator: ",").compactMap { Int64($0.trimmingCharacters(in: .whitespaces)) })
        } ?? []
        // `spike_at`: steps where the first key jumps to 3× its value for `spike_steps` steps (default 30).
        let spikeAt: [Int64] = p["spike_at"].map { v -> [Int64] in
            if let d = v.doubleValue { return [Int64(d)] }
            return (v.stringValue ?? "").split(separator: ",").compactMap { Int64($0.trimmingCharacters(in: .whitespaces)) }
        } ?? []
        let spikeSteps = Int64(p["spike_steps"]?.doubleValue ?? 30)
        func spiking(_ step: Int64) -> Bool { spikeAt.contains { step >= $0 && step < $0 + spikeSteps } }
        let names = (0..<keys).map { $0 == 0 ? "train/text_loss" : $0 == 1 ? "train/mel_loss" : "train/metric_\($0)" }
        let started = ContinuousClock.now
        for step in first..<(first + steps) {
            try Task.checkCancellation()
            let now = Date().timeIntervalSince1970
            spool.append(points: names.enumerated().map { i, k in
                let v = Self.value(keyIndex: i, step: step)
                return MetricPoint(runId: run, step: step, key: k, value: i == 0 && nanAt.contains(step) ? .nan : i == 0 && spiking(step) ? 3 * v : v,
                                   wallTime: now)
            })
            context.progress(step: step - first + 1, of: steps)
            if checkpointEvery > 0, let dir = checkpointDir, (step + 1) % checkpointEvery == 0 {
                try writeCheckpoint(dir: dir, run: run, step: step + 1, assignment: assignment)
            }
            if mediaEvery > 0, let dir = mediaDir, (step + 1) % mediaEvery == 0 {
                try writeAudioSample(dir: dir, run: run, step: step + 1, assignment: assignment)
            }
            if rate > 0 {
                let due = started + .milliseconds(Int(Double(step - first + 1) * 1000 / rate))
                if due > .now { try await Task.sleep(until: due) }
            } else if (step - first) % 1000 == 999 {
                await Task.yield()
            }
        }
        return ShardReport(outcome: .succeeded, message: "logged \(steps) steps × \(keys) keys for run \(run)")
    }

    /// Writes a short tone as a 16 kHz mono WAV (its pitch follows the step) and reports it as an
    /// `eval/sample` media event, as an evaluation would report a synthesized utterance.
    private func writeAudioSample(dir: String, run: String, step: Int64, assignment: ShardAssignment) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = "\(dir)/\(run)-sample-\(step).wav"
        let rate = 16_000, count = 4_000
        let hz = 220 + Double(step % 1000)
        var pcm: [UInt8] = []
        pcm.reserveCapacity(count * 2)
        for i in 0..<count {
            let v = Int16(8_000 * sin(2 * Double.pi * hz * Double(i) / Double(rate)))
            pcm.append(UInt8(truncatingIfNeeded: v))
            pcm.append(UInt8(truncatingIfNeeded: v >> 8))
        }
        func le32(_ v: Int) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        func le16(_ v: Int) -> [UInt8] { (0..<2).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
        let wav = Array("RIFF".utf8) + le32(36 + pcm.count) + Array("WAVEfmt ".utf8) + le32(16) + le16(1) + le16(1)
            + le32(rate) + le32(rate * 2) + le16(2) + le16(16) + Array("data".utf8) + le32(pcm.count) + pcm
        try Data(wav).write(to: URL(fileURLWithPath: path + ".tmp"))
        guard rename(path + ".tmp", path) == 0 else { throw ShardFailure("cannot write audio sample \(path)") }
        let data = try JSONCoding.encode([
            "key": JSONValue.string("eval/sample"), "step": .number(Double(step)), "path": .string(path), "type": .string("audio"),
            "caption": .string("step \(step)"),
        ])
        spool.append(points: [], events: [EventRequest(kind: .media, shard: assignment.shard, message: "audio sample at step \(step)", data: data, wallTime: Date().timeIntervalSince1970)])
    }

    /// Writes a small stand-in checkpoint (temp file, then rename) and reports it through the spool.
    private func writeCheckpoint(dir: String, run: String, step: Int64, assignment: ShardAssignment) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let path = "\(dir)/model_step\(step).pth"
        let bytes = Array("checkpoint of \(run) at step \(step)\n".utf8) + [UInt8](repeating: UInt8(step % 251), count: 4096)
        try Data(bytes).write(to: URL(fileURLWithPath: path + ".tmp"))
        guard rename(path + ".tmp", path) == 0 else { throw ShardFailure("cannot write checkpoint \(path)") }
        let data = try JSONCoding.encode([
            "step": JSONValue.number(Double(step)), "path": .string(path), "size": .number(Double(bytes.count)),
            "sha256": .string(SHA256.hash(bytes).hexString),
        ])
        spool.append(points: [], events: [EventRequest(kind: .checkpointSaved, shard: assignment.shard, message: "checkpoint at step \(step)", data: data, wallTime: Date().timeIntervalSince1970)])
    }
}
