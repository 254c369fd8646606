import Foundation
import JobSpecs
import Shared

/// Decides whether a data-parallel run (`world: {gpus: N}`) can start now on the idle workers,
/// and if so on which, with which ranks and which batch. Pure: the store gathers the run's state
/// and the idle workers (``GangCandidateRecord``) and leases every rank in one transaction, or none.
///
/// The rules:
/// - **All or none.** A gang starts only when N idle workers fit it at once; nothing is held for
///   it in the meantime (a partial gang would idle the workers it held).
/// - **Fitting.** A worker fits when its card matches one of the job's presets and it has not
///   failed this run's gang twice (such a worker is left out of the run).
/// - **Placement.** Ranks fill the hosts with the most fitting idle workers first (fewest hosts,
///   so most traffic stays inside a box); `world: {nodes: M, gpus_per_node: K}` takes exactly K
///   on each of M hosts. Ranks on one host are consecutive; rank 0 is on the first host, on a
///   worker that offered a rendezvous port, which becomes `MASTER_ADDR:MASTER_PORT`.
/// - **One preset for the gang.** The preset of the member card with the smallest micro-batch
///   (the card class that fits all members); each rank's batch keeps the run's effective batch
///   (``WorldSpec/rankBatch(_:)``), then any OOM cap of the run halves the micro-batch
///   (accumulation doubles) for every rank alike.
/// - **Devices.** Each rank sees its host's gang GPUs in local-rank order
///   (`CUDA_VISIBLE_DEVICES`), as torchrun's processes do, so `cuda:LOCAL_RANK` is its own card.
enum GangDispatch {
    /// An idle worker offered to a waiting gang (the store's record of it).
    typealias Candidate = GangCandidateRecord

    /// One rank of a gang that starts.
    struct Member: Sendable, Equatable {
        var workerId: String
        var placement: RankPlacement
        /// The rank's shard payload (a ``TrainPayload`` as JSON).
        var payload: [String: JSONValue]
    }

    enum Decision: Sendable, Equatable {
        case start(members: [Member], preset: String, batch: BatchSettings, resumeNote: String?)
        case wait(reason: String)
        case invalid(reason: String)
    }

    /// What the store writes for a waiting gang offered these idle workers.
    static func plan(_ snapshot: TrainingDispatchSnapshot, candidates: [GangCandidateRecord]) -> GangDispatchPlan {
        let spec: JobSpec
        do { spec = try JobSpecParser.parse(yaml: snapshot.specText) } catch {
            return .fail(reason: "the stored job spec no longer parses: \(error)")
        }
        let offered = candidates
        switch decide(spec: spec, run: TrainingDispatch.runState(snapshot, spec: spec), candidates: offered) {
        case .start(let members, let preset, let batch, let note):
            return .start(members: members.map { ($0.workerId, $0.payload) }, preset: preset, batchSize: batch.batchSize, gradAccum: batch.gradAccum,
                          resumeMessage: note.map { "gang of \(members.count): \($0)" })
        case .wait(let reason):
            let fitting = offered.filter { c in
                guard !c.excluded, case .matched = spec.resolvePreset(deviceName: c.device.name, memoryGB: Double(c.device.memoryBytes) / 1e9) else { return false }
                return true
            }.map(\.workerId)
            return .wait(reason: reason, fitting: fitting)
        case .invalid(let reason):
            return .fail(reason: reason)
        }
    }

