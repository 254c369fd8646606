import Foundation
import JobSpecs
import Shared

/// Decides what a queued training shard becomes on one worker: the job's preset for that card,
/// the micro-batch after any OOM downshifts, the checkpoint to resume from, and the rendered
/// trainer command (``TrainPayload``). Pure: the store gathers the inputs
/// (``TrainingDispatchSnapshot``) and records the outcome (``TrainingDispatchPlan``).
enum TrainingDispatch {
    /// What the store writes for a queued training shard offered to a worker, from what it knows
    /// about the run: the spec is parsed here (one that no longer parses fails the shard), a
    /// worker of unknown device is skipped, and ``decide(spec:run:device:)`` decides the rest.
    static func plan(_ snapshot: TrainingDispatchSnapshot) -> TrainingDispatchPlan {
        let spec: JobSpec
        do { spec = try JobSpecParser.parse(yaml: snapshot.specText) } catch {
            return .fail(reason: "the stored job spec no longer parses: \(error)")
        }
        guard let device = snapshot.device else { return .skip }
        switch decide(spec: spec, run: runState(snapshot, spec: spec), device: device) {
        case .dispatch(let d):
            let resumeMessage = d.resumeCheckpoint.map { checkpoint in
                "\(d.resumeNote ?? "resuming from \(checkpoint) (step \(d.resumeStep.map(String.init) ?? "?"))") on \(device.name) with \(d.preset): \(d.batch)"
            }
            return .dispatch(TrainingDispatchWrite(payload: d.payload, preset: d.preset, batchSize: d.batch.batchSize, gradAccum: d.batch.gradAccum,
                                                   resumeMessage: resumeMessage))
        case .wait(let reason): return .wait(reason: reason)
        case .invalid(let reason): return .fail(reason: reason)
        }
    }

    /// The run as the store described it.
    static func runState(_ snapshot: TrainingDispatchSnapshot, spec: JobSpec) -> RunState {
        RunState(
            runId: snapshot.runId, runIndex: snapshot.runIndex,
            outputDir: snapshot.outputDir ?? outputDirectory(spec: spec, run: spec.runs()[0], runId: snapshot.runId, root: "./tts-runs"),
            batchCap: snapshot.batchCap, checkpointPath: snapshot.checkpointPath, checkpointStep: snapshot.checkpointStep,
            checkpointFull: snapshot.checkpointFull,
            lightCheckpointPath: snapshot.lightCheckpointPath, lightCheckpointStep: snapshot.lightCheckpointStep,
            storedThrough: snapshot.storedThrough)
    }

    /// After CUDA ran out of memory at the batch of a training shard's `payload`: the run's cap
    /// at half that micro-batch (accumulation doubles at the next dispatch, the effective batch
    /// stays), with the note for the run's log. Nil when the spec's floor does not allow it, or
    /// the payload or spec cannot be read.
    static func downshift(specText: String, payload: String) -> TrainingDownshift? {
        guard let payload = jsonDecode([String: JSONValue].self, payload),
              let size = payload["batch_size"]?.doubleValue.map({ Int($0) }),
              let spec = try? JobSpecParser.parse(yaml: specText) else { return nil }
        let current = BatchSettings(batchSize: size, gradAccum: payload["grad_accum"]?.doubleValue.map { Int($0) } ?? 1)
        guard let next = spec.downshift(current) else { return nil }
        let data: [String: JSONValue] = [
            "from_batch_size": .number(Double(current.batchSize)), "from_grad_accum": .number(Double(current.gradAccum)),
            "batch_size": .number(Double(next.batchSize)), "grad_accum": .number(Double(next.gradAccum)),
        ]
        return TrainingDownshift(batchCap: next.batchSize,
                                 note: "OOM downshift: CUDA ran out of memory at \(current); retrying from the last checkpoint at \(next)", data: data)
    }

