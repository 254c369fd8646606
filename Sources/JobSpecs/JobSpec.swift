import Foundation
import Shared

/// A training job as a user submits it (YAML, see ``JobSpecParser``): what to run, on which data,
/// with which hyperparameters, how often to checkpoint and evaluate, and the per-GPU-class batch
/// presets. A sweep makes several runs of the same job (``runs()``).
public struct JobSpec: Sendable, Equatable {
    /// What the job does. Only training for now; evaluation jobs have their own issue.
    public enum Kind: String, Sendable, Equatable, CaseIterable {
        case train
    }

    /// How the worker runs it: `command` starts the trainer as a process; `torch` trains the
    /// spec's TorchScript `model` in the worker through the libtorch shim (shard kind `torch`).
    public enum Runner: String, Sendable, Equatable, CaseIterable {
        case command
        case torch
    }

    /// Hyperparameters the torch runner reads (the rest of its settings come from the spec:
    /// batch from the presets, `checkpoint_every`, `eval_every`, `max_steps`).
    public static let torchHyperparameters = [
        "lr", "beta1", "beta2", "eps", "weight_decay", "grad_clip", "schedule", "warmup", "min_lr_ratio",
        "decay_fraction", "seed", "threads", "amp", "eval_batches", "oom_at_batch", "collective_timeout",
    ]

    /// Placeholders the cluster fills in for every run, whatever the hyperparameters are.
    public static let builtinPlaceholders: [String] = [
        "gpu", "output_dir", "run_id", "run_name", "job_name", "project", "group",
        "batch_size", "grad_accum", "effective_batch", "resume_checkpoint",
        "checkpoint_every", "eval_every", "max_steps", "log_dir",
        "train_manifests", "val_manifests",
        "rank", "world_size", "local_rank", "nnodes", "node_rank", "master_addr", "master_port",
    ]

    public var name: String
    /// The W&B project.
    public var project: String
    public var kind: Kind
    public var runner: Runner
    public var command: CommandTemplate
    /// Working directory of the trainer process (nil: the worker's).
    public var workdir: String?
    /// Extra environment for the trainer, on top of the worker's (and `CUDA_VISIBLE_DEVICES`).
    public var environment: [String: String]
    public var trainManifests: [ManifestSpec]
    public var valManifests: [ManifestSpec]
    /// In the order written; each is a `{name}` placeholder.
    public var hyperparameters: [Hyperparameter]
    /// Steps between checkpoints (default 1000).
    public var checkpointEvery: Int
    /// Steps between validations, or nil (the trainer's default).
    public var evalEvery: Int?
    /// The last step, or nil (until the trainer stops by itself).
    public var maxSteps: Int?
    /// Failures and losses a shard may have before the run fails (default 3).
    public var maxRetries: Int
    /// Per-class presets, in the order written (the first match wins).
    public var presets: [GPUPreset]
    /// The batch when there are no presets (`batch_size`/`grad_accum` at the top level, default 1 × 1).
    public var defaultBatch: BatchSettings
    /// The smallest micro-batch an OOM downshift may go to (`min_batch_size`, default 1).
    public var minimumBatchSize: Int
    public var sweep: SweepGrid?
    /// The W&B group (default: the job name for a sweep, none otherwise).
    public var group: String?
    /// Where the trainer writes checkpoints (may use `{run_id}`, `{run_name}`); nil: the
    /// cluster's checkpoint root decides.
    public var outputDir: String?
    /// Where TensorBoard event files appear (default `{output_dir}/logs`).
    public var logDir: String?
    /// `runner: torch`: the TorchScript module to train (Sources/TorchShim/CONTRACT.md).
    public var model: String?
    /// `eval:`: evaluate every checkpoint at the `eval_every` cadence.
    public var evaluation: EvalPlan?
    /// `python:`: the interpreter a command run's trainer and its children get as `python` on
    /// their PATH (the real trainer starts `python tools/infer_cpu_sample.py` after each new best
    /// validation). Nil: the trainer's own interpreter when the command starts with one.
    public var python: String?
    /// `resume:`: which checkpoint a resumed run starts from (default ``ResumePolicy/full``).
    public var resume: ResumePolicy
    /// `stop_grace:`: how long a planned stop (drain, worker shutdown, a move) waits for the
    /// trainer's next full-state checkpoint before it stops the trainer anyway (default 20 min).
    public var stopGrace: Duration
    /// `keep:`: which pinned checkpoints survive (nil: all).
    public var retention: RetentionPolicy?
    /// `same_effective_batch:` (default true): every preset must have the same
    /// `batch_size × grad_accum`, so runs on different cards are comparable. False lets each card
    /// keep its own batch (the guide's 4090 preset is 8 × 1 beside the A6000's 16 × 1).
    public var sameEffectiveBatch: Bool
    /// `world:`: how many ranks train each run together (default one GPU).
    public var world: WorldSpec
    /// `alerts:`: the run's own alert rule settings (docs/ALERTS.md), as written: an object of
    /// rule objects (`{stalled: {floor_seconds: 120}}`). The coordinator checks the rule names
    /// and field types when the job is submitted; nil: the coordinator's defaults.
    public var alerts: [String: JSONValue]?

