import ClusterAdmin
import Foundation
import Shared
import Testing

/// Issue 9, part 3: a worker on another host (a network namespace joined by a veth pair) is cut
/// off while it trains.
extension ReliabilityTests {
    /// Seconds the partition lasts (`TTS_PARTITION_SECONDS`; the 60 by default).
    static var partitionSeconds: Double { Double(ProcessInfo.processInfo.environment["TTS_PARTITION_SECONDS"] ?? "") ?? 60 }

    @Test("network partition: a worker on another host is cut off for 60 s while it trains: it keeps training and spooling, is declared lost, the run resumes on the other worker, and when the link returns it reconnects, its stale lease is cancelled and its result refused by lease epoch, and everything it spooled is delivered: every step stored once",
          .timeLimit(.minutes(Int(partitionSeconds / 60) + 5)))
    func networkPartition() async throws {
        let host = try TestHost()
        defer { host.remove() }
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        let tokenFile = h.dir.appendingPathComponent("cluster.token").path
        try "partition-token-\(UUID().uuidString)\n".write(toFile: tokenFile, atomically: true, encoding: .utf8)
        h.cliArguments = ["--token-file", tokenFile]
        // Listening beyond loopback needs the cluster token.
        try await h.startCoordinator(["--no-wandb", "--token-file", tokenFile], listenHost: "0.0.0.0")
        let remoteURL = "tcp://\(host.gateway):\(h.port)"
        try h.startWorker("remote", TrainingRunTests.a6000 + ["--token-file", tokenFile], url: remoteURL, on: host)
        try await h.waitUntil("the remote worker is live", timeout: 30) { try h.workers().first { $0.name == "remote" }?.state == "live" }

        // 20 steps/s: the cut-off trainer is still training when the link returns (40 s of margin:
        // the cut comes after step 150 and after a second worker has started, which took over
        // 20 s once on a loaded machine, and the trainer finished just before the check).
        let maxSteps = Int((Self.partitionSeconds + 40) * 20)
        let text = TrainingRunTests.spec(h, python: python, name: "ko-partition", maxSteps: maxSteps, stepSeconds: 0.05, checkpointEvery: 50)
        let file = h.dir.appendingPathComponent("job.yaml").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        let reply = try h.cliJSON(["submit", file], as: SubmitReply.self)
        let runId = try #require(reply.runs.first?.id)
        let shardId = try #require(reply.runs.first?.shardId)
        func run() throws -> RunSummary { try #require(try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == runId }) }
        try await h.waitUntil("the run trains on the remote worker past step 150", timeout: 60) {
            let r = try run()
            return r.worker == "remote" && (r.step ?? 0) >= 150
        }
        try h.startWorker("local", TrainingRunTests.rtx4090 + ["--token-file", tokenFile])
        try await h.waitUntil("the local worker is live", timeout: 20) { try h.workers().filter { $0.state == "live" }.count == 2 }
        let trainerPid = try #require(try h.cli(["logs", runId]).out.split(separator: "\n")
            .compactMap { $0.firstMatch(of: /fake trainer pid=(\d+)/).flatMap { Int32($0.1) } }.first)

        // The cut.
        let stepsBeforeCut = try #require(try h.cliJSON(["metrics", runId, "--key", "train/text_loss"], as: MetricsReport.self).series).map(\.step).max() ?? 0
        let cutAt = Date()
        try host.cut()
        try await h.waitUntil("the remote worker is declared lost", timeout: 20) { try h.workers().first { $0.name == "remote" }?.state == "lost" }
        let lostAfter = Date().timeIntervalSince(cutAt)
        try await h.waitUntil("the run resumed on the local worker", timeout: 30) {
            let r = try run()
            return r.worker == "local" && r.state == "running"
        }
        let resumedAfter = Date().timeIntervalSince(cutAt)
        // Cut off, the remote worker trains on: its trainer lives, its spool grows.
        try await Task.sleep(for: .seconds(max(0, Self.partitionSeconds - Date().timeIntervalSince(cutAt))))
        let trainedThrough = TrainingRunTests.isRunning(trainerPid)
        #expect(trainedThrough, "the cut-off worker's trainer kept running during the partition")
        let storedDuringCut = Set(try #require(try h.cliJSON(["metrics", runId, "--key", "train/text_loss"], as: MetricsReport.self).series).map(\.step))

        // The link returns.
        try host.heal()
        let healedAt = Date()
        try await h.waitUntil("the remote worker is back", timeout: 60) { try h.workers().first { $0.name == "remote" }?.state == "live" }
        let backAfter = Date().timeIntervalSince(healedAt)
        try await h.waitUntil("the stale trainer is stopped", timeout: 30) { !TrainingRunTests.isRunning(trainerPid) }
        let staleStoppedAfter = Date().timeIntervalSince(healedAt)
        try await h.waitUntil("the run succeeded", timeout: 180) { try run().state == "succeeded" }

        // The stale lease: cancelled on the remote worker, its result refused by lease epoch.
        #expect(h.log("remote").contains("no longer holds the lease of shard \(shardId)"), "the remote worker was told its lease is gone")
        try await h.waitUntil("the remote worker's stale result was refused", timeout: 30) {
            h.log("coordinator").contains("refused result of shard \(shardId) from remote")
        }
        #expect(h.log("remote").contains("dialing again"), "the remote worker dropped its dead connection and dialed again")
        let shard = try #require(try h.shards().first { $0.id == shardId })
        #expect(shard.history.map(\.state) == ["lost", "succeeded"], "\(shard.history)")
        #expect(shard.history.filter { $0.state == "succeeded" }.count == 1)
        let epochs = shard.history.map(\.leaseEpoch)
        #expect(epochs == epochs.sorted() && Set(epochs).count == epochs.count, "lease epochs increase: \(epochs)")

        // Every step once; the steps only the cut-off worker trained arrived after the link returned.
        try await h.waitUntil("the remote worker's spool is delivered", timeout: 30) {
            try h.cliJSON(["metrics", runId, "--key", "train/text_loss"], as: MetricsReport.self).series?.count == maxSteps
        }
        let series = try #require(try h.cliJSON(["metrics", runId, "--key", "train/text_loss"], as: MetricsReport.self).series)
        let steps = series.map(\.step)
        #expect(steps == Array(1...Int64(maxSteps)), "every step exactly once")
        let deliveredAfterHeal = Set(steps).subtracting(storedDuringCut)
        let resumeStep = try h.cli(["logs", runId]).out.split(separator: "\n").map(String.init)
            .compactMap { $0.firstMatch(of: /Resumed from \S+ at step (\d+)/).flatMap { Int64($0.1) } }.last ?? 0
        // Up to the resume step only the cut-off worker trained. What it had delivered before the
        // cut took effect is a prefix 1...k (k a little past stepsBeforeCut: the spool kept sending
        // until the link went down); steps k+1...resumeStep can only have come after the heal.
        let deliveredBeforeCut = storedDuringCut.filter { $0 <= resumeStep }
        let k = deliveredBeforeCut.max() ?? 0
        #expect(deliveredBeforeCut.count == Int(k), "what reached the store before the cut is the prefix 1...\(k)")
        // The local worker resumed from the newest pin the coordinator knew of: pins are never
        // rotated away by a trainer that kept running (the cut-off one pins its own newer
        // checkpoints beside them, unknown to the coordinator until the heal).
        #expect(resumeStep > 0, "the local worker resumed from a checkpoint, not from step 0")
        if resumeStep > k {
            let onlyRemote = (k + 1)...resumeStep
            #expect(onlyRemote.allSatisfy { deliveredAfterHeal.contains($0) }, "steps \(onlyRemote) (trained only by the cut-off worker) arrived after the link returned")
        }
        for (i, p) in series.enumerated() {
            #expect(abs((p.value ?? .nan) - TrainingRunTests.textLoss(p.step)) < 1e-3, "step \(p.step) has the trainer's value (printed to 4 decimals)")
            if i > 20 { break }
        }
        let dropped = h.log("coordinator").split(separator: "\n").compactMap { $0.firstMatch(of: /remote sent (\d+) point\(s\) for steps already stored/).flatMap { Int($0.1) } }.reduce(0, +)
        ReliabilityFigures.record("network-partition", [
            "partition_seconds": Self.partitionSeconds, "lost_after_seconds": lostAfter, "resumed_elsewhere_after_seconds": resumedAfter,
            "trainer_kept_running_while_cut_off": trainedThrough, "back_after_heal_seconds": backAfter,
            "stale_trainer_stopped_after_heal_seconds": staleStoppedAfter, "stale_result_refused": true,
            "steps_stored_before_cut": stepsBeforeCut, "steps_delivered_before_the_cut_took_effect": k, "resumed_from_checkpoint_step": resumeStep,
            "steps_delivered_after_heal": deliveredAfterHeal.count, "points_dropped_as_already_stored": dropped,
            "steps_expected": maxSteps, "steps_stored_once": Set(steps).count, "steps_duplicated": steps.count - Set(steps).count,
            "shard_history": shard.history.map(\.state.rawValue).joined(separator: ","),
        ])
    }

    @Test("a registration captured on the wire and replayed from another host is refused; a fresh one from that host is admitted",
          .timeLimit(.minutes(2)))
    func replayedRegistrationFromAnotherHost() async throws {
        let host = try TestHost(index: 1)
        defer { host.remove() }
        let h = try ClusterHarness()
        let tokenFile = h.dir.appendingPathComponent("cluster.token").path
        let secret = "replay-token-\(UUID().uuidString)"
        try (secret + "\n").write(toFile: tokenFile, atomically: true, encoding: .utf8)
        h.cliArguments = ["--token-file", tokenFile]
        try await h.startCoordinator(["--no-wandb", "--token-file", tokenFile], listenHost: "0.0.0.0")
        // What a worker sends (the proof binds worker id and host, but not the sender's address).
        let token = try ClusterToken.load(fromFile: tokenFile)
        func registration(_ id: String) -> [UInt8] {
            let reg = RegisterRequest(name: id, host: "gpu-box-1", device: DeviceInfo(kind: .cpu, index: 0, name: "CPU", memoryBytes: 8 << 30),
                                      capabilities: ["sleep"], version: TTSCluster.version, pid: 4242,
                                      proof: token.prove("register|\(id)|gpu-box-1"))
            return Envelope(.register, reg, workerId: id).encoded()
        }
        let captured = registration("victim")
        let first = try RawSP.request(captured, to: "127.0.0.1", port: h.port)
        #expect(first.type == .registered, "the original registration is admitted: \(first.type)")
        // The attacker on the other host sends the same bytes.
        let replayed = try RawSP.request(captured, to: host.gateway, port: h.port, on: host)
        let refusal = try replayed.decodeBody(ProtocolError.self)
        #expect(replayed.type == .error && refusal.code == .unauthorized && refusal.message.contains("replayed"), "\(replayed.type): \(refusal.message)")
        #expect(h.log("coordinator").contains("refused worker victim from gpu-box-1: this registration was already used (replayed request)"))
        // A fresh registration from that host (what a real worker there would send) is fine.
        let fresh = try RawSP.request(registration("other-host-worker"), to: host.gateway, port: h.port, on: host)
        #expect(fresh.type == .registered, "\(fresh.type)")
        #expect(try h.workers().map(\.name).sorted() == ["other-host-worker", "victim"])
        ReliabilityFigures.record("replayed-registration", [
            "original_admitted": first.type == .registered, "replay_from_other_host_refused": replayed.type == .error && refusal.code == .unauthorized,
            "fresh_registration_from_other_host_admitted": fresh.type == .registered,
        ])
    }
}

/// One NNG REQ exchange over raw TCP (the SP handshake and framing written by hand), run by
/// Python on a given host: lets a test send exact captured bytes from another network namespace.
enum RawSP {
    static func request(_ body: [UInt8], to address: String, port: Int, on host: TestHost? = nil) throws -> Envelope {
        let script = """
            import socket, struct, sys
            body = sys.stdin.buffer.read()
            s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
            s.sendall(b"\\x00SP\\x00\\x00\\x30\\x00\\x00")          # SP header: protocol REQ (0x30)
            def read(n):
                out = b""
                while len(out) < n:
                    chunk = s.recv(n - len(out))
                    if not chunk: raise SystemExit("connection closed")
                    out += chunk
                return out
            peer = read(8)
            assert peer[:4] == b"\\x00SP\\x00" and peer[4:6] == b"\\x00\\x31", peer   # REP (0x31)
            msg = struct.pack(">I", 0x80000001) + body                 # request id header + body
            s.sendall(struct.pack(">Q", len(msg)) + msg)
            n = struct.unpack(">Q", read(8))[0]
            reply = read(n)
            sys.stdout.buffer.write(reply[4:])                         # drop the request id
            """
        let p = Process()
        let python = "/usr/bin/python3"
        if let host {
            p.executableURL = URL(fileURLWithPath: host.run[0])
            p.arguments = Array(host.run.dropFirst()) + [python, "-c", script, address, String(port)]
        } else {
            p.executableURL = URL(fileURLWithPath: python)
            p.arguments = ["-c", script, address, String(port)]
        }
        let input = Pipe(), out = Pipe(), err = Pipe()
        p.standardInput = input
        p.standardOutput = out
        p.standardError = err
        try p.run()
        input.fileHandleForWriting.write(Data(body))
        try input.fileHandleForWriting.close()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else { throw HarnessError("the raw SP request failed: \(String(decoding: e, as: UTF8.self))") }
        return try Envelope.decode(Array(o))
    }
}