    /// What the store knows about the run at dispatch time.
    struct RunState: Sendable, Equatable {
        var runId: String
        /// Index of the run in `spec.runs()` (its sweep combination).
        var runIndex: Int
        var outputDir: String
        /// The largest micro-batch the run may use (half of one that ran out of memory), if any.
        var batchCap: Int?
        /// The newest checkpoint with optimizer state (or, from older events, of unknown state).
        var checkpointPath: String?
        var checkpointStep: Int64?
        /// False when ``checkpointPath`` is known to hold no optimizer state (nil: unknown).
        var checkpointFull: Bool? = nil
        /// The newest checkpoint without optimizer state.
        var lightCheckpointPath: String? = nil
        var lightCheckpointStep: Int64? = nil
        /// Per key, the highest step already stored for the run: a resumed trainer's points up to
        /// there are dropped (per key, since a TensorBoard-only key may trail the stdout keys).
        var storedThrough: [String: Int64]
    }

    /// What a worker gets: the shard payload and what the run records about the dispatch.
    struct Dispatch: Sendable, Equatable {
        /// A ``TrainPayload`` (command runner) or ``TorchTrainPayload`` (torch runner) as JSON.
        var payload: [String: JSONValue]
        var resumeCheckpoint: String?
        var resumeStep: Int64?
        var preset: String
        var batch: BatchSettings
        /// What the resume keeps and loses, for the run's log (nil on a first start).
        var resumeNote: String? = nil
    }

    /// The checkpoint a resume starts from, by the spec's `resume:` policy.
    struct ResumePoint: Sendable, Equatable {
        var path: String
        var step: Int64
        /// False: model weights only (AdamW and the LR schedule restart); nil: unknown.
        var fullState: Bool?
        /// Which file, which step and what is lost, in words.
        var note: String
    }

    /// Picks the resume checkpoint: the newest with optimizer state (`resume: full`, the
    /// default), a newer light one only with `resume: newest` or when none has state.
    static func resumePoint(run: RunState, policy: ResumePolicy) -> ResumePoint? {
        let full = run.checkpointPath.map { (path: $0, step: run.checkpointStep ?? 0) }
        let light = run.lightCheckpointPath.map { (path: $0, step: run.lightCheckpointStep ?? 0) }
        func fullPoint(_ f: (path: String, step: Int64), skipped: (path: String, step: Int64)?) -> ResumePoint {
            var note = "resuming from \(f.path) at step \(f.step)"
            note += run.checkpointFull == nil ? " (optimizer state unknown)" : " with full state (model, AdamW, LR schedule)"
            if let s = skipped, s.step > f.step {
                note += "; the newer light checkpoint at step \(s.step) (\(s.path)) was skipped, since it has no optimizer state (resume: full); steps \(f.step + 1)…\(s.step) are trained again"
            }
            return ResumePoint(path: f.path, step: f.step, fullState: run.checkpointFull ?? nil, note: note)
        }
        func lightPoint(_ l: (path: String, step: Int64), why: String) -> ResumePoint {
            ResumePoint(path: l.path, step: l.step, fullState: false,
                        note: "resuming from \(l.path) at step \(l.step) with model weights only (\(why)): AdamW's moments and the LR schedule position are lost, so the trainer restarts its warm-up")
        }
        switch (full, light) {
        case (nil, nil): return nil
        case (let f?, nil): return fullPoint(f, skipped: nil)
        case (nil, let l?): return lightPoint(l, why: "no checkpoint with optimizer state exists yet")
        case (let f?, let l?):
            if policy == .newest, l.step > f.step { return lightPoint(l, why: "resume: newest; the newest full-state checkpoint is at step \(f.step)") }
            return fullPoint(f, skipped: l)
        }
    }

    enum Decision: Sendable, Equatable {
        /// Run it on this worker with this payload.
        case dispatch(Dispatch)
        /// This card fits no preset (the run waits for another worker).
        case wait(reason: String)
        /// The spec cannot produce a command for this run (the shard fails with this reason).
        case invalid(reason: String)
    }

