import ClusterAdmin
import Foundation
import Shared
import Testing

/// Issue 9, part 5: the coordinator's database volume fills up.
extension ReliabilityTests {
    @Test("disk full: the database volume (a 32 MiB tmpfs made by the test) fills while a worker streams: ingest refuses with an error that names the volume, the worker keeps spooling, the coordinator keeps serving, and when space returns everything arrives, once",
          .timeLimit(.minutes(4)))
    func diskFull() async throws {
        let volume = try SmallVolume(megabytes: 32)
        let h = try ClusterHarness()
        defer {
            h.kill9("coordinator")
            volume.remove()
        }
        try await h.startCoordinator(["--no-wandb", "--db", volume.path + "/coordinator.sqlite"])
        try h.startWorker("streamer")
        try await h.waitUntil("the worker is live", timeout: 20) { try h.workers().count == 1 }
        let steps = 30_000, keys = 5
        let run = try #require(try h.cliJSON(["enqueue", "synthetic", "--param", "steps=\(steps)", "--param", "keys=\(keys)", "--param", "rate=1000"],
                                             as: EnqueueReply.self).runId)
        func stored() throws -> Int { try h.cliJSON(["metrics", run], as: MetricsReport.self).totalPoints }
        try await h.waitUntil("points are being stored", timeout: 20) { try stored() >= 2_000 }

        // Fill the volume.
        let filled = try volume.fill()
        let fullAt = Date()
        try await h.waitUntil("the coordinator says its volume is full", timeout: 20) { h.log("coordinator").contains("database volume is full") }
        let refusedAfter = Date().timeIntervalSince(fullAt)
        try await Task.sleep(for: .seconds(2))
        let storedWhenFull = try stored()
        try await Task.sleep(for: .seconds(8))
        let storedLater = try stored()
        #expect(h.process("coordinator")?.isRunning == true, "the coordinator keeps running")
        #expect(try h.workers().first?.state == "live", "heartbeats are still answered (from memory)")
        let coordinatorLine = h.log("coordinator").split(separator: "\n").first { $0.contains("database volume is full") }.map(String.init) ?? ""
        #expect(coordinatorLine.contains(volume.path) && coordinatorLine.contains("free space there"), "the error names the volume and what to do: \(coordinatorLine)")
        try await h.waitUntil("the worker reports the refusal and keeps spooling", timeout: 20) {
            h.log("streamer").contains("database volume is full") && h.log("streamer").contains("spooling")
        }
        let errorLines = h.log("coordinator").components(separatedBy: "database volume is full").count - 1

        // Space returns.
        try volume.unfill()
        let freedAt = Date()
        try await h.waitUntil("every point is stored", timeout: 90) { try stored() >= steps * keys }
        let recoveredAfter = Date().timeIntervalSince(freedAt)
        try await h.waitUntil("the shard succeeded", timeout: 60) { try h.shards().first?.state == "succeeded" }
        let report = try h.cliJSON(["metrics", run], as: MetricsReport.self)
        #expect(report.totalPoints == steps * keys)
        var duplicates = 0, missing = 0
        for key in report.pointsByKey.keys {
            let seen = try #require(try h.cliJSON(["metrics", run, "--key", key], as: MetricsReport.self).series).map(\.step)
            duplicates += seen.count - Set(seen).count
            missing += Set(0..<Int64(steps)).subtracting(seen).count
        }
        #expect(duplicates == 0 && missing == 0, "\(missing) missing, \(duplicates) duplicated")
        ReliabilityFigures.record("disk-full", [
            "volume_mib": 32, "filler_bytes": filled, "refused_after_seconds": refusedAfter, "seconds_full": Date().timeIntervalSince(fullAt) - Date().timeIntervalSince(freedAt),
            "points_stored_while_full": storedLater - storedWhenFull, "coordinator_error_lines": errorLines,
            "recovered_after_seconds": recoveredAfter, "points_expected": steps * keys, "points_stored": report.totalPoints,
            "points_missing": missing, "points_duplicated": duplicates,
        ])
    }
}

/// A small tmpfs volume made by the test (root only), that can be filled to the last byte.
final class SmallVolume: Sendable {
    let path: String
    private var filler: String { path + "/filler" }

    init(megabytes: Int) throws {
        path = FileManager.default.temporaryDirectory.appendingPathComponent("tts-vol-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        let (status, err) = Self.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", path])
        guard status == 0 else {
            try? FileManager.default.removeItem(atPath: path)
            throw HarnessError("cannot mount a \(megabytes) MiB tmpfs at \(path) (\(err)): the disk-full test needs root")
        }
    }

    /// Writes a file until the volume has no room left; returns its size.
    @discardableResult
    func fill() throws -> Int {
        let fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw HarnessError("cannot create \(filler)") }
        defer { close(fd) }
        let chunk = [UInt8](repeating: 0xA5, count: 1 << 16)
        var total = 0
        var size = chunk.count
        while size > 0 {
            let n = chunk.withUnsafeBytes { write(fd, $0.baseAddress, size) }
            if n > 0 { total += n } else { size /= 2 }
        }
        return total
    }

    /// Gives the room back.
    func unfill() throws { try FileManager.default.removeItem(atPath: filler) }

    /// Unmounts (lazily: a process may still hold a file) and removes the mount point.
    func remove() {
        _ = Self.run("/bin/umount", ["-l", path])
        try? FileManager.default.removeItem(atPath: path)
    }

    private static func run(_ exe: String, _ args: [String]) -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let err = Pipe()
        p.standardError = err
        do { try p.run() } catch { return (-1, "\(error)") }
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: e, as: UTF8.self))
    }
}
