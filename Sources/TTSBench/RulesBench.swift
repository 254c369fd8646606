import ArgumentParser
import Coordinator
import Foundation
import Shared

/// Issue 4: the cost of the alert rules engine, in points per second through every rule.
struct RulesBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Points per second through all alert rules for many active runs (target ≥ 1,000,000).",
        discussion: """
            Generates synthetic training metrics for --runs runs (per step: the three watched losses, \
            a gradient norm, mel_top1, and passive keys up to --keys), arriving in batches of --batch \
            steps from one run at a time, round robin over the runs, like metrics requests from many \
            workers. The points are built before the clock starts; the timed loop feeds them to one \
            RulesEngine with the default rules (and checks stalls once per batch). Repeated --repeat \
            times on fresh engines; the best and the median are reported.
            """)

    @Option(help: "Active runs.") var runs = 100
    @Option(help: "Keys per step (at least 5: text/mel/total loss, grad norm, mel_top1; the rest passive).") var keys = 8
    @Option(help: "Steps per run.") var steps = 2_000
    @Option(help: "Steps per arriving batch.") var batch = 50
    @Option(help: "Timed repetitions.") var `repeat` = 5

    func run() throws {
        let points = Self.workload(runs: runs, keys: max(5, keys), steps: steps, batch: batch)
        var rates: [Double] = []
        var signalCount = 0
        let perBatch = max(5, keys) * batch
        for _ in 0..<max(1, `repeat`) {
            var engine = RulesEngine()
            var signals: [AlertSignal] = []
            signals.reserveCapacity(1024)
            let clock = ContinuousClock()
            let start = clock.now
            var i = 0
            var now = 0.0
            while i < points.count {
                let end = min(points.count, i + perBatch)
                engine.ingest(points[i..<end], now: now, into: &signals)
                engine.checkStalls(now: now, into: &signals)
                now += 0.001
                i = end
            }
            let elapsed = clock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            rates.append(Double(points.count) / seconds)
            signalCount = signals.count
        }
        rates.sort()
        print("\n### Rules engine: points/s through all alert rules (target ≥ 1,000,000)\n")
        print("| runs | keys/step | points | best points/s | median points/s | signals |")
        print("|---|---|---|---|---|---|")
        print("| \(runs) | \(max(5, keys)) | \(points.count) | \(Int(rates.last!)) | \(Int(rates[rates.count / 2])) | \(signalCount) |")
        print("\nBatches of \(batch) steps per run, round robin; default rules; one thread.")
    }

    /// Noisy decreasing losses, a noisy rising accuracy, a grad norm and passive keys, in
    /// arrival order. Deterministic (xorshift).
    static func workload(runs: Int, keys: Int, steps: Int, batch: Int) -> [MetricPoint] {
        var state: UInt64 = 0x2545_F491_4F6C_DD1D
        func noise() -> Double {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            return Double(state >> 11) / Double(1 << 53) - 0.5 // uniform in [-0.5, 0.5)
        }
        let runIds = (0..<runs).map { "run-\($0)" }
        var keyNames = ["train/text_loss", "train/mel_loss", "train/loss", "train/grad_norm", "train/mel_top1"]
        for k in keyNames.count..<keys { keyNames.append("train/extra_\(k)") }
        var points: [MetricPoint] = []
        points.reserveCapacity(runs * steps * keys)
        var first = 0
        while first < steps {
            let last = min(steps, first + batch)
            for (r, runId) in runIds.enumerated() {
                for step in first..<last {
                    let t = Double(step) / Double(steps)
                    let wall = 1_000 + Double(step) * 0.5 + Double(r)
                    for (k, key) in keyNames.enumerated() {
                        let value: Double
                        switch k {
                        case 0: value = (2 + 3 * exp(-5 * t)) * (1 + 0.16 * noise())
                        case 1: value = (3 + 5 * exp(-5 * t)) * (1 + 0.16 * noise())
                        case 2: value = (5 + 8 * exp(-5 * t)) * (1 + 0.1 * noise())
                        case 3: value = 1 + 0.5 * noise()
                        case 4: value = 0.6 - 0.5 * exp(-5 * t) + 0.04 * noise()
                        default: value = 1e-4 * (1 - t)
                        }
                        points.append(MetricPoint(runId: runId, step: Int64(step), key: key, value: value, wallTime: wall))
                    }
                }
            }
            first = last
        }
        return points
    }
}