    /// The trainer's step limit when the spec has none (progress is then open-ended).
    static let unboundedSteps: Int64 = 1_000_000_000

    /// The batch for a card: the preset's, halved (accumulation doubled) until it is within the
    /// run's cap, so the effective batch stays the same. Nil when the cap cannot be met.
    static func batch(_ preset: BatchSettings, cap: Int?, floor: Int) -> BatchSettings? {
        var b = preset
        guard let cap else { return b }
        while b.batchSize > cap {
            guard let next = b.downshifted(floor: floor) else { return nil }
            b = next
        }
        return b
    }

    static func decide(spec: JobSpec, run: RunState, device: DeviceInfo) -> Decision {
        let runs = spec.runs()
        guard runs.indices.contains(run.runIndex) else {
            return .invalid(reason: "the job spec no longer has run #\(run.runIndex) (it makes \(runs.count) runs)")
        }
        let specRun = runs[run.runIndex]
        let memoryGB = Double(device.memoryBytes) / 1e9
        let preset: GPUPreset
        switch spec.resolvePreset(deviceName: device.name, memoryGB: memoryGB) {
        case .matched(let p): preset = p
        case .noMatch(let reason): return .wait(reason: reason)
        }
        guard let batch = batch(preset.batch, cap: run.batchCap, floor: spec.minimumBatchSize) else {
            return .wait(reason: "\(preset.name) runs \(preset.batch), which cannot be brought to the run's OOM limit of micro-batch \(run.batchCap ?? 0) at min_batch_size \(spec.minimumBatchSize)")
        }
        // The card's own hyperparameters (the guide's 4090 preset has its own LR and warm-up).
        let runSpec = preset.applied(to: specRun)
        let resume = resumePoint(run: run, policy: spec.resume)
        if spec.runner == .torch {
            guard let payload = torchPayload(spec: spec, runSpec: runSpec, run: run, batch: batch) else {
                return .invalid(reason: "runner: torch needs a model")
            }
            return .dispatch(Dispatch(payload: shardJSON(payload, preset: preset.name), resumeCheckpoint: payload.resumeCheckpoint,
                                      resumeStep: payload.resumeStep, preset: preset.name, batch: batch, resumeNote: resumeNote(payload)))
        }
        let argv: [String]
        do {
            argv = try spec.renderCommand(run: runSpec, gpu: device.index, runId: run.runId, outputDir: run.outputDir,
                                          batch: batch, resumeCheckpoint: resume?.path)
        } catch {
            return .invalid(reason: "the command template cannot be rendered: \(error)")
        }
        let logDir = (spec.logDir ?? "{output_dir}/logs").replacingOccurrences(of: "{output_dir}", with: run.outputDir)
        let payload = TrainPayload(
            run: run.runId, argv: argv, workdir: spec.workdir, env: spec.environment, outputDir: run.outputDir,
            logDir: logDir, resumeCheckpoint: resume?.path, resumeStep: resume?.step,
            metricsFloors: run.storedThrough, maxSteps: spec.maxSteps.map(Int64.init) ?? unboundedSteps,
            batchSize: batch.batchSize, gradAccum: batch.gradAccum,
            evalEvery: spec.evalEvery.map(Int64.init), checkpointEvery: Int64(spec.checkpointEvery),
            stopGrace: spec.stopGrace, python: spec.python, resumeFullState: resume?.fullState)
        var json = payload.json
        json["preset"] = .string(preset.name)
        json["effective_batch"] = .number(Double(batch.effectiveBatch))
        return .dispatch(Dispatch(payload: json, resumeCheckpoint: payload.resumeCheckpoint, resumeStep: payload.resumeStep,
                                  preset: preset.name, batch: batch, resumeNote: resume?.note))
    }

