import Foundation
import Shared
import Synchronization

/// `torch`: trains a TorchScript model through the libtorch shim, with no Python in the loop
/// (its payload is a ``TorchTrainPayload``). The loop runs on its own thread (the shim's calls
/// block for the length of a step):
///
/// - data: the pair manifests through a ``BatchLoader`` (seeded per run, bucketed, prefetched);
///   `grad_accum` micro-batches of `batch_size` per optimizer step;
/// - every step: `train/loss`, `train/text_loss`, `train/mel_loss`, `train/mel_top1` (whatever the
///   module returns, under `train/`), `train/lr` and `train/grad_norm` (before clipping) are
///   spooled at the step number, except steps the store already has (per-key floors);
/// - every `checkpoint_every` steps and at the end: `model_step{N}.pth` (model, AdamW, step, RNG
///   and the loader's position; temp file + rename; the last three kept, and every one at a
///   multiple of `eval_every`, which evaluations load), reported as a
///   `checkpoint_saved` event;
/// - every `eval_every` steps: the same first `eval_batches` validation batches, under `val/`;
/// - CUDA out of memory (or the shim's stand-in): outcome `outOfMemory` with the batch, so the
///   coordinator retries from the last checkpoint with half the micro-batch.
///
/// A resumed shard loads its checkpoint (model, optimizer, step, RNG, data position) and goes on
/// exactly where the checkpoint was taken. Cancellation (cancel, drain) stops between steps.
///
/// A rank of a data-parallel gang (``TorchTrainPayload/placement``) joins the gang's c10d group
/// through the shim after loading the same checkpoint as every rank; each step's gradients and
/// metrics are averaged over the ranks (the shim), each rank takes its share of the batches
/// (``BatchLoader``'s `share`), and only rank 0 spools metrics, validates and writes checkpoints.
public struct TorchTrainExecutor: ShardExecutor {
    public let kind = "torch"
    public var stopsOnDrain: Bool { true }

    let shim: TorchShim
    let spool: MetricSpool
    /// The device steps run on: -1 for the CPU, else the CUDA index the trainer sees (0 with
    /// `CUDA_VISIBLE_DEVICES` set to the worker's GPU).
    let device: Int
    /// This worker's address as the other ranks of a gang reach it (its rendezvous address).
    let collectiveAddress: String?

    public init(shim: TorchShim, spool: MetricSpool, device: Int, collectiveAddress: String? = nil) {
        self.shim = shim
        self.spool = spool
        self.device = device
        self.collectiveAddress = collectiveAddress
    }

    /// How many numbered checkpoints are kept.
    static let keptCheckpoints = 3

    public func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport {
        let payload: TorchTrainPayload
        do { payload = try TorchTrainPayload.parse(assignment.payload) } catch {
            return ShardReport(outcome: .failed, message: error.description)
        }
        let stop = StopFlag()
        let loop = TrainingLoop(shim: shim, spool: spool, device: device, payload: payload, shard: assignment.shard, context: context,
                                collectiveAddress: collectiveAddress)
        let report: ShardReport = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<ShardReport, Never>) in
                let thread = Thread { c.resume(returning: loop.run(stop: stop)) }
                thread.name = "tts-torch-\(assignment.shard.shardId)"
                thread.stackSize = 8 << 20
                thread.start()
            }
        } onCancel: {
            stop.set()
        }
        if Task.isCancelled { throw CancellationError() }
        return report
    }
}

/// One shard's training loop (runs on its own thread).
struct TrainingLoop: Sendable {
    let shim: TorchShim
    let spool: MetricSpool
    let device: Int
    let payload: TorchTrainPayload
    let shard: ShardRef
    let context: ShardContext
    let collectiveAddress: String?

    /// Rank 0 of a gang, or a single-GPU run: the rank whose metrics and checkpoints are the run's.
    private var reports: Bool { (payload.placement?.rank ?? 0) == 0 }

