import ClusterAdmin
import Foundation
import Shared
import Testing

/// Issue 8: the dashboard of a running cluster in a real browser (headless Chromium).
/// Screenshots are kept in .build/test-artifacts/ as test artefacts.
@Suite("Dashboard in headless Chromium (real processes)", .serialized)
struct DashboardBrowserTests {
    static let artifacts = FixtureScript.fixtures.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/test-artifacts")

    /// Runs Chromium headless on `url`: the DOM after its scripts ran (`--dump-dom`) or a
    /// screenshot.
    static func chromium(_ bin: String, _ args: [String], timeout: Double = 60) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: bin)
        p.arguments = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                       "--user-data-dir=\(FileManager.default.temporaryDirectory.path)/chromium-\(getpid())", "--hide-scrollbars"] + args
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let killer = DispatchWorkItem { if p.isRunning { p.terminate() } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let o = out.fileHandleForReading.readDataToEndOfFile()
        _ = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        killer.cancel()
        return String(decoding: o, as: UTF8.self)
    }

    @Test("Chromium loads the overview and the run pages of a cluster with a finished and a running run: run rows, SVG curves and audio players are there; screenshots saved")
    func dashboardInChromium() async throws {
        let browser = try #require(try FixtureScript.values("browser/browser_env.sh")["CHROMIUM"])
        let env = try FixtureScript.values("torch/torch_env.sh")
        let shim = try #require(env["SHIM"]), model = try #require(env["MODEL"]), dataset = try #require(env["DATASET"])
        let h = try ClusterHarness()
        try await h.startCoordinator(["--wandb-mode", "offline", "--wandb-dir", h.dir.appendingPathComponent("wandb").path])
        try await TorchRunnerTests.startTorchWorker(h, "cpu-a", shim: shim)
        try h.startWorker("cpu-b", ["--no-torch"])
        try await h.waitUntil("both workers are live", timeout: 30) { try h.workers().count == 2 }

        // A run that finishes, evaluated at each checkpoint with speech from the checkpoint.
        let (_, finished) = try TorchRunnerTests.submit(h, TorchRunnerTests.evaluatedSpec(
            h, name: "ref-finished", model: model, dataset: dataset, maxCodes: 25, asr: #"["/bin/sh", "-c", "echo 안녕하세요", "{audio}"]"#))
        // A run that keeps training (the command runner; it logs a step every 50 ms).
        let (_, running) = try TorchRunnerTests.submit(h, """
            name: cmd-running
            project: tts-it
            command: ["/bin/sh", "-c", "i=0; while true; do i=$((i+1)); echo \\"[Train] epoch=1 step=$i text_loss=$((1000/i+1)).5 mel_loss=3.$((i%7)) mel_top1=0.1 lr=1.00e-05\\"; sleep 0.05; done"]
            max_steps: 1000000
            """)
        try await h.waitUntil("the first run and its evaluations are done", timeout: 240) {
            try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == finished }?.state == "succeeded"
        }
        try await h.waitUntil("the second run has curves", timeout: 60) {
            (try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == running }?.step ?? 0) >= 30
        }

        try FileManager.default.createDirectory(at: Self.artifacts, withIntermediateDirectories: true)
        let overview = try Self.chromium(browser, ["--virtual-time-budget=3000", "--dump-dom", h.httpURL + "/"])
        #expect(overview.contains("data-run=\"\(finished)\"") && overview.contains("data-run=\"\(running)\""), "both run rows")
        #expect(overview.contains("class=\"worker\"") && overview.contains("cpu-a") && overview.contains("cpu-b"), "worker rows")
        #expect(overview.contains("s-succeeded") && overview.contains("s-running"))
        let finishedPage = try Self.chromium(browser, ["--virtual-time-budget=3000", "--dump-dom", h.httpURL + "/runs/\(finished)"])
        #expect(finishedPage.contains("<svg") && finishedPage.contains("class=\"series\""), "SVG curves")
        #expect(finishedPage.contains("train/text_loss") && finishedPage.contains("eval/cer"))
        let audios = finishedPage.components(separatedBy: "<audio").count - 1
        #expect(audios >= 2, "audio players for the evaluation samples (\(audios))")
        let runningPage = try Self.chromium(browser, ["--virtual-time-budget=3000", "--dump-dom", h.httpURL + "/runs/\(running)"])
        #expect(runningPage.contains("class=\"series\"") && runningPage.contains("train/mel_loss"))
        // An audio player's source is served as audio.
        if let range = finishedPage.range(of: #"src="/evals/"#) {
            let rest = finishedPage[range.upperBound...]
            let path = "/evals/" + rest.prefix { $0 != "\"" }
            let audio = try await API(base: h.httpURL).get(path)
            #expect(audio.status == 200 && audio.headers["content-type"] == "audio/wav" && audio.body.count > 1_000, "\(path): \(audio.status)")
        }
        // Screenshots at a laptop's size.
        for (name, path) in [("overview", "/"), ("run-finished", "/runs/\(finished)"), ("run-running", "/runs/\(running)")] {
            let png = Self.artifacts.appendingPathComponent("dashboard-\(name).png").path
            try? FileManager.default.removeItem(atPath: png)
            _ = try Self.chromium(browser, ["--window-size=1440,1800", "--virtual-time-budget=3000", "--screenshot=\(png)", h.httpURL + path])
            let size = (try? FileManager.default.attributesOfItem(atPath: png)[.size] as? Int) ?? 0
            #expect(size > 20_000, "screenshot \(png) (\(size) bytes)")
        }
        _ = try h.cli(["cancel", running])
    }
}