    static func decide(spec: JobSpec, run: TrainingDispatch.RunState, candidates: [Candidate]) -> Decision {
        let world = spec.world
        let n = world.gpus
        let runs = spec.runs()
        guard runs.indices.contains(run.runIndex) else {
            return .invalid(reason: "the job spec no longer has run #\(run.runIndex) (it makes \(runs.count) runs)")
        }
        // Who fits, with the preset their card gets.
        var fitting: [(candidate: Candidate, preset: GPUPreset)] = []
        var reasons: Set<String> = []
        let excluded = candidates.filter(\.excluded).map(\.name)
        for c in candidates where !c.excluded {
            switch spec.resolvePreset(deviceName: c.device.name, memoryGB: Double(c.device.memoryBytes) / 1e9) {
            case .matched(let p): fitting.append((c, p))
            case .noMatch(let reason): reasons.insert(reason)
            }
        }
        func waiting(_ have: Int) -> Decision {
            var reason = "waiting for \(n - have) of \(n) GPUs: \(have) idle worker\(have == 1 ? "" : "s") fit\(have == 1 ? "s" : "") the gang"
            if let nodes = world.nodes, let per = world.gpusPerNode { reason += " (it needs \(per) on each of \(nodes) hosts)" }
            if !reasons.isEmpty { reason += "; others do not: \(reasons.sorted().joined(separator: "; "))" }
            if !excluded.isEmpty { reason += "; left out after failing this gang twice: \(excluded.sorted().joined(separator: ", "))" }
            return .wait(reason: reason)
        }
        // Hosts by idle fitting workers, most first (ties by host name); a host's workers by GPU index.
        var byHost: [String: [(candidate: Candidate, preset: GPUPreset)]] = [:]
        for f in fitting { byHost[f.candidate.host, default: []].append(f) }
        var hosts = byHost.keys.sorted { (byHost[$0]!.count, $1) > (byHost[$1]!.count, $0) }
        for h in hosts { byHost[h]!.sort { ($0.candidate.device.index, $0.candidate.workerId) < ($1.candidate.device.index, $1.candidate.workerId) } }
        // Rank 0's host must have a worker that offered a rendezvous port: such hosts first.
        hosts.sort { a, b in
            let ra = byHost[a]!.contains { $0.candidate.rendezvous != nil }, rb = byHost[b]!.contains { $0.candidate.rendezvous != nil }
            return ra && !rb
        }
        var chosen: [[(candidate: Candidate, preset: GPUPreset)]] = []
        if let nodes = world.nodes, let per = world.gpusPerNode {
            for h in hosts where byHost[h]!.count >= per && chosen.count < nodes { chosen.append(Array(byHost[h]!.prefix(per))) }
            guard chosen.count == nodes else { return waiting(chosen.count * per + 0) }
        } else {
            var left = n
            for h in hosts where left > 0 {
                let take = Array(byHost[h]!.prefix(left))
                chosen.append(take)
                left -= take.count
            }
            guard left == 0 else { return waiting(fitting.count) }
        }
        // Rank 0: a worker of the first host that offered a port goes first on that host.
        guard let first = chosen.first, let lead = first.firstIndex(where: { $0.candidate.rendezvous != nil }),
              let rendezvous = first[lead].candidate.rendezvous else {
            return .wait(reason: "waiting for a worker that can host the rendezvous (rank 0): the idle workers that fit sent no free port (workers older than this coordinator)")
        }
        chosen[0].insert(chosen[0].remove(at: lead), at: 0)

        // One preset for the gang: the smallest micro-batch among its members' cards.
        let members = chosen.flatMap { $0 }
        let preset = members.map(\.preset).min { $0.batch.batchSize < $1.batch.batchSize }!
        guard let shared = world.rankBatch(preset.batch) else {
            return .invalid(reason: "\(preset.name)'s effective batch \(preset.batch.effectiveBatch) cannot be shared by \(n) ranks")
        }
        guard let batch = TrainingDispatch.batch(shared, cap: run.batchCap, floor: spec.minimumBatchSize) else {
            return .wait(reason: "\(preset.name) gives each rank \(shared), which cannot be brought to the run's OOM limit of micro-batch \(run.batchCap ?? 0) at min_batch_size \(spec.minimumBatchSize)")
        }
        let runSpec = preset.applied(to: runs[run.runIndex])
        let resume = TrainingDispatch.resumePoint(run: run, policy: spec.resume)
        let logDir = (spec.logDir ?? "{output_dir}/logs").replacingOccurrences(of: "{output_dir}", with: run.outputDir)
        var out: [Member] = []
        var torchResumeNote: String?
        var rank = 0
        for (nodeRank, host) in chosen.enumerated() {
            let visible = host.map { String($0.candidate.device.index) }.joined(separator: ",")
            for (localRank, m) in host.enumerated() {
                let placement = RankPlacement(rank: rank, worldSize: n, localRank: localRank, localWorldSize: host.count,
                                              nodes: chosen.count, nodeRank: nodeRank,
                                              masterAddress: rendezvous.address, masterPort: rendezvous.port)
                if spec.runner == .torch {
                    // The torch runner: the shim joins the gang's c10d group itself.
                    guard var payload = TrainingDispatch.torchPayload(spec: spec, runSpec: runSpec, run: run, batch: batch) else {
                        return .invalid(reason: "runner: torch needs a model")
                    }
                    payload.placement = placement
                    if rank == 0 { torchResumeNote = TrainingDispatch.resumeNote(payload) }
                    out.append(Member(workerId: m.candidate.workerId, placement: placement, payload: TrainingDispatch.shardJSON(payload, preset: preset.name)))
                    rank += 1
                    continue
                }
                let argv: [String]
                do {
                    argv = try spec.renderCommand(run: runSpec, gpu: m.candidate.device.index, runId: run.runId, outputDir: run.outputDir,
                                                  batch: batch, resumeCheckpoint: resume?.path, placement: placement)
                } catch {
                    return .invalid(reason: "the command template cannot be rendered: \(error)")
                }
                var env = spec.environment
                env.merge(placement.environment) { $1 }
                var payload = TrainPayload(
                    run: run.runId, argv: argv, workdir: spec.workdir, env: env, outputDir: run.outputDir,
                    logDir: logDir, resumeCheckpoint: resume?.path, resumeStep: resume?.step,
                    metricsFloors: run.storedThrough, maxSteps: spec.maxSteps.map(Int64.init) ?? TrainingDispatch.unboundedSteps,
                    batchSize: batch.batchSize, gradAccum: batch.gradAccum, gpu: visible,
                    evalEvery: spec.evalEvery.map(Int64.init), checkpointEvery: Int64(spec.checkpointEvery),
                    stopGrace: spec.stopGrace, python: spec.python, resumeFullState: resume?.fullState)
                payload.placement = placement
                var json = payload.json
                json["preset"] = .string(preset.name)
                json["effective_batch"] = .number(Double(batch.effectiveBatch * n))
                out.append(Member(workerId: m.candidate.workerId, placement: placement, payload: json))
                rank += 1
            }
        }
        return .start(members: out, preset: preset.name, batch: batch, resumeNote: spec.runner == .torch ? torchResumeNote : resume?.note)
    }
}
