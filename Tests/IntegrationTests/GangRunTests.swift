import ClusterAdmin
import Foundation
import Shared
import Testing
#if canImport(Glibc)
import Glibc
#endif

/// Issue 18 with real processes: a coordinator, workers, and a real PyTorch DDP trainer (gloo)
/// — Tests/Fixtures/trainer/ddp/train_gpt_ddp.py, which prints what the guide's trainer prints
/// (through its fixture) and trains a real tiny model data-parallel — run as gangs.
@Suite("Data-parallel gangs (real processes, torch.distributed gloo)", .serialized)
struct GangRunTests {
    static let trainer = TrainerVenv.fixtures.appendingPathComponent("ddp/train_gpt_ddp.py").path
    static let a6000 = TrainingRunTests.a6000

    /// A job for the DDP trainer: `world` ranks, preset `batch × accum` (effective batch kept
    /// whatever the world size), 40 steps logged each step, latest_full.pth every 10 steps.
    static func spec(_ h: ClusterHarness, python: String, name: String, world: Int, batch: Int, accum: Int,
                     stepSeconds: Double = 0, collectiveTimeout: Int = 10, extra: String = "") throws -> String {
        let inputs = try RealTrainerRunTests.inputs(h, python: python).map { "\"\($0)\"" }.joined(separator: ", ")
        return """
            name: \(name)
            project: tts-it
            workdir: "\(RealTrainerRunTests.repository)"
            python: "\(python)"
            env:
              PYTHONUNBUFFERED: "1"
              TTS_FIXTURE_LIGHT_EVERY: "5"
              TTS_FIXTURE_FULL_EVERY: "10"
              TTS_FIXTURE_STEP_SECONDS: "\(stepSeconds)"
              TTS_DDP_TIMEOUT_S: "\(collectiveTimeout)"
            command: [python, "\(trainer)", \(inputs),
                      --output-dir, "{output_dir}", --batch-size, "{batch_size}", --grad-accumulation, "{grad_accum}",
                      --learning-rate, "1e-2", --warmup-steps, "5", --log-interval, "1", --val-interval, "10",
                      --max-steps, "{max_steps}", --epochs, "100", --num-workers, "1", --scheduler, cosine, --no-aim,
                      --resume, "{resume_checkpoint}"]
            max_steps: 40
            checkpoint_every: 10
            max_retries: 2
            output_dir: "\(h.dir.path)/runs/{run_name}-{run_id}"
            presets:
              a6000: {match: {name: A6000}, batch_size: \(batch), grad_accum: \(accum)}
            world: {gpus: \(world)}
            \(extra)
            """
    }

    /// A coordinator (heartbeats every 500 ms, lost after 3 s, plus `coordinator`) and `workers`
    /// A6000 workers w0, w1, … on GPUs 0, 1, …, all live.
    static func cluster(workers: Int, coordinator: [String] = []) async throws -> ClusterHarness {
        let h = try ClusterHarness()
        try await h.startCoordinator(["--heartbeat-ms", "500", "--lost-after-ms", "3000"] + coordinator)
        for i in 0..<workers { try h.startWorker("w\(i)", a6000 + ["--gpu", "\(i)"]) }
        try await h.waitUntil("\(workers) workers are live", timeout: 20) { try h.workers().count == workers }
        return h
    }

    /// The rank processes of this harness's runs: trainers started by the workers, each with the
    /// `RANK` of its environment (not their forked DataLoader workers).
    static func trainers(_ h: ClusterHarness) -> [(pid: Int32, rank: String)] {
        let ids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return ids.compactMap { id -> (Int32, String)? in
            guard let pid = Int32(id), let cmd = try? String(contentsOfFile: "/proc/\(id)/cmdline", encoding: .utf8),
                  cmd.contains("train_gpt_ddp.py"), cmd.contains(h.dir.path),
                  let env = try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(id)/environ")) else { return nil }
            let vars = env.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            guard let rank = vars.first(where: { $0.hasPrefix("RANK=") })?.dropFirst(5) else { return nil }
            // The trainer itself, not its forked DataLoader workers: its parent is not a trainer.
            let stat = (try? String(contentsOfFile: "/proc/\(id)/stat", encoding: .utf8)) ?? ""
            let ppid = stat.split(separator: ")").last?.split(separator: " ").dropFirst(1).first.flatMap { Int32($0) } ?? 0
            let parent = (try? String(contentsOfFile: "/proc/\(ppid)/cmdline", encoding: .utf8)) ?? ""
            return parent.contains("train_gpt_ddp.py") ? nil : (pid, String(rank))
        }
    }

