import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import Shared
@testable import Worker

@Suite("Checkpoint discovery")
struct CheckpointScannerTests {
    let dir = TrainerFixture.temporaryDirectory("ckpt")

    func write(_ name: String, _ text: String) throws {
        try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/" + name))
    }

    @Test("names are classified: step files carry their step, *.tmp and others are ignored")
    func classify() {
        #expect(CheckpointScanner.classify("model_step2000.pth")! == (.step, 2000))
        #expect(CheckpointScanner.classify("latest.pth")! == (.latest, nil))
        #expect(CheckpointScanner.classify("latest_full.pth")! == (.latest, nil))
        #expect(CheckpointScanner.classify("best_model.pth")! == (.best, nil))
        #expect(CheckpointScanner.classify("best_model_step298800.pth")! == (.best, 298800))
        #expect(CheckpointScanner.classify("model_step2000.pth.tmp") == nil)
        #expect(CheckpointScanner.classify("latest.pth.tmp") == nil)
        #expect(CheckpointScanner.classify("model_stepX.pth") == nil)
        #expect(CheckpointScanner.classify("best_loss.txt") == nil)
    }

    @Test("each new or changed file is reported once, with size and SHA-256")
    func reportOnce() throws {
        var scanner = CheckpointScanner(directory: dir)
        try write("model_step1000.pth", "one")
        try write("model_step2000.pth.tmp", "in progress")
        let first = try scanner.scan(currentStep: 1000)
        #expect(first.map(\.name) == ["model_step1000.pth"])
        #expect(first[0].step == 1000 && first[0].size == 3 && first[0].kind == .step)
        #expect(first[0].sha256 == SHA256.hash(Array("one".utf8)).hexString)
        #expect(try scanner.scan().isEmpty, "an unchanged file is not reported again")

        try FileManager.default.moveItem(atPath: dir + "/model_step2000.pth.tmp", toPath: dir + "/model_step2000.pth")
        try write("latest.pth.tmp", "latest at 2000")
        try FileManager.default.moveItem(atPath: dir + "/latest.pth.tmp", toPath: dir + "/latest.pth")
        let second = try scanner.scan(currentStep: 2000)
        #expect(Set(second.map(\.name)) == ["model_step2000.pth", "latest.pth"])
        #expect(second.first { $0.name == "latest.pth" }?.step == 2000, "a file without a step in its name gets the trainer's current step")

        // latest.pth replaced by rename (same size, new inode): changed.
        try write("latest.pth.tmp", "latest at 3000")
        #expect(rename(dir + "/latest.pth.tmp", dir + "/latest.pth") == 0)
        let third = try scanner.scan(currentStep: 3000)
        #expect(third.map(\.name) == ["latest.pth"])
        #expect(third.first?.sha256 == SHA256.hash(Array("latest at 3000".utf8)).hexString)
    }

    @Test("a missing output directory is empty, not an error")
    func missingDirectory() throws {
        var scanner = CheckpointScanner(directory: dir + "/not-yet")
        #expect(try scanner.scan().isEmpty)
    }

    @Test("with settle, a file is reported once two scans saw it unchanged")
    func settle() throws {
        var scanner = CheckpointScanner(directory: dir, settle: true)
        try write("best_model.pth", "partial")
        #expect(try scanner.scan().isEmpty)
        try write("best_model.pth", "partial, now complete")
        #expect(try scanner.scan().isEmpty, "it changed since the last scan")
        #expect(try scanner.scan(currentStep: 7).map(\.name) == ["best_model.pth"])
    }

    @Test("the fixture trainer's checkpoints are found with their steps; the last three step files are kept")
    func fixtureCheckpoints() throws {
        let out = TrainerFixture.temporaryDirectory("ckpt-run")
        let r = try TrainerFixture.train(["--output-dir", out, "--max-steps", "50", "--checkpoint-every", "10"])
        try #require(r.status == 0, "\(r.stderr)")
        var scanner = CheckpointScanner(directory: out)
        let found = try scanner.scan(currentStep: 50)
        #expect(found.filter { $0.kind == .step }.map(\.step) == [30, 40, 50])
        #expect(found.contains { $0.name == "latest.pth" } && found.contains { $0.name == "best_model.pth" })
        for f in found {
            let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: f.path)))
            #expect(f.sha256 == SHA256.hash(bytes).hexString && f.size == Int64(bytes.count))
        }
        // Resume continues after the checkpoint's step.
        let resumed = try TrainerFixture.train(["--output-dir", out, "--max-steps", "60", "--checkpoint-every", "10",
                                                "--resume", out + "/model_step40.pth"])
        #expect(resumed.stdout.split(separator: "\n").compactMap { TrainerLogParser.parse($0) }.first?.step == 41)
        // The resumed trainer wrote model_step50 again (new content) and model_step60.
        #expect(try scanner.scan(currentStep: 60).filter { $0.kind == .step }.map(\.step) == [50, 60])
    }
}
