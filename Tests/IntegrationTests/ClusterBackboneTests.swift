import Foundation
import Shared
import Testing

/// Issue 2's acceptance, with real processes over loopback NNG.
@Suite("Cluster backbone (real processes)", .serialized)
struct ClusterBackboneTests {
    @Test("three workers register and `workers` lists them with their devices")
    func threeWorkersRegister() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("alpha", ["--device-name", "NVIDIA RTX A6000", "--device-memory-gb", "48"])
        try h.startWorker("beta", ["--gpu", "1", "--device-name", "NVIDIA GeForce RTX 4090", "--device-memory-gb", "24"])
        try h.startWorker("gamma")
        try await h.waitUntil("three workers are live", timeout: 20) { try h.workers().filter { $0.state == "live" }.count == 3 }
        let byName = Dictionary(uniqueKeysWithValues: try h.workers().map { ($0.name, $0) })
        #expect(byName["alpha"]?.device.name == "NVIDIA RTX A6000")
        #expect(byName["alpha"]?.device.memoryBytes == 48 << 30)
        #expect(byName["beta"]?.device.name == "NVIDIA GeForce RTX 4090")
        #expect(byName["beta"]?.device.index == 1)
        #expect(byName["gamma"]?.device.kind == .cpu)
        #expect(byName["gamma"]?.capabilities.contains("shard:sleep") == true)
        let table = try h.cli(["workers"])
        #expect(table.status == 0)
        for name in ["alpha", "beta", "gamma"] { #expect(table.out.contains(name)) }
        #expect(table.out.contains("NVIDIA RTX A6000"))
    }

