import Foundation
import Shared
import Testing

/// Issue 8: the README's one-command demo runs to completion (a torch job with eval_every on two
/// CPU workers, real Vosk) and its W&B offline run passes wandb 0.29.0's reader.
@Suite("One-command demo (real processes)", .serialized)
struct DemoTests {
    @Test("scripts/demo.sh --once finishes in under 10 minutes: the run succeeds, each checkpoint at the cadence is evaluated, alerts reach the console, and the W&B offline run passes the wandb format oracle",
          .timeLimit(.minutes(10)))
    func demoRunsToCompletion() async throws {
        let h = try ClusterHarness()
        let root = FixtureScript.fixtures.deletingLastPathComponent().deletingLastPathComponent()
        let demoDir = h.dir.appendingPathComponent("demo")
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [root.appendingPathComponent("scripts/demo.sh").path, "--once"]
        var env = ProcessInfo.processInfo.environment
        env["TTS_DEMO_BIN"] = h.binDir.path
        env["TTS_DEMO_DIR"] = demoDir.path
        env["TTS_DEMO_PORT"] = String(h.port)
        env["TTS_DEMO_HTTP"] = "127.0.0.1:\(h.httpPort)"
        env["TTS_DEMO_STEPS"] = "200"
        p.environment = env
        let logFile = h.dir.appendingPathComponent("demo.out")
        FileManager.default.createFile(atPath: logFile.path, contents: nil)
        let log = try FileHandle(forWritingTo: logFile)
        p.standardOutput = log
        p.standardError = log
        let started = Date()
        try p.run()
        while p.isRunning {
            if Date().timeIntervalSince(started) > 540 { p.terminate() }
            try await Task.sleep(for: .milliseconds(500))
        }
        try log.close()
        let out = try String(contentsOf: logFile, encoding: .utf8)
        let seconds = Date().timeIntervalSince(started)
        #expect(p.terminationStatus == 0, "demo.sh exited \(p.terminationStatus) after \(Int(seconds)) s:\n\(out.suffix(4_000))")
        #expect(seconds < 540)
        #expect(out.contains("demo-ko succeeded") || out.contains(": succeeded at step 200"), "the run succeeded:\n\(out.suffix(2_000))")
        #expect(out.contains("demo: alert:") && out.contains("run_completed"), "alerts on the console")
        // Two evaluations (steps 100 and 200), each scored.
        let coordinatorLog = try String(contentsOf: demoDir.appendingPathComponent("coordinator.log"), encoding: .utf8)
        #expect(coordinatorLog.components(separatedBy: "evaluation ").filter { $0.contains("scored, 0 failed") }.count == 2, "two evaluations")
        // The offline run, read by wandb 0.29.0.
        let wandb = demoDir.appendingPathComponent("wandb")
        let runDir = try #require(try FileManager.default.contentsOfDirectory(atPath: wandb.path).first { $0.hasPrefix("offline-run-") })
        let python = try #require(try FixtureScript.values("wandb/oracle_venv_029.sh")["PYTHON"])
        let check = Process()
        check.executableURL = URL(fileURLWithPath: python)
        check.arguments = [FixtureScript.fixtures.appendingPathComponent("wandb/check_offline_run.py").path, wandb.appendingPathComponent(runDir).path,
                           "train/loss", "train/text_loss", "train/mel_loss", "val/loss", "eval/cer", "eval/wer", "eval/table", "eval/sample_0"]
        let pipe = Pipe()
        check.standardOutput = pipe
        check.standardError = pipe
        try check.run()
        let verdict = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        #expect(check.terminationStatus == 0, "wandb 0.29.0 format oracle: \(verdict)")
        #expect(verdict.contains("\"history_rows\": 200,"), "\(verdict)")
    }
}