    @Test("a 2-rank gang on two workers logs every step once, from rank 0, with the losses of the single-process run of the same effective batch")
    func twoRanksMatchOneProcess() async throws {
        let python = try TrainerVenv.python()
        let h = try await Self.cluster(workers: 2)
        // Effective batch 12: the gang runs 6 × 1 on each rank; the reference one process of 12 × 1.
        let gang = try #require(try h.submitJob(try Self.spec(h, python: python, name: "ddp2", world: 2, batch: 12, accum: 1)).runs.first?.id)
        try await h.waitUntil("the gang's run succeeded", timeout: 180) { try h.runSummary(gang).state == "succeeded" }
        let single = try #require(try h.submitJob(try Self.spec(h, python: python, name: "one", world: 1, batch: 12, accum: 1)).runs.first?.id)
        try await h.waitUntil("the single-process run succeeded", timeout: 180) { try h.runSummary(single).state == "succeeded" }

        let r = try h.runSummary(gang)
        #expect((r.batchSize, r.gradAccum) == (6, 1), "each rank: 6 × 1, effective 12")
        try h.expectSameSeries(gang, as: single, keys: ["train/text_loss", "train/mel_loss", "val/text_loss"])
        #expect(try h.series(gang, "train/text_loss").map(\.step) == Array(1...40))
        let lines = try h.runLogLines(gang)
        #expect(lines.contains { $0.contains("[rank 1]") }, "rank 1's log is kept, marked with its rank")
        let shards = try h.shards().filter { $0.runId == gang }
        #expect(shards.count == 2 && shards.allSatisfy { $0.state == "succeeded" })
        #expect(Set(shards.compactMap { $0.history.last?.workerName }) == ["w0", "w1"])
        #expect(shards.map(\.rank) == [0, 1])
    }

    @Test("a 3-rank gang with one rank on a second host (a network namespace): two nodes, rendezvous and collectives over the link, the single-process run's losses")
    func threeRanksOnTwoHosts() async throws {
        let host = try TestHost(index: 7)
        defer { host.remove() }
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        let tokenFile = h.dir.appendingPathComponent("cluster.token").path
        try "gang-token-\(UUID().uuidString)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        h.cliArguments = ["--token-file", tokenFile]
        try await h.startCoordinator(["--no-wandb", "--token-file", tokenFile, "--heartbeat-ms", "500", "--lost-after-ms", "3000"], listenHost: "0.0.0.0")
        // Everyone dials the coordinator across the link's address, so the first host's workers
        // offer the link's address (the gateway) for the rendezvous; the second host offers its own.
        let url = "tcp://\(host.gateway):\(h.port)"
        let token = ["--token-file", tokenFile]
        try h.startWorker("a0", Self.a6000 + token + ["--gpu", "0", "--host-name", "box-a"], url: url)
        try h.startWorker("a1", Self.a6000 + token + ["--gpu", "1", "--host-name", "box-a"], url: url)
        try h.startWorker("b0", Self.a6000 + token + ["--gpu", "0", "--host-name", "box-b"], url: url, on: host)
        try await h.waitUntil("three workers are live", timeout: 30) { try h.workers().filter { $0.state == "live" }.count == 3 }
        let gang = try #require(try h.submitJob(try Self.spec(h, python: python, name: "ddp3", world: 3, batch: 12, accum: 1)).runs.first?.id)
        try await h.waitUntil("the 3-rank gang's run succeeded", timeout: 240) { try h.runSummary(gang).state == "succeeded" }
        let single = try #require(try h.submitJob(try Self.spec(h, python: python, name: "one3", world: 1, batch: 12, accum: 1)).runs.first?.id)
        try await h.waitUntil("the single-process run succeeded", timeout: 240) { try h.runSummary(single).state == "succeeded" }
        #expect((try h.runSummary(gang).batchSize, try h.runSummary(gang).gradAccum) == (4, 1), "12 samples a step shared by 3 ranks")
        try h.expectSameSeries(gang, as: single, keys: ["train/text_loss", "train/mel_loss"])
        #expect(try h.series(gang, "train/text_loss").map(\.step) == Array(1...40), "every step once")
        let shards = try h.shards().filter { $0.runId == gang }.sorted { ($0.rank ?? 0) < ($1.rank ?? 0) }
        #expect(shards.map { $0.history.last?.workerName } == ["a0", "a1", "b0"], "box-a's two workers are ranks 0 and 1, box-b's is rank 2")
        let lines = try h.runLogLines(gang)
        #expect(lines.contains { $0.contains("[rank 2]") }, "the second host's rank's log is kept")
    }

