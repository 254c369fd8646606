import Foundation

/// The payload of a `torch` shard: train a TorchScript model through the worker's libtorch shim
/// (``JobSpec/Runner/torch``). The coordinator writes it at dispatch, like ``TrainPayload``, with
/// the card's preset, the OOM cap, the checkpoint to resume from and the per-key metric floors.
public struct TorchTrainPayload: Codable, Sendable, Equatable {
    public var run: String
    /// The TorchScript module (training contract: Sources/TorchShim/CONTRACT.md).
    public var model: String
    /// Pair manifests as the trainer takes them (`path.jsonl::ko`).
    public var trainManifests: [String]
    public var valManifests: [String]
    public var outputDir: String
    public var maxSteps: Int64
    public var batchSize: Int
    public var gradAccum: Int
    public var checkpointEvery: Int64
    /// Steps between validations (0: none).
    public var evalEvery: Int64
    /// Validation batches per evaluation (the same ones every time).
    public var evalBatches: Int
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var epsilon: Double
    public var weightDecay: Double
    public var gradClip: Double
    /// `constant`, `linear`, `cosine` or `wsd`.
    public var schedule: String
    public var warmupSteps: Int64
    public var minLearningRateRatio: Double
    public var decayFraction: Double
    public var seed: Int64
    /// Torch threads (0: torch's default).
    public var threads: Int
    /// bf16 autocast on CUDA.
    public var mixedPrecision: Bool
    /// Test stand-in for CUDA OOM: micro-batches of at least this size fail (0: off).
    public var outOfMemoryAtBatch: Int
    public var resumeCheckpoint: String?
    public var resumeStep: Int64?
    /// Per key, points at or below this step are not spooled (already stored).
    public var metricsFloors: [String: Int64]
    /// A data-parallel gang's rank (`world:` in the job; nil: one GPU). The shim joins a c10d
    /// group at `MASTER_ADDR:MASTER_PORT`; only rank 0 reports metrics and writes checkpoints.
    public var placement: RankPlacement?
    /// A gang's limit on its rendezvous and on each collective, in seconds (a peer that hangs
    /// fails the step after it; one that dies fails it at once). Nil: 120.
    public var collectiveTimeout: Double?

    public init(run: String, model: String, trainManifests: [String], valManifests: [String] = [], outputDir: String,
                maxSteps: Int64, batchSize: Int, gradAccum: Int = 1, checkpointEvery: Int64 = 1000, evalEvery: Int64 = 0,
                evalBatches: Int = 4, learningRate: Double = 1e-4, beta1: Double = 0.9, beta2: Double = 0.999,
                epsilon: Double = 1e-8, weightDecay: Double = 0.01, gradClip: Double = 1.0, schedule: String = "cosine",
                warmupSteps: Int64 = 0, minLearningRateRatio: Double = 0, decayFraction: Double = 0.1, seed: Int64 = 0,
                threads: Int = 0, mixedPrecision: Bool = true, outOfMemoryAtBatch: Int = 0, resumeCheckpoint: String? = nil,
                resumeStep: Int64? = nil, metricsFloors: [String: Int64] = [:]) {
        self.run = run
        self.model = model
        self.trainManifests = trainManifests
        self.valManifests = valManifests
        self.outputDir = outputDir
        self.maxSteps = maxSteps
        self.batchSize = batchSize
        self.gradAccum = gradAccum
        self.checkpointEvery = checkpointEvery
        self.evalEvery = evalEvery
        self.evalBatches = evalBatches
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.epsilon = epsilon
        self.weightDecay = weightDecay
        self.gradClip = gradClip
        self.schedule = schedule
        self.warmupSteps = warmupSteps
        self.minLearningRateRatio = minLearningRateRatio
        self.decayFraction = decayFraction
        self.seed = seed
        self.threads = threads
        self.mixedPrecision = mixedPrecision
        self.outOfMemoryAtBatch = outOfMemoryAtBatch
        self.resumeCheckpoint = resumeCheckpoint
        self.resumeStep = resumeStep
        self.metricsFloors = metricsFloors
    }

    enum CodingKeys: String, CodingKey {
        case run, model, seed, threads, schedule, beta1, beta2
        case trainManifests = "train_manifests", valManifests = "val_manifests", outputDir = "output_dir"
        case maxSteps = "max_steps", batchSize = "batch_size", gradAccum = "grad_accum"
        case checkpointEvery = "checkpoint_every", evalEvery = "eval_every", evalBatches = "eval_batches"
        case learningRate = "lr", epsilon = "eps", weightDecay = "weight_decay", gradClip = "grad_clip"
        case warmupSteps = "warmup_steps", minLearningRateRatio = "min_lr_ratio", decayFraction = "decay_fraction"
        case mixedPrecision = "amp", outOfMemoryAtBatch = "oom_at_batch"
        case resumeCheckpoint = "resume_checkpoint", resumeStep = "resume_step", metricsFloors = "metrics_floors"
        case placement, collectiveTimeout = "collective_timeout"
    }

    /// Reads a shard payload; the error says which field is wrong.
    public static func parse(_ payload: [UInt8]) throws(TrainPayloadError) -> TorchTrainPayload {
        do { return try JSONCoding.decode(TorchTrainPayload.self, from: payload) } catch let e as DecodingError {
            switch e {
            case .keyNotFound(let k, _): throw TrainPayloadError(field: k.stringValue, message: "is required")
            case .typeMismatch(_, let c), .valueNotFound(_, let c):
                throw TrainPayloadError(field: c.codingPath.map(\.stringValue).joined(separator: "."), message: "has the wrong type: \(c.debugDescription)")
            case .dataCorrupted(let c): throw TrainPayloadError(field: nil, message: "is not valid JSON: \(c.debugDescription)")
            @unknown default: throw TrainPayloadError(field: nil, message: "\(e)")
            }
        } catch {
            throw TrainPayloadError(field: nil, message: "\(error)")
        }
    }
}