    func run(stop: StopFlag) -> ShardReport {
        do { return try train(stop: stop) } catch let e as TorchShimError {
            return ShardReport(outcome: e.code == .outOfMemory ? .outOfMemory : .failed, message: e.description,
                               output: output(["error": .string(e.message)]))
        } catch {
            return ShardReport(outcome: .failed, message: "torch: \(error)")
        }
    }

    private func config() -> TorchTrainConfig {
        var c = TorchTrainConfig()
        c.learningRate = payload.learningRate
        c.beta1 = payload.beta1
        c.beta2 = payload.beta2
        c.epsilon = payload.epsilon
        c.weightDecay = payload.weightDecay
        c.gradClip = payload.gradClip
        c.schedule = TorchSchedule(rawValue: payload.schedule) ?? .cosine
        c.warmupSteps = payload.warmupSteps
        c.totalSteps = max(payload.maxSteps, payload.warmupSteps + 1)
        c.minLearningRateRatio = payload.minLearningRateRatio
        c.decayFraction = payload.decayFraction
        c.device = device
        c.mixedPrecision = payload.mixedPrecision
        c.seed = payload.seed
        c.threads = payload.threads
        c.outOfMemoryAtBatch = payload.outOfMemoryAtBatch
        return c
    }

    private func output(_ extra: [String: JSONValue] = [:]) -> [UInt8] {
        var o: [String: JSONValue] = ["batch_size": .number(Double(payload.batchSize)), "grad_accum": .number(Double(payload.gradAccum))]
        for (k, v) in extra { o[k] = v }
        return (try? JSONCoding.encode(o)) ?? []
    }