    /// The torch runner's payload: the model, the manifests, the batch, the cadences, and the
    /// optimizer and schedule from the run's hyperparameters (`lr`, `warmup`, `weight_decay`,
    /// `grad_clip`, `schedule`, …; see ``JobSpec/torchHyperparameters``).
    static func torchPayload(spec: JobSpec, runSpec: RunSpec, run: RunState, batch: BatchSettings) -> TorchTrainPayload? {
        guard let model = spec.model else { return nil }
        func number(_ name: String) -> Double? { runSpec[name]?.number }
        var p = TorchTrainPayload(
            run: run.runId, model: model, trainManifests: spec.trainManifests.map(\.description),
            valManifests: spec.valManifests.map(\.description), outputDir: run.outputDir,
            maxSteps: spec.maxSteps.map(Int64.init) ?? unboundedSteps, batchSize: batch.batchSize, gradAccum: batch.gradAccum,
            checkpointEvery: Int64(spec.checkpointEvery), evalEvery: Int64(spec.evalEvery ?? 0))
        if let v = number("lr") { p.learningRate = v }
        if let v = number("beta1") { p.beta1 = v }
        if let v = number("beta2") { p.beta2 = v }
        if let v = number("eps") { p.epsilon = v }
        if let v = number("weight_decay") { p.weightDecay = v }
        if let v = number("grad_clip") { p.gradClip = v }
        if let v = runSpec["schedule"]?.text { p.schedule = v }
        if let v = number("warmup") { p.warmupSteps = Int64(v) }
        if let v = number("min_lr_ratio") { p.minLearningRateRatio = v }
        if let v = number("decay_fraction") { p.decayFraction = v }
        if let v = number("seed") { p.seed = Int64(v) }
        if let v = number("threads") { p.threads = Int(v) }
        if let v = number("eval_batches") { p.evalBatches = max(1, Int(v)) }
        if let v = number("oom_at_batch") { p.outOfMemoryAtBatch = Int(v) }
        if let v = number("collective_timeout"), v > 0 { p.collectiveTimeout = v }
        if let v = runSpec["amp"]?.text { p.mixedPrecision = !["false", "0", "no", "off"].contains(v.lowercased()) }
        p.resumeCheckpoint = run.checkpointPath
        p.resumeStep = run.checkpointPath != nil ? run.checkpointStep : nil
        p.metricsFloors = run.storedThrough
        return p
    }

    /// A torch payload as its shard's JSON, with the preset's name.
    static func shardJSON(_ payload: TorchTrainPayload, preset: String) -> [String: JSONValue] {
        var json = (try? JSONCoding.decode([String: JSONValue].self, from: JSONCoding.encode(payload))) ?? [:]
        json["preset"] = .string(preset)
        return json
    }

    /// What the run log says when a torch payload resumes from a checkpoint.
    static func resumeNote(_ payload: TorchTrainPayload) -> String? {
        payload.resumeCheckpoint.map { "resuming from \($0) at step \(payload.resumeStep.map(String.init) ?? "?")" }
    }

    /// The output directory of a run: the spec's `output_dir` (with `{run_id}`, `{run_name}`,
    /// `{job_name}` filled in), else `<root>/<job name>/<run name>-<run id>`.
    static func outputDirectory(spec: JobSpec, run: RunSpec, runId: String, root: String) -> String {
        if let dir = spec.outputDir {
            return dir.replacingOccurrences(of: "{run_id}", with: runId)
                .replacingOccurrences(of: "{run_name}", with: run.name)
                .replacingOccurrences(of: "{job_name}", with: spec.name)
        }
        let base = root.hasSuffix("/") ? String(root.dropLast()) : root
        return "\(base)/\(pathSafe(spec.name))/\(pathSafe(run.name))-\(runId)"
    }

    /// A name as one path component (no separators, no `..`).
    static func pathSafe(_ name: String) -> String {
        let s = String(name.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "-" })
        return s.isEmpty || s.allSatisfy({ $0 == "." }) ? "run" : s
    }
}