    @Test("two gangs of 2 on 3 free workers: one runs, the other waits with a reason and holds no worker; a single-GPU run submitted later backfills the idle worker, and the waiting gang starts when the first ends")
    func twoGangsOnThreeWorkers() async throws {
        let python = try TrainerVenv.python()
        let h = try await Self.cluster(workers: 3)
        let first = try #require(try h.submitJob(try Self.spec(h, python: python, name: "g1", world: 2, batch: 12, accum: 1, stepSeconds: 0.1)).runs.first?.id)
        let second = try #require(try h.submitJob(try Self.spec(h, python: python, name: "g2", world: 2, batch: 12, accum: 1, stepSeconds: 0.02)).runs.first?.id)
        try await h.waitUntil("the first gang runs and the second waits for a GPU", timeout: 60) {
            try h.runSummary(first).state == "running" && (try h.runSummary(second).waitReason ?? "").hasPrefix("waiting for 1 of 2 GPUs")
        }
        #expect(try h.shards().filter { $0.runId == second }.allSatisfy { $0.state == "queued" }, "no rank of the waiting gang is held")
        let single = try #require(try h.submitJob(try Self.spec(h, python: python, name: "one", world: 1, batch: 12, accum: 1, stepSeconds: 0.02)).runs.first?.id)
        try await h.waitUntil("the later single-GPU run starts on the idle worker while the first gang runs", timeout: 60) {
            try h.runSummary(single).state != "queued" && h.runSummary(first).state == "running"
        }
        try await h.waitUntil("all three runs succeeded", timeout: 240) {
            try [first, second, single].allSatisfy { try h.runSummary($0).state == "succeeded" }
        }
        let shards = try h.shards()
        let firstEnds: [Date] = shards.filter { $0.runId == first }.compactMap(\.finishedAt)
        let secondLeases: [Date] = shards.filter { $0.runId == second }.compactMap { s -> Date? in s.history.first?.leasedAt }
        let firstEnded = try #require(firstEnds.min())
        let secondLeased = try #require(secondLeases.min())
        #expect(secondLeased >= firstEnded.addingTimeInterval(-1), "the second gang started once the first released its workers")
        #expect(shards.filter { $0.runId == second }.allSatisfy { $0.history.count == 1 }, "leased once, as a whole")
        for r in [first, second, single] { #expect(try h.series(r, "train/text_loss").map(\.step) == Array(1...40)) }
    }

    @Test("kill -9 of rank 1's trainer: rank 0's is gone within 2 s, the gang resumes from its last full checkpoint on both workers, every step once")
    func killOfARankRestartsTheGang() async throws {
        let python = try TrainerVenv.python()
        let h = try await Self.cluster(workers: 2)
        let gang = try #require(try h.submitJob(try Self.spec(h, python: python, name: "ddpkill", world: 2, batch: 12, accum: 1, stepSeconds: 0.15)).runs.first?.id)
        try await h.waitUntil("a full checkpoint at step 10 and training past 14", timeout: 120) {
            let r = try h.runSummary(gang)
            return (r.checkpointStep ?? 0) >= 10 && (r.step ?? 0) >= 14
        }
        let before = Self.trainers(h)
        let rank1 = try #require(before.first { $0.rank == "1" }), rank0 = try #require(before.first { $0.rank == "0" })
        let killedAt = Date()
        kill(-getpgid(rank1.pid), SIGKILL) // the rank's process group: the trainer and its DataLoader worker
        try await h.waitUntil("rank 0's trainer is gone", timeout: 10) { kill(rank0.pid, 0) != 0 }
        let gone = Date().timeIntervalSince(killedAt)
        #expect(gone < 2, "rank 0's trainer lived \(gone) s after rank 1 died")
        try await h.waitUntil("the gang's run succeeded after the restart", timeout: 180) { try h.runSummary(gang).state == "succeeded" }
        #expect(try h.series(gang, "train/text_loss").map(\.step) == Array(1...40), "every step once across the restart")
        // W&B (offline, read by wandb 0.29.0): one history row per step, strictly increasing.
        try await h.waitUntil("the W&B run is complete", timeout: 60) { h.log("coordinator").contains("W&B: run \(gang) complete") }
        let wandbDir = h.dir.appendingPathComponent("wandb").path
        let oracle = try #require(try FixtureScript.values("wandb/oracle_venv_029.sh")["PYTHON"])
        let runDir = try #require(try FileManager.default.contentsOfDirectory(atPath: wandbDir).first { $0.hasSuffix("-\(gang)") })
        let verdict = try ReliabilityTests.run(oracle, [FixtureScript.fixtures.appendingPathComponent("wandb/check_offline_run.py").path,
                                                        wandbDir + "/" + runDir, "train/text_loss", "train/mel_loss"])
        #expect(verdict.status == 0, "W&B run: \(verdict.output)")
        #expect(verdict.output.contains(#""history_rows": 40"#), "one W&B history row per step: \(verdict.output)")
        let lines = try h.runLogLines(gang)
        #expect(lines.contains { $0.hasPrefix("[resume]") && $0.contains("with full state") }, "resumed from a full-state checkpoint")
        let shards = try h.shards().filter { $0.runId == gang }
        #expect(shards.count == 2 && shards.allSatisfy { $0.state == "succeeded" && $0.history.count == 2 }, "\(shards.map { ($0.state, $0.history.map(\.state)) })")
    }

    @Test("a collective hang (rank 1's trainer stopped, rank 0 waiting in all-reduce, both workers heartbeating) fires the run's stalled alert naming the gang; when rank 1 continues it resolves and every step is logged once")
    func collectiveHangIsStalled() async throws {
        let python = try TrainerVenv.python()
        let h = try await Self.cluster(workers: 2)
        // The collective timeout is long (as NCCL's 30 min default is): only the stalled rule can see the hang.
        let gang = try #require(try h.submitJob(try Self.spec(h, python: python, name: "ddphang", world: 2, batch: 12, accum: 1, stepSeconds: 0.1,
                                                              collectiveTimeout: 600, extra: "alerts: {stalled: {floor_seconds: 4, step_time_multiple: 3}}")).runs.first?.id)
        try await h.waitUntil("the gang trains past step 8", timeout: 120) { (try h.runSummary(gang).step ?? 0) >= 8 }
        let rank1 = try #require(Self.trainers(h).first { $0.rank == "1" })
        let group = getpgid(rank1.pid)
        kill(-group, SIGSTOP) // the rank and its DataLoader worker: it never enters the next all-reduce
        var resumed = false
        defer { if !resumed { kill(-group, SIGCONT) } }
        func stalled() throws -> [AlertSummary] {
            try h.cliJSON(["alerts"], as: [AlertSummary].self).filter { $0.runId == gang && $0.rule == "stalled" }
        }
        try await h.waitUntil("the run's stalled alert fires", timeout: 40) { try stalled().contains { $0.state == .firing } }
        let hungAt = try h.runSummary(gang).step ?? 0
        let alert = try #require(try stalled().first)
        #expect(alert.summary.contains("the 2 workers of its gang (w0, w1)"), "\(alert.summary)")
        #expect(try h.workers().allSatisfy { $0.state == "live" }, "the workers are fine; the collective is not")
        try await Task.sleep(for: .seconds(2))
        #expect(try h.runSummary(gang).step == hungAt, "rank 0 waits in the collective: no step while rank 1 is stopped")
        kill(-group, SIGCONT)
        resumed = true
        try await h.waitUntil("the stall resolves", timeout: 40) { try stalled().allSatisfy { $0.state != .firing } }
        try await h.waitUntil("the gang's run succeeded", timeout: 180) { try h.runSummary(gang).state == "succeeded" }
        #expect(try h.series(gang, "train/text_loss").map(\.step) == Array(1...40), "every step once")
        #expect(try h.shards().filter { $0.runId == gang }.allSatisfy { $0.history.count == 1 }, "no restart: the hang ended by itself")
    }

    @Test("after --gang-reserve-after a waiting gang keeps the idle worker that fits it: a single-GPU run submitted later waits, the gang starts when the busy worker frees, and the single run runs after it")
    func waitingGangReservesIdleWorkers() async throws {
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator(["--heartbeat-ms", "500", "--lost-after-ms", "3000", "--gang-reserve-after", "1"])
        try h.startWorker("w0", Self.a6000 + ["--gpu", "0"])
        try await h.waitUntil("w0 is live", timeout: 20) { try h.workers().count == 1 }
        let busy = try #require(try h.submitJob(try Self.spec(h, python: python, name: "busy", world: 1, batch: 12, accum: 1, stepSeconds: 0.25)).runs.first?.id)
        try await h.waitUntil("the first single run runs on w0", timeout: 60) { try h.runSummary(busy).state == "running" }
        try h.startWorker("w1", Self.a6000 + ["--gpu", "1"])
        try await h.waitUntil("w1 is live", timeout: 20) { try h.workers().count == 2 }
        let gang = try #require(try h.submitJob(try Self.spec(h, python: python, name: "gang", world: 2, batch: 12, accum: 1)).runs.first?.id)
        try await h.waitUntil("the gang waits for a GPU", timeout: 30) { (try h.runSummary(gang).waitReason ?? "").hasPrefix("waiting for 1 of 2 GPUs") }
        try await h.waitUntil("the gang has waited past --gang-reserve-after and reserved w1", timeout: 30) {
            h.log("coordinator").contains("idle worker(s) are reserved for it")
        }
        let later = try #require(try h.submitJob(try Self.spec(h, python: python, name: "later", world: 1, batch: 12, accum: 1)).runs.first?.id)
        try await Task.sleep(for: .seconds(4)) // w1 polls (and is refused) meanwhile
        #expect(try h.runSummary(later).state == "queued", "the later single run does not take the worker the gang reserved")
        #expect(try h.runSummary(busy).state == "running", "the first run still holds w0")
        try await h.waitUntil("all three runs succeeded", timeout: 300) {
            try [busy, gang, later].allSatisfy { try h.runSummary($0).state == "succeeded" }
        }
        let shards = try h.shards()
        let busyEnds: [Date] = shards.filter { $0.runId == busy }.compactMap(\.finishedAt)
        let gangLeases: [Date] = shards.filter { $0.runId == gang }.compactMap { s -> Date? in s.history.first?.leasedAt }
        let laterLeases: [Date] = shards.filter { $0.runId == later }.compactMap { s -> Date? in s.history.first?.leasedAt }
        let busyEnded = try #require(busyEnds.max()), gangLeased = try #require(gangLeases.min()), laterLeased = try #require(laterLeases.min())
        #expect(gangLeased >= busyEnded.addingTimeInterval(-1), "the gang started when w0 freed")
        #expect(laterLeased >= gangLeased, "the later single run started after the gang it would have starved")
        for r in [busy, gang, later] { #expect(try h.series(r, "train/text_loss").map(\.step) == Array(1...40)) }
    }

    @Test("a drain of rank 0's worker: rank 0 waits for its next full checkpoint, the gang stops without using its retry budget, and resumes from that checkpoint on two other workers, every step once")
    func drainOfRankZero() async throws {
        let python = try TrainerVenv.python()
        let h = try await Self.cluster(workers: 3)
        let gang = try #require(try h.submitJob(try Self.spec(h, python: python, name: "ddpdrain", world: 2, batch: 12, accum: 1, stepSeconds: 0.15)).runs.first?.id)
        try await h.waitUntil("the gang trains past step 12", timeout: 120) { (try h.runSummary(gang).step ?? 0) >= 12 }
        let rank0 = try #require(try h.shards().first { $0.runId == gang && $0.rank == 0 }?.history.last?.workerName)
        let drained = try h.cli(["drain", rank0])
        #expect(drained.status == 0, "\(drained.err)")
        try await h.waitUntil("the gang's run succeeded after the move", timeout: 240) { try h.runSummary(gang).state == "succeeded" }
        #expect(try h.series(gang, "train/text_loss").map(\.step) == Array(1...40), "every step once across the move")
        let shards = try h.shards().filter { $0.runId == gang }
        #expect(shards.allSatisfy { $0.failures == 0 }, "a drain uses no retry: \(shards.map { ($0.failures, $0.history.map(\.message)) })")
        // Each rank's first attempt ended without failing: stopped with its gang (cancelled), or,
        // for the drained worker, requeued when it left the cluster before its result arrived.
        #expect(shards.allSatisfy { s in s.history.count == 2 && [.cancelled, .requeued].contains(s.history.first?.state) },
                "\(shards.map { $0.history.map { "\($0.state): \($0.message.prefix(80))" } })")
        #expect(shards.allSatisfy { $0.history.last?.workerName != rank0 }, "the drained worker takes no rank of the restarted gang")
        let lines = try h.runLogLines(gang)
        let resume = lines.first { $0.hasPrefix("[resume]") } ?? ""
        #expect(resume.contains("with full state"), "resumed from the full-state checkpoint rank 0 waited for: \(resume)")
    }
}