    private func train(stop: StopFlag) throws -> ShardReport {
        guard TorchSchedule(rawValue: payload.schedule) != nil else {
            return ShardReport(outcome: .failed, message: "torch: unknown schedule '\(payload.schedule)'; use \(TorchSchedule.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        try FileManager.default.createDirectory(atPath: payload.outputDir, withIntermediateDirectories: true)
        let model = try shim.loadModel(payload.model, config: config())
        var position = LoaderPosition(epoch: 0, batch: 0)
        if let checkpoint = payload.resumeCheckpoint {
            guard FileManager.default.isReadableFile(atPath: checkpoint) else {
                return ShardReport(outcome: .failed, message: "torch: the checkpoint to resume from, \(checkpoint), is not readable on this worker. Checkpoints must be on storage every worker can read (a shared filesystem)")
            }
            let extra = try model.loadCheckpoint(checkpoint)
            if let p = try? JSONCoding.decode(LoaderPosition.self, from: Array(extra.utf8)) { position = p }
        }
        // A gang's rank: every rank loaded the same checkpoint; rank 0's parameters are broadcast.
        var group: TorchProcessGroup?
        if let p = payload.placement, p.worldSize > 1 {
            let g = try shim.joinGroup(masterAddress: p.masterAddress, masterPort: p.masterPort,
                                       localAddress: p.rank == 0 ? p.masterAddress : collectiveAddress,
                                       rank: p.rank, worldSize: p.worldSize, timeout: .milliseconds(Int64((payload.collectiveTimeout ?? 120) * 1000)))
            try model.join(g)
            group = g
        }
        defer { withExtendedLifetime(group) {} }
        let pairs = try payload.trainManifests.flatMap { try PairManifest.read(ManifestSpec(parsing: $0)) }
        let conditions = try Self.passesConditions(forwardArity: model.forwardArity, pairs: pairs)
        let loader = try BatchLoader(pairs: pairs, batchSize: payload.batchSize, seed: UInt64(bitPattern: payload.seed), start: position,
                                     conditions: conditions, share: (group?.rank ?? 0, group?.worldSize ?? 1))
        defer { loader.close() }
        let valBatches = reports ? try validationBatches(conditions: conditions) : []
        var step = model.step
        let started = ContinuousClock.now
        var lastCheckpoint: String? = payload.resumeCheckpoint
        while step < payload.maxSteps {
            if stop.isSet { return ShardReport(outcome: .cancelled, message: "stopped at step \(step)") }
            var micro: [[TorchTensor]] = []
            for _ in 0..<payload.gradAccum {
                let (batch, next) = try loader.next()
                micro.append(TorchTensor.tensors(batch))
                position = next
            }
            let attempt = Result { () throws(TorchShimError) -> TorchStepResult in try model.trainStep(micro) }
            let result: TorchStepResult
            switch attempt {
            case .success(let r): result = r
            case .failure(let e) where e.code != .outOfMemory: throw e
            case .failure(let e):
                return ShardReport(outcome: .outOfMemory,
                                   message: "CUDA out of memory at batch \(payload.batchSize) × accumulation \(payload.gradAccum) at step \(step): \(e.message)",
                                   output: output(["oom": .bool(true), "error": .string(e.message), "final_step": .number(Double(step)),
                                                   "last_checkpoint": lastCheckpoint.map(JSONValue.string) ?? .null]))
            }
            step = result.step
            var points: [MetricPoint] = []
            let now = Date().timeIntervalSince1970
            func add(_ key: String, _ value: Double) {
                if let floor = payload.metricsFloors[key], step <= floor { return }
                points.append(MetricPoint(runId: payload.run, step: step, key: key, value: value, wallTime: now))
            }
            for m in result.metrics { add("train/\(m.name)", m.value) }
            add("train/lr", result.learningRate)
            add("train/grad_norm", result.gradNorm)
            // On CUDA, what torch's allocator holds (W&B system metrics; NVML shows the whole card).
            if device >= 0, step % 100 == 0, let d = try? shim.device(device) {
                points.append(MetricPoint(runId: payload.run, step: step, key: "\(MetricPoint.systemPrefix)gpu.\(device).torchAllocatedBytes",
                                          value: Double(d.allocatedBytes), wallTime: now))
            }
            var events: [EventRequest] = []
            if payload.evalEvery > 0, step % payload.evalEvery == 0, !valBatches.isEmpty {
                var sums: [String: Double] = [:]
                var order: [String] = []
                for b in valBatches {
                    for m in try model.evalStep(b).metrics {
                        if sums[m.name] == nil { order.append(m.name) }
                        sums[m.name, default: 0] += m.value
                    }
                }
                for name in order { add("val/\(name)", sums[name]! / Double(valBatches.count)) }
            }
            if reports, step % payload.checkpointEvery == 0 || step >= payload.maxSteps {
                let path = "\(payload.outputDir)/model_step\(step).pth"
                let extra = String(decoding: (try? JSONCoding.encode(position)) ?? [], as: UTF8.self)
                try model.saveCheckpoint(path, extra: extra)
                lastCheckpoint = path
                events.append(try checkpointEvent(path, step: step))
                pruneCheckpoints()
            }
            if reports, !points.isEmpty || !events.isEmpty { _ = spool.append(points: points, events: events) }
            context.progress(step: step, of: payload.maxSteps)
        }
        let elapsed = ContinuousClock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let waited = loader.waitSeconds
        return ShardReport(outcome: .succeeded, message: "trained run \(payload.run) to step \(step) of \(payload.maxSteps)",
                           output: output(["final_step": .number(Double(step)), "last_checkpoint": lastCheckpoint.map(JSONValue.string) ?? .null,
                                           "data_wait_seconds": .number(waited), "train_seconds": .number(seconds)]))
    }

    /// Whether the batches carry the prompts' conditions (a fifth tensor, `condition`): when the
    /// module's `forward` takes a fifth tensor and the pairs have `prompt_condition_path`. Pairs
    /// without any keep the four-tensor batch (the module's default for the argument); a manifest
    /// where only some pairs have one is refused, naming one without.
    static func passesConditions(forwardArity: Int, pairs: [TrainingPair]) throws(ManifestError) -> Bool {
        guard forwardArity >= 5 else { return false }
        let with = pairs.filter { $0.conditionPath != nil }.count
        if with == 0 { return false }
        if with < pairs.count, let bare = pairs.first(where: { $0.conditionPath == nil }) {
            throw ManifestError(path: bare.codesPath, line: nil,
                                message: "belongs to pair \(bare.id), which has no prompt_condition_path while \(with) of the \(pairs.count) pairs have one: the model's forward takes a condition, so every pair needs one (or none)")
        }
        return true
    }

    /// The first `eval_batches` batches of the validation manifests (the same every time).
    private func validationBatches(conditions: Bool) throws -> [[TorchTensor]] {
        guard payload.evalEvery > 0, !payload.valManifests.isEmpty else { return [] }
        let pairs = try payload.valManifests.flatMap { try PairManifest.read(ManifestSpec(parsing: $0)) }
        let loader = try BatchLoader(pairs: pairs, batchSize: payload.batchSize, seed: 0, prefetch: 1,
                                     conditions: conditions && pairs.allSatisfy { $0.conditionPath != nil })
        defer { loader.close() }
        return try loader.plan(epoch: 0).prefix(max(1, payload.evalBatches)).map { TorchTensor.tensors(try loader.load($0)) }
    }

    private func checkpointEvent(_ path: String, step: Int64) throws -> EventRequest {
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.int64Value ?? 0
        let file = CheckpointFile(path: path, name: URL(fileURLWithPath: path).lastPathComponent, kind: .step, step: step,
                                  size: size, sha256: try CheckpointScanner.sha256(path), modified: Date().timeIntervalSince1970)
        // The worker's own loop writes every checkpoint with model, AdamW and schedule state and
        // never overwrites one: it is its own stable file (no pin needed).
        let data: [String: JSONValue] = [
            "step": .number(Double(step)), "path": .string(file.path), "size": .number(Double(file.size)),
            "sha256": .string(file.sha256), "kind": .string(file.kind.rawValue), "full_state": .bool(true),
        ]
        return EventRequest(kind: .checkpointSaved, shard: shard, message: "checkpoint \(file.name) at step \(step)",
                            data: (try? JSONCoding.encode(data)) ?? [], wallTime: Date().timeIntervalSince1970)
    }

    /// Keeps the newest ``TorchTrainExecutor/keptCheckpoints`` numbered checkpoints, and every
    /// one at the evaluation cadence.
    private func pruneCheckpoints() {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: payload.outputDir)) ?? []
        for name in Self.prunable(names, evalEvery: payload.evalEvery) {
            try? FileManager.default.removeItem(atPath: "\(payload.outputDir)/\(name)")
        }
    }

    /// The numbered checkpoints (`model_step{N}.pth`) to delete among `names`: all but the newest
    /// ``TorchTrainExecutor/keptCheckpoints``, except those at a multiple of `evalEvery` (> 0),
    /// which the run's evaluations load (a fast loop would otherwise delete a checkpoint before
    /// its queued evaluation reads it); the coordinator's retention (`keep:`) deletes those.
    static func prunable(_ names: [String], evalEvery: Int64) -> [String] {
        let numbered = names.compactMap { name -> (Int64, String)? in
            guard let (kind, step) = CheckpointScanner.classify(name), kind == .step, let step else { return nil }
            return (step, name)
        }.sorted { $0.0 > $1.0 }
        return numbered.dropFirst(TorchTrainExecutor.keptCheckpoints).filter { step, _ in
            !(evalEvery > 0 && step % evalEvery == 0)
        }.map(\.1)
    }
}

/// Set once to ask a loop on another thread to stop.
final class StopFlag: Sendable {
    private let flag = Mutex(false)
    func set() { flag.withLock { $0 = true } }
    var isSet: Bool { flag.withLock { $0 } }
}
