import Foundation
import Shared
import Testing

/// Issue 8: the README's one-command demo runs to completion (a torch job with eval_every on two
/// CPU workers, real Vosk) and its W&B offline run passes wandb 0.29.0's reader. Issue 17: its
/// evaluations show the model learning (MCD down, SIM up from the first to the last).
@Suite("One-command demo (real processes)", .serialized)
struct DemoTests {
    @Test("scripts/demo.sh --once finishes in under 10 minutes: the run succeeds, each checkpoint at the cadence is evaluated, eval/mcd falls and eval/sim rises from the first evaluation to the last, alerts reach the console, and the W&B offline run (with eval/sim and eval/mcd) passes the wandb format oracle",
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
        // Four evaluations (steps 50, 100, 150 and 200), each scored.
        let coordinatorLog = try String(contentsOf: demoDir.appendingPathComponent("coordinator.log"), encoding: .utf8)
        #expect(coordinatorLog.components(separatedBy: "evaluation ").filter { $0.contains("scored, 0 failed") }.count == 4, "four evaluations")
        // The learning curve the run page shows (`tts-coordinator evals RUN --json`, written by the
        // demo): the reference model speaks the unseen test sentences closer to their recordings
        // (MCD falls) and in the prompt's voice (SIM rises) from the first evaluation to the last.
        let evalsData = try Data(contentsOf: demoDir.appendingPathComponent("evals.json"))
        let rows = try #require(try JSONSerialization.jsonObject(with: evalsData) as? [[String: Any]], "evals.json: \(String(decoding: evalsData, as: UTF8.self).prefix(500))")
        let curve = rows.compactMap { r -> (step: Int, mcd: Double, sim: Double)? in
            guard let step = r["step"] as? Int, let mcd = r["mcd"] as? Double, let sim = r["sim"] as? Double else { return nil }
            return (step, mcd, sim)
        }.sorted { $0.step < $1.step }
        let shown = curve.map { "step \($0.step): MCD \(String(format: "%.2f", $0.mcd)) dB, SIM \(String(format: "%.3f", $0.sim))" }.joined(separator: "; ")
        #expect(curve.map(\.step) == [50, 100, 150, 200], "every evaluation has eval/mcd and eval/sim: \(shown)")
        if let first = curve.first, let last = curve.last, curve.count >= 2 {
            #expect(last.mcd < first.mcd, "eval/mcd falls from the first evaluation to the last: \(shown)")
            #expect(last.sim > first.sim, "eval/sim rises from the first evaluation to the last: \(shown)")
        }
        print("demo: \(Int(seconds)) s; learning curve: \(shown)")
        // The offline run, read by wandb 0.29.0 once the coordinator has finished writing it
        // (demo.sh stops waiting after 30 s; a file still being appended ends mid-block).
        let logURL = demoDir.appendingPathComponent("coordinator.log")
        let complete = Date().addingTimeInterval(120)
        func written() -> Bool {
            ((try? String(contentsOf: logURL, encoding: .utf8)) ?? "").split(separator: "\n").contains { $0.contains("W&B: run ") && $0.contains(" complete (") }
        }
        while Date() < complete, !written() { try await Task.sleep(for: .milliseconds(500)) }
        #expect(written(), "the coordinator finished writing the W&B offline run within 2 minutes of the demo's end")
        let wandb = demoDir.appendingPathComponent("wandb")
        let runDir = try #require(try FileManager.default.contentsOfDirectory(atPath: wandb.path).first { $0.hasPrefix("offline-run-") })
        let python = try #require(try FixtureScript.values("wandb/oracle_venv_029.sh")["PYTHON"])
        let check = Process()
        check.executableURL = URL(fileURLWithPath: python)
        check.arguments = [FixtureScript.fixtures.appendingPathComponent("wandb/check_offline_run.py").path, wandb.appendingPathComponent(runDir).path,
                           "train/loss", "train/text_loss", "train/mel_loss", "val/loss", "eval/cer", "eval/wer", "eval/sim", "eval/mcd", "eval/table", "eval/sample_0"]
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