    public init(
        name: String, project: String, kind: Kind = .train, runner: Runner = .command,
        command: CommandTemplate, workdir: String? = nil, environment: [String: String] = [:],
        trainManifests: [ManifestSpec] = [], valManifests: [ManifestSpec] = [],
        hyperparameters: [Hyperparameter] = [], checkpointEvery: Int = 1000, evalEvery: Int? = nil,
        maxSteps: Int? = nil, maxRetries: Int = 3, presets: [GPUPreset] = [],
        defaultBatch: BatchSettings = BatchSettings(batchSize: 1, gradAccum: 1), minimumBatchSize: Int = 1,
        sweep: SweepGrid? = nil, group: String? = nil, outputDir: String? = nil, logDir: String? = nil, model: String? = nil,
        evaluation: EvalPlan? = nil, python: String? = nil, resume: ResumePolicy = .full,
        stopGrace: Duration = .seconds(1200), retention: RetentionPolicy? = nil, sameEffectiveBatch: Bool = true,
        world: WorldSpec = .single, alerts: [String: JSONValue]? = nil
    ) {
        self.world = world
        self.alerts = alerts
        self.name = name
        self.project = project
        self.kind = kind
        self.runner = runner
        self.command = command
        self.workdir = workdir
        self.environment = environment
        self.trainManifests = trainManifests
        self.valManifests = valManifests
        self.hyperparameters = hyperparameters
        self.checkpointEvery = checkpointEvery
        self.evalEvery = evalEvery
        self.maxSteps = maxSteps
        self.maxRetries = maxRetries
        self.presets = presets
        self.defaultBatch = defaultBatch
        self.minimumBatchSize = minimumBatchSize
        self.sweep = sweep
        self.group = group
        self.outputDir = outputDir
        self.logDir = logDir
        self.model = model
        self.evaluation = evaluation
        self.python = python
        self.resume = resume
        self.stopGrace = stopGrace
        self.retention = retention
        self.sameEffectiveBatch = sameEffectiveBatch
    }

    /// The shard kind its runs are dispatched as (`train` for the command runner, `torch`).
    public var shardKind: String { runner == .torch ? "torch" : "train" }

    /// The effective batch every card runs with (all presets agree, the parser checks, unless
    /// ``sameEffectiveBatch`` is false: then the first preset's).
    public var effectiveBatch: Int { presets.first?.batch.effectiveBatch ?? defaultBatch.effectiveBatch }

    /// The preset for a card (see ``GPUPreset`` and `[GPUPreset].resolve`).
    public func resolvePreset(deviceName: String, memoryGB: Double) -> PresetResolution {
        presets.resolve(deviceName: deviceName, memoryGB: memoryGB, fallback: defaultBatch)
    }

    /// The settings after an OOM at `current`, or nil when the floor is reached.
    public func downshift(_ current: BatchSettings) -> BatchSettings? {
        current.downshifted(floor: minimumBatchSize)
    }

    /// The runs the job makes: one, or one per sweep combination (named after its values, sharing
    /// the group).
    public func runs() -> [RunSpec] {
        guard let sweep else {
            return [RunSpec(name: name, group: group, hyperparameters: hyperparameters, sweepValues: [])]
        }
        return sweep.combinations().map { combo in
            var merged = hyperparameters
            for h in combo {
                if let i = merged.firstIndex(where: { $0.name == h.name }) { merged[i] = h } else { merged.append(h) }
            }
            return RunSpec(name: SweepGrid.runName(combo), group: group ?? name, hyperparameters: merged, sweepValues: combo)
        }
    }

