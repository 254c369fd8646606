import Foundation


/// The parameters of a `train` shard (its payload, a JSON object), as the coordinator writes them
/// after rendering the job's command template for the worker that got the shard:
///
/// ```json
/// {
///   "run": "ko-base_lr1e-5",                 // run id (default: the assignment's run id)
///   "argv": ["python", "trainers/train_gpt_v2.py", "--batch-size", "8", "…"],  // rendered, no shell
///   "workdir": "/srv/index-tts",              // optional: the trainer's working directory
///   "env": {"WANDB_MODE": "disabled"},        // optional: set over the worker's environment
///   "output_dir": "/shared/runs/ko-base",     // where the trainer writes checkpoints
///   "log_dir": "/shared/runs/ko-base/logs",   // optional: TensorBoard directory (default output_dir)
///   "resume_checkpoint": "/shared/…/model_step2000.pth",  // optional/null: what argv resumes from
///   "resume_step": 2000,                      // optional/null: that checkpoint's step
///   "metrics_floor": 2150,                    // optional: drop points at or below (default resume_step)
///   "metrics_floors": {"train/text_loss": 2150},  // optional: per key, drop points at or below
///   "max_steps": 200000,                      // the step the shard trains to (progress total)
///   "batch_size": 8, "grad_accum": 2,         // optional: the resolved preset (echoed on OOM)
///   "gpu": 0,                                 // optional: CUDA_VISIBLE_DEVICES (default: inherited)
///   "grace_seconds": 10,                      // optional: SIGTERM → SIGKILL on cancel
///   "eval_every": 1000, "checkpoint_every": 1000,  // optional: the cadences whose checkpoints are pinned
///   "pin_dir": "/shared/runs/ko-base/pins",   // optional: where pins go (default output_dir/pins)
///   "stop_grace_seconds": 1200,               // optional: a planned stop waits this long for a full checkpoint
///   "python": "/opt/venv/bin/python",         // optional: `python` on the trainer's PATH
///   "resume_full_state": true,                // optional: whether resume_checkpoint holds optimizer state
///   "placement": {"rank": 1, "world_size": 2, "local_rank": 0, "local_world_size": 1, "nnodes": 2,
///                 "node_rank": 1, "master_addr": "10.0.0.5", "master_port": 29400}
///                                             // optional: a rank of a data-parallel gang (RankPlacement);
///                                             // only rank 0 reports metrics and checkpoints
/// }
/// ```
public struct TrainPayload: Sendable, Equatable {
    public var run: String
    public var argv: [String]
    public var workdir: String?
    public var env: [String: String]
    public var outputDir: String
    public var logDir: String
    public var resumeCheckpoint: String?
    public var resumeStep: Int64?
    /// Points at or below this step are not spooled (the run's metrics up to it are already
    /// stored). Defaults to ``resumeStep``; the coordinator may pass the run's last stored step
    /// when the previous attempt logged past its last checkpoint.
    public var metricsFloor: Int64?
    /// Per key, points at or below this step are not spooled (the coordinator passes what the
    /// run already has stored, key by key: a TensorBoard-only key may trail the stdout keys).
    public var metricsFloors: [String: Int64]
    public var maxSteps: Int64
    public var batchSize: Int?
    public var gradAccum: Int?
    /// `CUDA_VISIBLE_DEVICES` for the trainer; nil: the worker's own (set by `--gpu`).
    public var gpu: String?
    public var grace: Duration
    /// Steps between evaluations: checkpoints at these steps are pinned (nil: none).
    public var evalEvery: Int64?
    /// Steps between kept checkpoints: checkpoints at these steps are pinned (nil: none).
    public var checkpointEvery: Int64?
    /// Where pins go (default `output_dir/pins`).
    public var pinDirectory: String
    /// How long a planned stop waits for the trainer's next full-state checkpoint.
    public var stopGrace: Duration
    /// The interpreter the trainer and its children find as `python` on their PATH (nil: the
    /// trainer's own when argv[0] is a Python interpreter).
    public var python: String?
    /// Whether ``resumeCheckpoint`` holds optimizer state (nil: unknown).
    public var resumeFullState: Bool?
    /// This shard's rank in a data-parallel gang (nil: a single-GPU run). Its environment is in
    /// ``env`` already; only rank 0 reports metrics and checkpoints (``reportsMetrics``).
    public var placement: RankPlacement?

    /// Rank 0 (or a single-GPU run) reports the run's metrics, checkpoints and pins; the other
    /// ranks of a gang only their logs.
    public var reportsMetrics: Bool { (placement?.rank ?? 0) == 0 }

