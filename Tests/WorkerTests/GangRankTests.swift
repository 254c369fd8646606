import Foundation
@testable import Shared
import Testing
@testable import Worker
#if canImport(Glibc)
import Glibc
#endif

/// A worker's side of a data-parallel gang: the rendezvous it offers, the payload of a rank, and
/// how a rank other than 0 knows the gang has a checkpoint to resume from.
@Suite("A gang's rank on the worker")
struct GangRankTests {
    @Test("the rendezvous port offered with a poll is free to bind on the advertised address; the coordinator's host and the local address towards it")
    func rendezvousPort() throws {
        let port = try #require(RendezvousPort.free(on: "127.0.0.1"))
        #expect(port > 0 && port < 65_536)
        // Free now: a listener can take it (what torch's TCPStore does on rank 0).
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        #expect(bound == 0, "port \(port) could not be bound: errno \(errno)")
        #expect(RendezvousPort.free(on: "not an address") == nil)
        #expect(RendezvousPort.host(ofCoordinator: "tcp://10.0.0.2:5555") == "10.0.0.2")
        #expect(RendezvousPort.host(ofCoordinator: "tls+tcp://coord.lab:5555") == "coord.lab")
        #expect(RendezvousPort.host(ofCoordinator: "tcp://[::1]:5555") == "::1")
        #expect(RendezvousPort.host(ofCoordinator: "ipc:///tmp/c.ipc") == nil)
        #expect(RendezvousPort.localAddress(towards: "127.0.0.1") == "127.0.0.1")
        #expect(RendezvousPort.interface(holding: "127.0.0.1") == nil, "loopback: torch's own choice")
    }

    @Test("a rank's payload carries its placement (JSON round trip); only rank 0 reports metrics; a malformed placement is refused, naming the field")
    func payloadPlacement() throws {
        let placement = RankPlacement(rank: 1, worldSize: 2, localRank: 1, localWorldSize: 2, nodes: 1, nodeRank: 0, masterAddress: "10.0.0.5", masterPort: 29_400)
        var p = TrainPayload(run: "r1", argv: ["python", "t.py"], env: placement.environment, outputDir: "/o", maxSteps: 10, gpu: "0,1")
        p.placement = placement
        let parsed = try TrainPayload.parse(Array(try JSONCoding.encode(p.json)), runId: nil)
        #expect(parsed.placement == placement && !parsed.reportsMetrics && parsed.env["RANK"] == "1")
        p.placement?.rank = 0
        #expect(try TrainPayload.parse(Array(try JSONCoding.encode(p.json)), runId: nil).reportsMetrics)
        var bad = p.json
        bad["placement"] = .object(["rank": .number(2), "world_size": .number(2)])
        #expect { try TrainPayload.parse(Array(try JSONCoding.encode(bad)), runId: nil) } throws: { ($0 as? TrainPayloadError)?.field == "placement" }
    }

    @Test("a rank other than 0 that is asked to stop waits for rank 0's next full-state pin: one linked after the request, not an older one or a light one")
    func plannedStopWaitsForTheGangsPin() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-gangpin-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let source = dir + "/latest_full.pth"
        try Data("x".utf8).write(to: URL(fileURLWithPath: source))
        try FileManager.default.linkItem(atPath: source, toPath: dir + "/step-100.pth")
        Thread.sleep(forTimeInterval: 0.05)
        let asked = Date().timeIntervalSince1970
        #expect(!TrainingMonitor.fullPin(in: dir, since: asked), "a pin from before the request")
        Thread.sleep(forTimeInterval: 0.05)
        try Data("y".utf8).write(to: URL(fileURLWithPath: dir + "/light.pth"))
        try FileManager.default.linkItem(atPath: dir + "/light.pth", toPath: dir + "/step-150-model.pth")
        #expect(!TrainingMonitor.fullPin(in: dir, since: asked), "a light pin is no resume point with optimizer state")
        try Data("z".utf8).write(to: URL(fileURLWithPath: dir + "/full2.pth"))
        try FileManager.default.linkItem(atPath: dir + "/full2.pth", toPath: dir + "/step-200.pth")
        #expect(TrainingMonitor.fullPin(in: dir, since: asked))
        #expect(!TrainingMonitor.fullPin(in: dir + "/missing", since: asked))
    }
}
