import ClusterAdmin
import Foundation
import JobSpecs
import Shared

/// What a validated training spec becomes in the store: one run per sweep combination (one
/// without a sweep), each with its W&B config, sweep tags and output directory, and one shard
/// that trains it to `max_steps`.
enum TrainingSubmission {
    /// The run's W&B config: every hyperparameter (numbers as numbers), the batch plan and
    /// presets, manifests with their SHA-256 (when the coordinator can read them), cadences.
    static func wandbConfig(spec: JobSpec, run: RunSpec, manifestHashes: [String: String]) -> [String: JSONValue] {
        var c: [String: JSONValue] = [:]
        for h in run.hyperparameters { c[h.name] = h.value.number.map(JSONValue.number) ?? .string(h.value.text) }
        c["job"] = .string(spec.name)
        c["runner"] = .string(spec.runner.rawValue)
        c["effective_batch"] = .number(Double(spec.effectiveBatch))
        if spec.world.isGang { c["world_size"] = .number(Double(spec.world.gpus)) }
        if let alerts = spec.alerts { c["alerts"] = .object(alerts) } // the run's own rules (AlertCenter reads them)
        c["presets"] = .object(Dictionary(uniqueKeysWithValues: spec.presets.map { p in
            (p.name, JSONValue.object([
                "match": .string(p.match.requirement), "batch_size": .number(Double(p.batch.batchSize)),
                "grad_accum": .number(Double(p.batch.gradAccum)),
            ]))
        }))
        c["checkpoint_every"] = .number(Double(spec.checkpointEvery))
        if let e = spec.evalEvery { c["eval_every"] = .number(Double(e)) }
        if let m = spec.maxSteps { c["max_steps"] = .number(Double(m)) }
        c["train_manifests"] = .array(spec.trainManifests.map { .string($0.description) })
        c["val_manifests"] = .array(spec.valManifests.map { .string($0.description) })
        if !manifestHashes.isEmpty { c["manifest_sha256"] = .object(manifestHashes.mapValues(JSONValue.string)) }
        if !run.sweepValues.isEmpty {
            c["sweep"] = .object(Dictionary(uniqueKeysWithValues: run.sweepValues.map { ($0.name, JSONValue.string($0.value.text)) }))
        }
        return c
    }

    /// SHA-256 of each manifest file the coordinator can read (up to 1 GiB each).
    static func manifestHashes(_ manifests: [ManifestSpec]) -> [String: String] {
        var out: [String: String] = [:]
        for m in manifests where out[m.path] == nil {
            guard let attrs = try? FileManager.default.attributesOfItem(atPath: m.path),
                  let size = attrs[.size] as? Int, size <= 1 << 30,
                  let data = FileManager.default.contents(atPath: m.path) else { continue }
            out[m.path] = SHA256.hash(Array(data)).hexString
        }
        return out
    }
}

extension Store {
    /// Creates a training job from a validated spec: one run per sweep combination (one without a
    /// sweep), each with one `train` shard that trains it to `max_steps`. The spec's text is kept
    /// with the job; every dispatch renders the command from it for the worker's card.
    public func submit(_ spec: JobSpec, text: String, checkpointRoot: String, now: Date = Date()) throws -> SubmitReply {
        let runs = spec.runs()
        let manifestHashes = TrainingSubmission.manifestHashes(spec.trainManifests + spec.valManifests)
        let job = TrainingJobRecord(name: spec.name, kind: spec.kind.rawValue, specText: text, shardKind: spec.shardKind,
                                    maxRetries: spec.maxRetries, project: spec.project, maxSteps: spec.maxSteps,
                                    worldSize: spec.world.gpus)
        let records = runs.map { run in
            TrainingRunRecord(name: run.name, group: run.group, tags: run.sweepValues.map { "\($0.name)=\($0.value.text)" },
                              config: TrainingSubmission.wandbConfig(spec: spec, run: run, manifestHashes: manifestHashes))
        }
        return try submitTraining(job, runs: records, outputDir: { id, index in
            TrainingDispatch.outputDirectory(spec: spec, run: runs[index], runId: id, root: checkpointRoot)
        }, now: now)
    }
}