    public init(run: String, argv: [String], workdir: String? = nil, env: [String: String] = [:], outputDir: String,
                logDir: String? = nil, resumeCheckpoint: String? = nil, resumeStep: Int64? = nil, metricsFloor: Int64? = nil, metricsFloors: [String: Int64] = [:],
                maxSteps: Int64, batchSize: Int? = nil, gradAccum: Int? = nil, gpu: String? = nil, grace: Duration = .seconds(10),
                evalEvery: Int64? = nil, checkpointEvery: Int64? = nil, pinDirectory: String? = nil, stopGrace: Duration = .seconds(1200),
                python: String? = nil, resumeFullState: Bool? = nil) {
        self.run = run
        self.argv = argv
        self.workdir = workdir
        self.env = env
        self.outputDir = outputDir
        self.logDir = logDir ?? outputDir
        self.resumeCheckpoint = resumeCheckpoint
        self.resumeStep = resumeStep
        self.metricsFloor = metricsFloor
        self.metricsFloors = metricsFloors
        self.maxSteps = maxSteps
        self.batchSize = batchSize
        self.gradAccum = gradAccum
        self.gpu = gpu
        self.grace = grace
        self.evalEvery = evalEvery
        self.checkpointEvery = checkpointEvery
        self.pinDirectory = pinDirectory ?? (outputDir.hasSuffix("/") ? outputDir + "pins" : outputDir + "/pins")
        self.stopGrace = stopGrace
        self.python = python
        self.resumeFullState = resumeFullState
    }

    /// The payload as a JSON object (the coordinator's side; tests).
    public var json: [String: JSONValue] {
        var o: [String: JSONValue] = [
            "run": .string(run), "argv": .array(argv.map(JSONValue.string)), "output_dir": .string(outputDir),
            "log_dir": .string(logDir), "max_steps": .number(Double(maxSteps)),
            "grace_seconds": .number(Double(grace.components.seconds) + Double(grace.components.attoseconds) / 1e18),
        ]
        if let workdir { o["workdir"] = .string(workdir) }
        if !env.isEmpty { o["env"] = .object(env.mapValues(JSONValue.string)) }
        o["resume_checkpoint"] = resumeCheckpoint.map(JSONValue.string) ?? .null
        o["resume_step"] = resumeStep.map { .number(Double($0)) } ?? .null
        if let metricsFloor { o["metrics_floor"] = .number(Double(metricsFloor)) }
        if !metricsFloors.isEmpty { o["metrics_floors"] = .object(metricsFloors.mapValues { .number(Double($0)) }) }
        if let batchSize { o["batch_size"] = .number(Double(batchSize)) }
        if let gradAccum { o["grad_accum"] = .number(Double(gradAccum)) }
        if let gpu { o["gpu"] = Int(gpu).map { .number(Double($0)) } ?? .string(gpu) }
        if let evalEvery { o["eval_every"] = .number(Double(evalEvery)) }
        if let checkpointEvery { o["checkpoint_every"] = .number(Double(checkpointEvery)) }
        o["pin_dir"] = .string(pinDirectory)
        o["stop_grace_seconds"] = .number(stopGrace.secondsValue)
        if let python { o["python"] = .string(python) }
        if let resumeFullState { o["resume_full_state"] = .bool(resumeFullState) }
        if let placement, let data = try? JSONCoding.encode(placement), let v = try? JSONCoding.decode(JSONValue.self, from: data) { o["placement"] = v }
        return o
    }