    @Test("twenty sleep shards spread over three workers and each succeeds exactly once")
    func twentyShards() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        for n in ["w1", "w2", "w3"] { try h.startWorker(n) }
        try await h.waitUntil("three workers are live", timeout: 20) { try h.workers().count == 3 }
        let q = try h.cli(["enqueue", "sleep", "--count", "20", "--param", "seconds=0.4", "--param", "steps=4"])
        #expect(q.status == 0, "\(q.err)")
        try await h.waitUntil("all 20 shards succeed", timeout: 60) { try h.shards().allSatisfy { $0.state == "succeeded" } }
        let shards = try h.shards()
        #expect(shards.count == 20)
        for s in shards {
            #expect(s.attempts == 1, "shard \(s.id) took \(s.attempts) attempts")
            #expect(s.history.map(\.state) == ["succeeded"])
        }
        let perWorker = Dictionary(grouping: shards, by: { $0.history.first?.workerName ?? "?" })
        #expect(Set(perWorker.keys) == ["w1", "w2", "w3"], "every worker should have run shards: \(perWorker.mapValues(\.count))")
        // Each shard ran to completion on exactly one worker.
        let completions = ["w1", "w2", "w3"].flatMap { h.log($0).split(separator: "\n").filter { $0.contains("succeeded: slept") } }
        #expect(completions.count == 20)
    }

    @Test("kill -9 of a worker mid-shard: lost within 12 s, requeued, succeeds elsewhere, history shows both")
    func workerKilled() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("victim")
        try await h.waitUntil("the victim is live", timeout: 20) { try h.workers().count == 1 }
        _ = try h.cli(["enqueue", "sleep", "--count", "1", "--param", "seconds=8"])
        try await h.waitUntil("the shard runs on the victim", timeout: 20) { try h.shards().first?.state == "running" }
        try h.startWorker("survivor")
        try await h.waitUntil("the survivor is live", timeout: 20) { try h.workers().count == 2 }
        h.kill9("victim")
        let killedAt = Date()
        try await h.waitUntil("the victim is marked lost", timeout: 14) { try h.workers().first { $0.name == "victim" }?.state == "lost" }
        let detection = Date().timeIntervalSince(killedAt)
        #expect(detection <= 12, "lost after \(detection) s")
        try await h.waitUntil("the shard succeeds on the survivor", timeout: 30) { try h.shards().first?.state == "succeeded" }
        let shard = try #require(try h.shards().first)
        #expect(shard.history.map(\.state) == ["lost", "succeeded"])
        #expect(shard.history.map(\.workerName) == ["victim", "survivor"])
        #expect(shard.history[1].leaseEpoch > shard.history[0].leaseEpoch)
    }

    @Test("kill -9 of the coordinator while shards run: restart on the same database loses nothing and runs nothing twice")
    func coordinatorKilled() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        for n in ["w1", "w2", "w3"] { try h.startWorker(n) }
        try await h.waitUntil("three workers are live", timeout: 20) { try h.workers().count == 3 }
        let pids = ["w1", "w2", "w3"].map { h.process($0)!.processIdentifier }
        _ = try h.cli(["enqueue", "sleep", "--count", "9", "--param", "seconds=2.5"])
        try await h.waitUntil("shards are running", timeout: 20) { try h.shards().filter { $0.state == "running" }.count == 3 }
        h.kill9("coordinator")
        try await Task.sleep(for: .seconds(3))
        try await h.startCoordinator()
        try await h.waitUntil("all 9 shards succeed", timeout: 60) { try h.shards().allSatisfy { $0.state == "succeeded" } }
        let shards = try h.shards()
        #expect(shards.count == 9)
        for s in shards {
            #expect(s.history.filter { $0.state == "succeeded" }.count == 1, "shard \(s.id): \(s.history.map(\.state))")
        }
        // Workers re-attached without being restarted: same processes, still live, no re-registration needed.
        #expect(["w1", "w2", "w3"].map { h.process($0)!.processIdentifier } == pids)
        #expect(["w1", "w2", "w3"].allSatisfy { h.process($0)!.isRunning })
        #expect(try h.workers().allSatisfy { $0.state == "live" })
        let completions = ["w1", "w2", "w3"].flatMap { h.log($0).split(separator: "\n").filter { $0.contains("succeeded: slept") } }
        #expect(completions.count == 9, "every shard ran to completion exactly once: \(completions)")
    }

    @Test("SIGTERM stops the coordinator in order: no more leases, consumers drained, listener closed, database checkpointed (an empty WAL), exit 0; the restart continues")
    func coordinatorGracefulShutdown() async throws {
        let h = try ClusterHarness()
        let c = try await h.startCoordinator()
        try h.startWorker("w1")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        _ = try h.cli(["enqueue", "sleep", "--count", "4", "--param", "seconds=1.5"])
        try await h.waitUntil("a shard runs", timeout: 20) { try h.shards().contains { $0.state == "running" } }
        kill(c.processIdentifier, SIGTERM)
        try await h.waitUntil("the coordinator exits", timeout: 20) { !c.isRunning }
        #expect(c.terminationStatus == 0, "\(h.log("coordinator"))")
        let log = h.log("coordinator")
        let order = ["shutting down: no shard is leased any more", "NNG listener closed", "coordinator stopped: database checkpointed"]
        let positions = order.map { log.range(of: $0)?.lowerBound }
        #expect(positions.allSatisfy { $0 != nil }, "\(log)")
        #expect(positions.compactMap { $0 } == positions.compactMap { $0 }.sorted(), "in this order: \(order)")
        let wal = h.dir.appendingPathComponent("coordinator.sqlite-wal").path
        let walSize = (try? FileManager.default.attributesOfItem(atPath: wal)[.size] as? Int) ?? 0
        #expect(walSize == 0, "the WAL was folded into the database (\(walSize) bytes left)")
        // The worker keeps its shard through the outage; the restarted coordinator finishes the job.
        try await h.startCoordinator()
        try await h.waitUntil("all 4 shards succeed", timeout: 60) { try h.shards().allSatisfy { $0.state == "succeeded" } }
        #expect(try h.shards().allSatisfy { $0.history.filter { $0.state == "succeeded" }.count == 1 })
    }

    @Test("SIGTERM drains a worker: it finishes its shard, reports it, takes no more work and exits")
    func sigtermDrains() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        let w = try h.startWorker("drainer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        _ = try h.cli(["enqueue", "sleep", "--count", "3", "--param", "seconds=3"])
        try await h.waitUntil("a shard runs", timeout: 20) { try h.shards().contains { $0.state == "running" } }
        kill(w.processIdentifier, SIGTERM)
        try await h.waitUntil("the worker exits", timeout: 20) { !w.isRunning }
        #expect(w.terminationStatus == 0)
        let shards = try h.shards()
        #expect(shards.filter { $0.state == "succeeded" }.count == 1, "the running shard was finished: \(shards.map(\.state))")
        #expect(shards.filter { $0.state == "queued" }.count == 2, "no new work was taken")
        try await h.waitUntil("the coordinator marks it gone", timeout: 10) { try h.workers().first?.state == "gone" }
        // A second worker picks up the rest.
        try h.startWorker("successor")
        try await h.waitUntil("the rest succeed", timeout: 30) { try h.shards().allSatisfy { $0.state == "succeeded" } }
    }

    @Test("`tts-coordinator drain NAME` drains a worker through its heartbeat")
    func drainCommand() async throws {
        let h = try ClusterHarness()
        try await h.startCoordinator()
        let w = try h.startWorker("target")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let r = try h.cli(["drain", "target"])
        #expect(r.status == 0, "\(r.err)")
        try await h.waitUntil("the worker exits", timeout: 20) { !w.isRunning }
        #expect(w.terminationStatus == 0)
        let missing = try h.cli(["drain", "nobody"])
        #expect(missing.status == 1)
        #expect(missing.err.contains("no worker named nobody"))
    }

    @Test("CLI commands say clearly when the coordinator is not reachable")
    func unreachable() throws {
        let h = try ClusterHarness()
        let r = try h.cli(["workers"])
        #expect(r.status == 1)
        #expect(r.err.contains("not reachable"))
        #expect(r.err.contains("tts-coordinator serve"))
    }
}