    /// Everything a placeholder can stand for, for one run on one card (with `preset`'s
    /// hyperparameters put in, when given).
    /// `batch` is the rank's (for a data-parallel world, ``WorldSpec/rankBatch(_:)``); the
    /// `{effective_batch}` is the run's: micro-batch × accumulation × world size.
    public func placeholderValues(
        run: RunSpec, gpu: Int, runId: String, outputDir: String, batch: BatchSettings, resumeCheckpoint: String?,
        preset: GPUPreset? = nil, placement: RankPlacement = .single()
    ) -> [String: [String]] {
        var v: [String: [String]] = [:]
        let run = preset?.applied(to: run) ?? run
        for h in run.hyperparameters { v[h.name] = [h.value.text] }
        v["gpu"] = [String(gpu)]
        v["output_dir"] = [outputDir]
        v["log_dir"] = [(logDir ?? "{output_dir}/logs").replacingOccurrences(of: "{output_dir}", with: outputDir)]
        v["run_id"] = [runId]
        v["run_name"] = [run.name]
        v["job_name"] = [name]
        v["project"] = [project]
        v["group"] = [run.group ?? ""]
        v["batch_size"] = [String(batch.batchSize)]
        v["grad_accum"] = [String(batch.gradAccum)]
        v["effective_batch"] = [String(batch.effectiveBatch * placement.worldSize)]
        v["rank"] = [String(placement.rank)]
        v["world_size"] = [String(placement.worldSize)]
        v["local_rank"] = [String(placement.localRank)]
        v["nnodes"] = [String(placement.nodes)]
        v["node_rank"] = [String(placement.nodeRank)]
        v["master_addr"] = [placement.masterAddress]
        v["master_port"] = [String(placement.masterPort)]
        v["resume_checkpoint"] = [resumeCheckpoint ?? ""]
        v["checkpoint_every"] = [String(checkpointEvery)]
        v["eval_every"] = [evalEvery.map(String.init) ?? ""]
        v["max_steps"] = [maxSteps.map(String.init) ?? ""]
        v["train_manifests"] = trainManifests.map(\.description)
        v["val_manifests"] = valManifests.map(\.description)
        return v
    }

    /// The trainer's argv for one run on one card.
    public func renderCommand(
        run: RunSpec, gpu: Int, runId: String, outputDir: String, batch: BatchSettings, resumeCheckpoint: String?,
        preset: GPUPreset? = nil, placement: RankPlacement = .single()
    ) throws(CommandTemplateError) -> [String] {
        try command.render(placeholderValues(run: run, gpu: gpu, runId: runId, outputDir: outputDir,
                                             batch: batch, resumeCheckpoint: resumeCheckpoint, preset: preset, placement: placement))
    }
}

/// One run of a job: its name, W&B group and hyperparameters (the job's, with the sweep's values
/// put in).
public struct RunSpec: Sendable, Equatable, Hashable {
    /// The job name, or for a sweep the combination's name (`lr1e-5_warmup30k`).
    public var name: String
    public var group: String?
    public var hyperparameters: [Hyperparameter]
    /// The swept values of this run (empty without a sweep).
    public var sweepValues: [Hyperparameter]

    public init(name: String, group: String?, hyperparameters: [Hyperparameter], sweepValues: [Hyperparameter]) {
        self.name = name
        self.group = group
        self.hyperparameters = hyperparameters
        self.sweepValues = sweepValues
    }

    /// A hyperparameter's value by name.
    public subscript(_ name: String) -> ParameterValue? { hyperparameters.first { $0.name == name }?.value }
}

/// A training job's automatic evaluation (`eval:` in the spec): at every checkpoint whose step is
/// a multiple of `eval_every`, the checkpoint is evaluated on a seeded subset of the test
/// manifests (the same utterances for every checkpoint of a run).
public struct EvalPlan: Sendable, Equatable {
    public var manifests: [ManifestSpec]
    /// Utterances per evaluation (nil: all).
    public var numSamples: Int?
    public var synthesizer: SynthesizerSpec
    /// Eval shards per evaluation (spread over free workers).
    public var shards: Int
    /// The ASR backend (``EvalPayload/asr``): `vosk`, `command` (`asr: {command: [...]}`) or
    /// `persistent` (`asr: {kind: persistent, command: [...]}`, docs/ASR.md).
    public var asr: String
    /// `asr: {command: [...]}`: transcribe with a program instead of Vosk (``EvalPayload/asrCommand``).
    public var asrCommand: [String]?
    /// `asr.timeout_seconds`: seconds per audio file (default: the synthesizer's timeout).
    public var asrTimeoutSeconds: Double?
    /// `asr.startup_timeout_seconds` (`persistent`): seconds to the ready line (default 600).
    public var asrStartupTimeoutSeconds: Double?
    /// `asr.max_restarts` (`persistent`): restarts per shard after a failure (default 2).
    public var asrMaxRestarts: Int?

    public init(manifests: [ManifestSpec], numSamples: Int?, synthesizer: SynthesizerSpec, shards: Int, asrCommand: [String]? = nil,
                asr: String? = nil, asrTimeoutSeconds: Double? = nil, asrStartupTimeoutSeconds: Double? = nil, asrMaxRestarts: Int? = nil) {
        self.manifests = manifests
        self.numSamples = numSamples
        self.synthesizer = synthesizer
        self.shards = shards
        self.asrCommand = asrCommand
        self.asr = asr ?? (asrCommand == nil ? "vosk" : "command")
        self.asrTimeoutSeconds = asrTimeoutSeconds
        self.asrStartupTimeoutSeconds = asrStartupTimeoutSeconds
        self.asrMaxRestarts = asrMaxRestarts
    }
}