    /// Reads a shard payload. `runId` is the assignment's run, used when the payload has no `run`.
    public static func parse(_ payload: [UInt8], runId: String?) throws(TrainPayloadError) -> TrainPayload {
        guard let value = try? JSONCoding.decode(JSONValue.self, from: payload), case .object(let o) = value else {
            throw TrainPayloadError(field: nil, message: "the payload is not a JSON object")
        }
        guard let run = o["run"]?.stringValue ?? runId, !run.isEmpty else {
            throw TrainPayloadError(field: "run", message: "is required (the run id; or give the shard a run)")
        }
        guard case .array(let rawArgv)? = o["argv"], !rawArgv.isEmpty else {
            throw TrainPayloadError(field: "argv", message: "must be a non-empty array of strings (the rendered trainer command)")
        }
        var argv: [String] = []
        for (i, a) in rawArgv.enumerated() {
            guard let s = a.stringValue else { throw TrainPayloadError(field: "argv[\(i)]", message: "must be a string, got \(a)") }
            argv.append(s)
        }
        guard let outputDir = o["output_dir"]?.stringValue, !outputDir.isEmpty else {
            throw TrainPayloadError(field: "output_dir", message: "is required (the directory the trainer writes checkpoints to)")
        }
        var env: [String: String] = [:]
        switch o["env"] {
        case nil, .null?: break
        case .object(let e)?:
            for (k, v) in e {
                switch v {
                case .string(let s): env[k] = s
                case .number(let n): env[k] = n == n.rounded() && abs(n) < 1e15 ? String(Int64(n)) : String(n)
                case .bool(let b): env[k] = b ? "1" : "0"
                default: throw TrainPayloadError(field: "env.\(k)", message: "must be a string, number or boolean, got \(v)")
                }
            }
        case let other?: throw TrainPayloadError(field: "env", message: "must be an object of strings, got \(other)")
        }
        guard let maxSteps = try integer(o, "max_steps"), maxSteps > 0 else {
            throw TrainPayloadError(field: "max_steps", message: "is required and must be a positive integer (the step this shard trains to)")
        }
        let gpu: String?
        switch o["gpu"] {
        case nil, .null?: gpu = nil
        case .string(let s)?: gpu = s
        case .number?: gpu = try integer(o, "gpu").map { String($0) }
        case let other?: throw TrainPayloadError(field: "gpu", message: "must be a GPU index, got \(other)")
        }
        let graceSeconds = try number(o, "grace_seconds") ?? 10
        guard graceSeconds >= 0, graceSeconds <= 3600 else {
            throw TrainPayloadError(field: "grace_seconds", message: "must be between 0 and 3600, got \(graceSeconds)")
        }
        var floors: [String: Int64] = [:]
        switch o["metrics_floors"] {
        case nil, .null?: break
        case .object(let f)?:
            for (k, v) in f {
                guard let n = v.doubleValue, n == n.rounded(), abs(n) < 9e15 else {
                    throw TrainPayloadError(field: "metrics_floors.\(k)", message: "must be a whole number (a step), got \(v)")
                }
                floors[k] = Int64(n)
            }
        case let other?: throw TrainPayloadError(field: "metrics_floors", message: "must be an object of key → step, got \(other)")
        }
        let stopGraceSeconds = try number(o, "stop_grace_seconds") ?? 1200
        guard stopGraceSeconds >= 0, stopGraceSeconds <= 7 * 86_400 else {
            throw TrainPayloadError(field: "stop_grace_seconds", message: "must be between 0 and 604800, got \(stopGraceSeconds)")
        }
        for key in ["eval_every", "checkpoint_every"] {
            if let n = try integer(o, key), n <= 0 { throw TrainPayloadError(field: key, message: "must be a positive number of steps, got \(n)") }
        }
        let resumeFullState: Bool?
        switch o["resume_full_state"] {
        case nil, .null?: resumeFullState = nil
        case .bool(let b)?: resumeFullState = b
        case let other?: throw TrainPayloadError(field: "resume_full_state", message: "must be true or false, got \(other)")
        }
        var placement: RankPlacement?
        switch o["placement"] {
        case nil, .null?: placement = nil
        case let p?:
            guard let data = try? JSONCoding.encode(p), let decoded = try? JSONCoding.decode(RankPlacement.self, from: data),
                  decoded.worldSize >= 1, (0..<decoded.worldSize).contains(decoded.rank), decoded.masterPort > 0, decoded.masterPort < 65_536 else {
                throw TrainPayloadError(field: "placement", message: "must be {rank, world_size, local_rank, local_world_size, nnodes, node_rank, master_addr, master_port} with 0 ≤ rank < world_size and a port, got \(p)")
            }
            placement = decoded
        }
        var payload = TrainPayload(
            run: run, argv: argv, workdir: try string(o, "workdir"), env: env, outputDir: outputDir,
            logDir: try string(o, "log_dir"), resumeCheckpoint: try string(o, "resume_checkpoint"),
            resumeStep: try integer(o, "resume_step"), metricsFloor: try integer(o, "metrics_floor"), metricsFloors: floors, maxSteps: maxSteps,
            batchSize: try integer(o, "batch_size").map { Int($0) }, gradAccum: try integer(o, "grad_accum").map { Int($0) },
            gpu: gpu, grace: .milliseconds(Int64((graceSeconds * 1000).rounded())),
            evalEvery: try integer(o, "eval_every"), checkpointEvery: try integer(o, "checkpoint_every"),
            pinDirectory: try string(o, "pin_dir"), stopGrace: .milliseconds(Int64((stopGraceSeconds * 1000).rounded())),
            python: try string(o, "python"), resumeFullState: resumeFullState)
        payload.placement = placement
        return payload
    }

    private static func string(_ o: [String: JSONValue], _ key: String) throws(TrainPayloadError) -> String? {
        switch o[key] {
        case nil, .null?: return nil
        case .string(let s)?: return s.isEmpty ? nil : s
        case let other?: throw TrainPayloadError(field: key, message: "must be a string, got \(other)")
        }
    }

    private static func number(_ o: [String: JSONValue], _ key: String) throws(TrainPayloadError) -> Double? {
        switch o[key] {
        case nil, .null?: return nil
        case .number(let n)? where n.isFinite: return n
        case let other?: throw TrainPayloadError(field: key, message: "must be a number, got \(other)")
        }
    }

    private static func integer(_ o: [String: JSONValue], _ key: String) throws(TrainPayloadError) -> Int64? {
        guard let n = try number(o, key) else { return nil }
        guard n == n.rounded(), abs(n) < 9e15 else {
            throw TrainPayloadError(field: key, message: "must be a whole number, got \(n)")
        }
        return Int64(n)
    }
}

/// A `train` shard's payload is not usable.
public struct TrainPayloadError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The offending field (`argv`, `env.HOME`), or nil for the payload as a whole.
    public let field: String?
    public let message: String

    public init(field: String?, message: String) {
        self.field = field
        self.message = message
    }

    public var description: String {
        "train shard payload: \(field.map { "field \"\($0)\" " } ?? "")\(message) (the coordinator builds it from the job spec; check the job's command and paths)"
    }
}
