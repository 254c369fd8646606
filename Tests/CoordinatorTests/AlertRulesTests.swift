import Foundation
import Testing
@testable import Coordinator
@testable import Shared

// MARK: - Recorded-shape curves

/// SplitMix64: a small deterministic generator, so every curve is the same on every run.
struct AlertTestRandom: RandomNumberGenerator {
    private var state: UInt64

    init(seed: UInt64) { state = seed }

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal sample (Box–Muller).
    mutating func gaussian() -> Double {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self)
        let u2 = Double.random(in: 0..<1, using: &self)
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}

/// Curves shaped like the real IndexTTS-2 GPT-stage ones: an exponential decay with
/// log-normal step-to-step noise and an occasional hard batch.
enum AlertCurves {
    /// `text_loss`-like: from about 5 down to about 2 over `steps`, σ = 8 % log-normal noise,
    /// and 1 % of the steps a hard batch 1.2–1.5× higher.
    static func noisyDecreasingLoss(steps: Int, seed: UInt64, from start: Double = 5, to end: Double = 2) -> [Double] {
        var rng = AlertTestRandom(seed: seed)
        return (0..<steps).map { t in
            let clean = end + (start - end) * exp(-Double(t) / (Double(steps) / 5))
            var v = clean * exp(0.08 * rng.gaussian())
            if Double.random(in: 0..<1, using: &rng) < 0.01 { v *= Double.random(in: 1.2...1.5, using: &rng) }
            return v
        }
    }

    /// A loss that slowly gets worse: linear from `from` to `to`, same noise.
    static func slowlyRisingLoss(steps: Int, seed: UInt64, from: Double = 2, to: Double = 4) -> [Double] {
        var rng = AlertTestRandom(seed: seed)
        return (0..<steps).map { t in
            (from + (to - from) * Double(t) / Double(steps)) * exp(0.08 * rng.gaussian())
        }
    }

    /// `mel_top1`-like: rising from 0.1 towards 0.6 with additive noise.
    static func noisyRisingAccuracy(steps: Int, seed: UInt64) -> [Double] {
        var rng = AlertTestRandom(seed: seed)
        return (0..<steps).map { t in
            let clean = 0.6 - 0.5 * exp(-Double(t) / (Double(steps) / 5))
            return min(1, max(0, clean + 0.02 * rng.gaussian()))
        }
    }
}

/// Feeds curves into an engine as a trainer would log them: one point per key per step,
/// wall time 0.5 s per step, arriving 1 s later.
struct AlertHarness {
    var engine: RulesEngine
    var signals: [AlertSignal] = []
    let runId: String

    init(runId: String = "run-1", configuration: AlertRulesConfiguration = AlertRulesConfiguration()) {
        engine = RulesEngine(configuration: configuration)
        self.runId = runId
    }

    static func wall(_ step: Int) -> Double { 1_000 + Double(step) * 0.5 }

    /// Feeds `series[key][i]` at step `firstStep + i`, every key at each step, plus a passive
    /// learning-rate key.
    mutating func feed(_ series: [String: [Double]], firstStep: Int = 0) {
        let keys = series.keys.sorted()
        let n = series.values.map(\.count).max() ?? 0
        for i in 0..<n {
            let step = firstStep + i
            for key in keys where i < series[key]!.count {
                point(step: step, key: key, value: series[key]![i])
            }
            point(step: step, key: "train/lr", value: 1e-4)
        }
    }

    mutating func point(step: Int, key: String, value: Double, runId: String? = nil) {
        let p = MetricPoint(runId: runId ?? self.runId, step: Int64(step), key: key, value: value, wallTime: Self.wall(step))
        engine.ingest(p, now: Self.wall(step) + 1, into: &signals)
    }

    func of(_ rule: AlertRule) -> [AlertSignal] { signals.filter { $0.rule == rule } }
    func transitions(_ rule: AlertRule) -> [AlertSignal.Transition] { of(rule).map(\.transition) }
}

// MARK: - Metric rules

@Suite("Alert rules: loss_spike, non_finite, accuracy_collapse on recorded-shape curves")
struct AlertRulesMetricTests {
    @Test("a long noisy decreasing loss (20k steps, ~5 → ~2) raises no alert at all", arguments: [1, 2, 3] as [UInt64])
    func noisyDecreasingLossIsQuiet(seed: UInt64) {
        var h = AlertHarness()
        h.feed(["train/text_loss": AlertCurves.noisyDecreasingLoss(steps: 20_000, seed: seed),
                "train/mel_loss": AlertCurves.noisyDecreasingLoss(steps: 20_000, seed: seed + 100, from: 8, to: 3),
                "train/mel_top1": AlertCurves.noisyRisingAccuracy(steps: 20_000, seed: seed + 200)])
        #expect(h.signals.isEmpty, "unexpected: \(h.signals.prefix(3))")
        #expect(h.engine.firingKeys.isEmpty)
    }

    @Test("feeding a stored batch gives the same signals as feeding its points one by one")
    func batchEqualsPoints() {
        var curve = AlertCurves.noisyDecreasingLoss(steps: 6_000, seed: 3)
        for i in 3_000..<3_020 { curve[i] *= 2 }
        curve[4_500] = .nan
        var points: [MetricPoint] = []
        for (i, v) in curve.enumerated() {
            for (key, value) in [("train/text_loss", v), ("train/lr", 1e-4), ("train/mel_top1", 0.5 + Double(i) / 20_000)] {
                points.append(MetricPoint(runId: "run-1", step: Int64(i), key: key, value: value, wallTime: AlertHarness.wall(i)))
            }
        }
        var one = RulesEngine(), batched = RulesEngine()
        var a: [AlertSignal] = [], b: [AlertSignal] = []
        for chunk in stride(from: 0, to: points.count, by: 999) {
            let part = points[chunk..<min(points.count, chunk + 999)]
            let now = part.last!.wallTime + 1
            one.ingest(part, now: now, into: &a)
            batched.ingest(runId: "run-1", batch: PointBatch(points: part), now: now, into: &b)
        }
        #expect(a.map(\.description) == b.map(\.description))
        #expect(Set(a.map(\.rule)) == [.lossSpike, .nonFinite], "the curve has a spike and a NaN: \(a)")
    }

    @Test("the old `current > previous × 1.5` rule would have fired on that same curve (the test has teeth)")
    func naiveRuleFiresOnTheSameNoise() {
        let curve = AlertCurves.noisyDecreasingLoss(steps: 20_000, seed: 1)
        let naive = zip(curve, curve.dropFirst()).filter { $1 > $0 * 1.5 }.count
        #expect(naive > 0)
    }

    @Test("a 2× excursion for 20 steps fires once within a few steps, then resolves once")
    func excursionFiresAndResolvesOnce() throws {
        var curve = AlertCurves.noisyDecreasingLoss(steps: 20_000, seed: 7)
        for i in 12_000..<12_020 { curve[i] *= 2 }
        var h = AlertHarness()
        h.feed(["train/text_loss": curve])
        #expect(h.transitions(.lossSpike) == [.fire, .resolve])
        #expect(h.signals.count == 2, "nothing but the spike: \(h.signals)")
        let fire = try #require(h.of(.lossSpike).first)
        let resolve = try #require(h.of(.lossSpike).last)
        #expect(fire.key == AlertKey(runId: "run-1", rule: .lossSpike, series: "train/text_loss"))
        #expect(fire.severity == .warning)
        #expect((12_000...12_005).contains(fire.step ?? -1), "fired at \(fire.step ?? -1)")
        #expect((12_020...12_060).contains(resolve.step ?? -1), "resolved at \(resolve.step ?? -1)")
        let ratio = try #require(fire.values.first { $0.name == "ratio" }?.value)
        #expect(ratio > 1.5)
        #expect(fire.summary.contains("train/text_loss") && fire.summary.contains("spiked"))
    }

    @Test("a single 3× outlier step is noise, not a spike")
    func singleOutlierIsIgnored() {
        var curve = AlertCurves.noisyDecreasingLoss(steps: 3_000, seed: 11)
        curve[2_000] *= 3
        var h = AlertHarness()
        h.feed(["train/loss": curve])
        #expect(h.signals.isEmpty)
    }

    @Test("a slowly rising loss (2 → 4 over 20k steps) is not a spike")
    func slowlyRisingLossIsNotASpike() {
        var h = AlertHarness()
        h.feed(["train/text_loss": AlertCurves.slowlyRisingLoss(steps: 20_000, seed: 5)])
        #expect(h.of(.lossSpike).isEmpty)
    }

    @Test("no spike during the warm-up, even from a wild start")
    func warmup() {
        var h = AlertHarness()
        h.feed(["train/text_loss": [1, 1, 1, 1, 10, 10, 10, 10, 10, 10]])
        #expect(h.signals.isEmpty)
    }

    @Test("a NaN loss fires non_finite at once, on that very point, and resolves after finite points")
    func nanFiresAtOnce() throws {
        var h = AlertHarness()
        h.feed(["train/text_loss": AlertCurves.noisyDecreasingLoss(steps: 5_000, seed: 3)])
        #expect(h.signals.isEmpty)
        h.point(step: 5_000, key: "train/text_loss", value: .nan)
        #expect(h.signals.map(\.transition) == [.fire], "fired on the NaN point itself")
        let fire = try #require(h.signals.first)
        #expect(fire.key == AlertKey(runId: "run-1", rule: .nonFinite, series: "train/text_loss"))
        #expect(fire.severity == .critical)
        #expect(fire.step == 5_000 && fire.values.first?.value.isNaN == true)
        #expect(fire.summary.contains("NaN"))
        h.feed(["train/text_loss": Array(repeating: 2.0, count: 30)], firstStep: 5_001)
        #expect(h.transitions(.nonFinite) == [.fire, .resolve])
        #expect(h.of(.lossSpike).isEmpty, "a NaN does not feed the spike detector")
    }

    @Test("+Inf in a gradient norm (and in any *loss* key) is non_finite too; other keys are not watched")
    func infInGradNorm() {
        var h = AlertHarness()
        h.point(step: 1, key: "train/grad_norm", value: .infinity)
        h.point(step: 1, key: "val/ctc_loss", value: -.infinity)
        h.point(step: 1, key: "train/lr", value: .nan)
        #expect(h.signals.map(\.key.series) == ["train/grad_norm", "val/ctc_loss"])
        #expect(h.signals[0].summary.contains("+Inf"))
    }

    @Test("a flapping series (2× for 3 steps, normal for 3, ten times) fires once, not dozens")
    func flappingSpikeFiresOnce() {
        var curve = AlertCurves.noisyDecreasingLoss(steps: 2_000, seed: 9)
        for cycle in 0..<10 { for i in 0..<3 { curve[1_000 + cycle * 6 + i] *= 2 } }
        var h = AlertHarness()
        h.feed(["train/text_loss": curve])
        #expect(h.transitions(.lossSpike) == [.fire, .resolve])
    }

    @Test("a loss that alternates NaN and finite values fires non_finite once")
    func flappingNaNFiresOnce() {
        var h = AlertHarness()
        for step in 0..<200 { h.point(step: step, key: "train/loss", value: step.isMultiple(of: 2) && step < 100 ? .nan : 2.0) }
        #expect(h.transitions(.nonFinite) == [.fire, .resolve])
    }

    @Test("mel_top1 falling to a third of its median fires accuracy_collapse once, and recovery resolves it")
    func accuracyCollapse() throws {
        var acc = AlertCurves.noisyRisingAccuracy(steps: 4_000, seed: 21)
        for i in 3_000..<3_100 { acc[i] = 0.2 + 0.01 * Double(i % 3) }
        var h = AlertHarness()
        h.feed(["train/mel_top1": acc])
        #expect(h.transitions(.accuracyCollapse) == [.fire, .resolve])
        let fire = try #require(h.of(.accuracyCollapse).first)
        #expect((3_000...3_010).contains(fire.step ?? -1))
        #expect(h.of(.lossSpike).isEmpty)
    }

    @Test("per-job settings: a run with threshold 3 ignores the 2× excursion that fires under the defaults")
    func perRunConfiguration() {
        var curve = AlertCurves.noisyDecreasingLoss(steps: 2_000, seed: 4)
        for i in 1_500..<1_520 { curve[i] *= 2 }
        var lenient = AlertRulesConfiguration()
        lenient.lossSpike.threshold = 3
        var h = AlertHarness()
        h.engine.configure(runId: "lenient", lenient)
        for (i, v) in curve.enumerated() {
            h.point(step: i, key: "train/text_loss", value: v, runId: "lenient")
            h.point(step: i, key: "train/text_loss", value: v, runId: "default")
        }
        #expect(h.of(.lossSpike).map(\.key.runId) == ["default", "default"])
    }

    @Test("a disabled rule says nothing")
    func disabledRule() {
        var c = AlertRulesConfiguration()
        c.nonFinite.enabled = false
        var h = AlertHarness(configuration: c)
        h.point(step: 1, key: "train/loss", value: .nan)
        #expect(h.signals.isEmpty)
    }
}

// MARK: - Progress, liveness, failures, lifecycle

@Suite("Alert rules: stalled, worker_lost, oom, shard_failed, eval_regression, run_completed, digest")
struct AlertRulesEventTests {
    /// A worker that logs a step a second and heartbeats every 2 s, then hangs at `hangAt`
    /// (still heartbeating) until `until`.
    static func hangingRun(engine: inout RulesEngine, signals: inout [AlertSignal], hangAt: Int, until: Int) {
        engine.shardStarted(runId: "r", worker: "w0", step: 0, now: 0, into: &signals)
        for t in 1...until {
            let now = Double(t)
            if t <= hangAt {
                engine.ingest(MetricPoint(runId: "r", step: Int64(t), key: "train/loss", value: 2, wallTime: now), now: now, into: &signals)
            }
            if t.isMultiple(of: 2) { engine.heartbeat(worker: "w0", runId: "r", step: Int64(min(t, hangAt)), now: now, into: &signals) }
            engine.checkStalls(now: now, into: &signals)
        }
    }

    @Test("a hung-but-heartbeating worker fires stalled once after max(K × median step, floor), and progress resolves it")
    func stall() throws {
        var c = AlertRulesConfiguration()
        c.stalled.floorSeconds = 60
        c.stalled.stepTimeMultiple = 30 // 30 × 1 s = 30 s < floor: the floor decides
        var engine = RulesEngine(configuration: c)
        var signals: [AlertSignal] = []
        Self.hangingRun(engine: &engine, signals: &signals, hangAt: 300, until: 600)
        #expect(signals.map(\.transition) == [.fire])
        let fire = try #require(signals.first)
        #expect(fire.key == AlertKey(runId: "r", rule: .stalled))
        #expect(fire.time > 360 && fire.time <= 362, "fired at \(fire.time)")
        #expect(fire.step == 300 && fire.worker == "w0")
        engine.ingest(MetricPoint(runId: "r", step: 301, key: "train/loss", value: 2, wallTime: 601), now: 601, into: &signals)
        #expect(signals.map(\.transition) == [.fire, .resolve])
    }

    @Test("a data-parallel gang whose rank 0 stops advancing while every rank's worker heartbeats fires one stalled, naming the gang's workers and rank 0's")
    func gangStall() throws {
        var c = AlertRulesConfiguration()
        c.stalled.floorSeconds = 20
        c.stalled.stepTimeMultiple = 5 // 5 × 1 s < floor: the floor decides
        var engine = RulesEngine(configuration: c)
        var signals: [AlertSignal] = []
        for w in ["w0", "w1"] { engine.shardStarted(runId: "g", worker: w, step: nil, now: 0, into: &signals) }
        for t in 1...60 {
            let now = Double(t)
            // Rank 0 (w0) reports the step; rank 1 (w1) heartbeats without one. A collective
            // hangs at step 10: rank 0 waits in it, rank 1 is stuck, both workers still live.
            engine.heartbeat(worker: "w0", runId: "g", step: Int64(min(t, 10)), now: now, into: &signals)
            engine.heartbeat(worker: "w1", runId: "g", step: nil, now: now, into: &signals)
            engine.checkStalls(now: now, into: &signals)
        }
        #expect(signals.map(\.transition) == [.fire])
        let fire = try #require(signals.first)
        #expect(fire.step == 10 && fire.worker == "w0", "rank 0's worker, which reports the step: \(fire.worker ?? "nil")")
        #expect(fire.summary.contains("the 2 workers of its gang (w0, w1)"), "\(fire.summary)")
        #expect(fire.time > 30 && fire.time <= 32, "fired \(fire.time): 20 s after the last step")
    }

    @Test("a single run that moved to another worker is not called a gang")
    func movedRunIsNoGang() throws {
        var c = AlertRulesConfiguration()
        c.stalled.floorSeconds = 20
        var engine = RulesEngine(configuration: c)
        var signals: [AlertSignal] = []
        engine.heartbeat(worker: "w0", runId: "r", step: 5, now: 0, into: &signals)
        engine.shardStarted(runId: "r", worker: "w1", step: 5, now: 1, into: &signals)
        for t in 2...40 { engine.heartbeat(worker: "w1", runId: "r", step: 5, now: Double(t), into: &signals) }
        engine.checkStalls(now: 40, into: &signals)
        let fire = try #require(signals.first)
        #expect(fire.summary.hasSuffix("while its worker w1 still heartbeats"), "\(fire.summary)")
    }

    @Test("the stall limit scales with the median step time when K × median exceeds the floor")
    func stallScalesWithStepTime() throws {
        var c = AlertRulesConfiguration()
        c.stalled.floorSeconds = 10
        c.stalled.stepTimeMultiple = 100 // 100 × 1 s = 100 s
        var engine = RulesEngine(configuration: c)
        var signals: [AlertSignal] = []
        Self.hangingRun(engine: &engine, signals: &signals, hangAt: 200, until: 400)
        let fire = try #require(signals.first)
        #expect(fire.time > 300 && fire.time <= 302, "fired at \(fire.time)")
    }

    @Test("no stall while nothing heartbeats (that is worker_lost), and a loss resolves a firing stall")
    func noStallWithoutHeartbeats() {
        var c = AlertRulesConfiguration()
        c.stalled.floorSeconds = 60
        var engine = RulesEngine(configuration: c)
        var signals: [AlertSignal] = []
        engine.heartbeat(worker: "w0", runId: "r", step: 10, now: 0, into: &signals)
        engine.checkStalls(now: 1_000, into: &signals) // last heartbeat 1000 s ago
        #expect(signals.isEmpty)
        engine.heartbeat(worker: "w0", runId: "r", step: 10, now: 1_001, into: &signals)
        engine.checkStalls(now: 1_002, into: &signals)
        #expect(signals.map(\.transition) == [.fire])
        engine.workerLost(worker: "w0", runId: "r", now: 1_010, into: &signals)
        #expect(signals.map { "\($0.transition) \($0.rule)" } == ["fire stalled", "resolve stalled", "fire worker_lost"])
    }

    @Test("worker_lost fires once per loss and resolves when the worker heartbeats again")
    func workerLost() {
        var engine = RulesEngine()
        var signals: [AlertSignal] = []
        engine.workerLost(worker: "box-a-gpu1", runId: "r", now: 10, into: &signals)
        engine.workerLost(worker: "box-a-gpu1", runId: "r", now: 11, into: &signals)
        #expect(signals.count == 1)
        #expect(signals[0].key == AlertKey(runId: "r", rule: .workerLost, series: "box-a-gpu1"))
        #expect(signals[0].severity == .critical)
        #expect(engine.firingKeys == [signals[0].key])
        engine.heartbeat(worker: "box-a-gpu1", runId: nil, step: nil, now: 20, into: &signals)
        #expect(signals.map(\.transition) == [.fire, .resolve])
        #expect(engine.firingKeys.isEmpty)
    }

    @Test("OOM comes from PyTorch's own messages, once per shard; a line saying Exception is not an OOM")
    func oom() throws {
        var engine = RulesEngine()
        var signals: [AlertSignal] = []
        engine.logLines(runId: "r", worker: "w1", shard: "s7#1", lines: ["Exception ignored in: <function _releaseLock>"], now: 1, into: &signals)
        #expect(signals.isEmpty)
        let line = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 23.65 GiB total capacity)"
        engine.logLines(runId: "r", worker: "w1", shard: "s7#1", lines: ["step 10", line], now: 2, into: &signals)
        engine.logLines(runId: "r", worker: "w1", shard: "s7#1", lines: [line], now: 3, into: &signals)
        engine.shardFailed(runId: "r", worker: "w1", shard: "s7#1", error: "exit status 1", lastLogLines: [line],
                           willRetry: true, now: 4, into: &signals)
        #expect(signals.map(\.rule) == [.oom, .shardFailed])
        #expect(signals[0].transition == .notify && signals[0].details == [line])
        // The next attempt's OOM is news again.
        engine.outOfMemory(runId: "r", worker: "w2", shard: "s7#2", message: "CUDA out of memory", now: 5, into: &signals)
        #expect(signals.map(\.rule) == [.oom, .shardFailed, .oom])
    }

    @Test("shard_failed carries the last log lines and is critical when no retry is left")
    func shardFailed() throws {
        var c = AlertRulesConfiguration()
        c.shardFailed.logLines = 3
        var engine = RulesEngine(configuration: c)
        var signals: [AlertSignal] = []
        let lines = (1...10).map { "line \($0)" }
        engine.shardFailed(runId: "r", worker: "w", shard: "s1", error: "exit 1", lastLogLines: lines, willRetry: true, now: 1, into: &signals)
        engine.shardFailed(runId: "r", worker: "w", shard: "s1", error: "exit 1", lastLogLines: lines, willRetry: false, now: 2, into: &signals)
        #expect(signals.map(\.severity) == [.warning, .critical])
        #expect(signals[0].details == ["line 8", "line 9", "line 10"])
        #expect(signals[1].summary.contains("no retries left"))
    }

    @Test("eval_regression fires when CER is worse than the best by more than the margin, and resolves when it comes back")
    func evalRegression() {
        var engine = RulesEngine()
        var signals: [AlertSignal] = []
        // best 0.12 → limit 0.12 + max(0.005, 0.012) = 0.132
        for (step, cer) in [(1_000, 0.20), (2_000, 0.15), (3_000, 0.12), (4_000, 0.13), (5_000, 0.14), (6_000, 0.15), (7_000, 0.125), (8_000, 0.10)] {
            engine.evalResult(runId: "r", step: Int64(step), cer: cer, now: Double(step), into: &signals)
        }
        #expect(signals.map(\.transition) == [.fire, .resolve])
        #expect(signals.map(\.step) == [5_000, 7_000])
        #expect(signals[0].values.first { $0.name == "best_cer" }?.value == 0.12)
    }

    @Test("eval CER logged as a metric point (eval/cer) goes through the same rule")
    func evalRegressionFromPoints() {
        var h = AlertHarness()
        h.point(step: 1_000, key: "eval/cer", value: 0.10)
        h.point(step: 2_000, key: "eval/cer", value: 0.20)
        #expect(h.transitions(.evalRegression) == [.fire])
    }

    @Test("eval_regression ignores the CER of an evaluation whose ASR floor shows the ASR cannot read the test set's own audio")
    func evalRegressionIgnoresUnreadableSets() {
        var h = AlertHarness()
        // Readable set: 10 % CER with a 5 % floor, then an unreadable one (floor 103.7 %, CER 100 %).
        h.point(step: 1_000, key: "eval/asr_floor_cer", value: 0.05)
        h.point(step: 1_000, key: "eval/cer", value: 0.10)
        h.point(step: 2_000, key: "eval/asr_floor_cer", value: 1.037)
        h.point(step: 2_000, key: "eval/cer", value: 1.00)
        #expect(h.transitions(.evalRegression) == [], "an unreadable set says nothing about the model")
        // The same CER with a readable floor is a regression (the test has teeth).
        h.point(step: 3_000, key: "eval/asr_floor_cer", value: 0.05)
        h.point(step: 3_000, key: "eval/cer", value: 1.00)
        #expect(h.transitions(.evalRegression) == [.fire])
    }

    @Test("the floor threshold is a setting: max_floor_cer")
    func evalRegressionFloorThresholdIsASetting() throws {
        var c = AlertRulesConfiguration()
        c.evalRegression.maxFloorCer = 2.0
        var h = AlertHarness(configuration: c)
        h.point(step: 1_000, key: "eval/asr_floor_cer", value: 1.037)
        h.point(step: 1_000, key: "eval/cer", value: 0.10)
        h.point(step: 2_000, key: "eval/asr_floor_cer", value: 1.037)
        h.point(step: 2_000, key: "eval/cer", value: 0.50)
        #expect(h.transitions(.evalRegression) == [.fire])
        let decoded = try JSONDecoder().decode(AlertRulesConfiguration.EvalRegression.self, from: Data(#"{"max_floor_cer": 0.3, "floor_key": "eval/floor"}"#.utf8))
        #expect(decoded.maxFloorCer == 0.3 && decoded.floorKey == "eval/floor")
    }

    @Test("run_completed resolves what is firing, reports final and best losses and the best CER, and forgets the run")
    func runCompleted() throws {
        var h = AlertHarness(runId: "r")
        h.feed(["train/text_loss": [3.0, 2.5, 2.0, 2.2]])
        h.point(step: 4, key: "train/grad_norm", value: .nan)
        h.engine.evalResult(runId: "r", step: 4, cer: 0.08, now: 10, into: &h.signals)
        h.engine.runCompleted(RunCompletion(runId: "r", durationSeconds: 7_260, checkpoint: "ckpt/step-4.pt"), now: 20, into: &h.signals)
        #expect(h.signals.map { "\($0.transition) \($0.rule)" } == ["fire non_finite", "resolve non_finite", "notify run_completed"])
        let done = try #require(h.signals.last)
        #expect(done.values.contains(.init("train/text_loss", 2.2)))
        #expect(done.values.contains(.init("best train/text_loss", 2.0)))
        #expect(done.values.contains(.init("best_cer", 0.08)))
        #expect(done.details.contains("checkpoint: ckpt/step-4.pt"))
        #expect(done.summary == "run r completed at step 4 in 2h 01m")
        #expect(h.engine.activeRuns.isEmpty && h.engine.firingKeys.isEmpty)
    }

    @Test("the status digest writes one message per active run with step, rate, ETA, losses, GPU and last eval")
    func statusDigest() throws {
        var h = AlertHarness(runId: "r")
        h.feed(["train/text_loss": AlertCurves.noisyDecreasingLoss(steps: 500, seed: 2)])
        h.engine.evalResult(runId: "r", step: 400, cer: 0.09, now: 10, into: &h.signals)
        var snapshot = try #require(h.engine.snapshots(now: 2_000).first)
        #expect(snapshot.step == 499)
        #expect(abs((snapshot.stepsPerSecond ?? 0) - 2) < 1e-9, "0.5 s per step")
        snapshot.totalSteps = 7_699
        snapshot.gpuUtilization = 97
        snapshot.gpuMemoryUsedGB = 40.5
        snapshot.gpuMemoryTotalGB = 48
        let messages = StatusDigest.messages(for: [snapshot], configuration: .init(), now: 2_000)
        let m = try #require(messages.first)
        #expect(messages.count == 1 && m.transition == .notify && m.key == AlertKey(runId: "r", rule: .statusDigest))
        #expect(m.summary == "run r: step 499/7699 (6%), 2 steps/s, ETA 1h 00m")
        #expect(m.details.contains { $0.hasPrefix("train/text_loss ") && $0.contains("vs median") })
        #expect(m.details.contains("GPU 97% · 40.5/48 GB"))
        #expect(m.details.contains("last eval: CER 0.09 at step 400 (best 0.09)"))
        var off = AlertRulesConfiguration.StatusDigest()
        off.intervalMinutes = 0
        #expect(StatusDigest.messages(for: [snapshot], configuration: off, now: 0).isEmpty)
    }
}

// MARK: - Building blocks

@Suite("Alert rules: configuration, signals and the rolling median")
struct AlertRulesPartsTests {
    @Test("a job's partial configuration keeps every default it does not mention")
    func partialConfiguration() throws {
        let json = #"{"loss_spike": {"threshold": 2.0, "keys": ["train/loss"]}, "oom": {"enabled": false}, "status_digest": {"interval_minutes": 0}}"#
        let c = try JSONDecoder().decode(AlertRulesConfiguration.self, from: Data(json.utf8))
        var expected = AlertRulesConfiguration()
        expected.lossSpike.threshold = 2
        expected.lossSpike.keys = ["train/loss"]
        expected.oom.enabled = false
        expected.statusDigest.intervalMinutes = 0
        #expect(c == expected)
        #expect(c.oom.severity == .warning && c.workerLost.severity == .critical)
        let empty = try JSONDecoder().decode(AlertRulesConfiguration.self, from: Data("{}".utf8))
        #expect(empty == AlertRulesConfiguration())
    }

    @Test("the documented defaults")
    func defaults() {
        let c = AlertRulesConfiguration()
        #expect(c.lossSpike.keys == ["train/text_loss", "train/mel_loss", "train/loss"])
        #expect(c.lossSpike.threshold == 1.5)
        #expect(c.accuracyCollapse.keys == ["train/mel_top1"])
        #expect(c.statusDigest.intervalMinutes == 60)
    }

    @Test("a job's alerts: section is checked at submission: rule names and setting types, each error naming the field")
    func jobAlertSettings() throws {
        let ok = try AlertRulesConfiguration.validated(["stalled": .object(["floor_seconds": .number(5), "enabled": .bool(true)]),
                                                        "loss_spike": .object(["keys": .array([.string("train/loss")])])])
        #expect(ok.stalled.floorSeconds == 5 && ok.lossSpike.keys == ["train/loss"])
        #expect(ok.nonFinite == AlertRulesConfiguration().nonFinite, "rules left out keep their defaults")
        func failure(_ settings: [String: JSONValue]) -> String {
            do { _ = try AlertRulesConfiguration.validated(settings); return "" } catch { return error.description }
        }
        #expect(failure(["stalld": .object([:])]).hasPrefix("alerts.stalld: unknown rule; the rules are loss_spike, non_finite"))
        #expect(failure(["stalled": .object(["floor_seconds": .string("soon")])]) == "alerts.stalled.floor_seconds: expected a number")
        #expect(failure(["oom": .object(["severity": .string("loud")])]).hasPrefix("alerts.oom.severity: "))
        #expect(AlertRulesConfiguration.ruleNames.count == 12)
    }

    @Test("a configuration survives an encode/decode round trip")
    func configurationRoundTrip() throws {
        var c = AlertRulesConfiguration()
        c.stalled.floorSeconds = 123
        c.runCompleted.severity = .warning
        let back = try JSONDecoder().decode(AlertRulesConfiguration.self, from: JSONEncoder().encode(c))
        #expect(back == c)
    }

    @Test("signals with NaN and ±Inf values survive JSON (for the alert outbox)")
    func signalCoding() throws {
        let s = AlertSignal(transition: .fire, key: AlertKey(runId: "r", rule: .nonFinite, series: "train/loss"), severity: .critical,
                            summary: "x", values: [.init("a", .nan), .init("b", .infinity), .init("c", -.infinity), .init("d", 1.5)], time: 1)
        let back = try JSONDecoder().decode(AlertSignal.self, from: JSONEncoder().encode(s))
        #expect(back == s)
        #expect(back.values[1].value == .infinity && back.values[2].value == -.infinity)
    }

    @Test("the sorted window's median equals a brute-force median at every step", arguments: [1, 2, 7, 64, 101] as [Int])
    func rollingMedian(capacity: Int) {
        var rng = AlertTestRandom(seed: UInt64(capacity))
        var window = SortedWindow(capacity: capacity)
        var recent: [Double] = []
        for i in 0..<2_000 {
            // Many repeats, to exercise equal values.
            let x = i % 5 == 0 ? 1.0 : Double(Int.random(in: 0..<50, using: &rng))
            window.push(x)
            recent.append(x)
            if recent.count > capacity { recent.removeFirst() }
            let s = recent.sorted()
            let n = s.count
            let expected = n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
            guard window.median == expected else {
                Issue.record("step \(i): median \(window.median) != \(expected)")
                return
            }
        }
        #expect(window.count == capacity)
    }

    @Test("hysteresis: K to fire, M quiet observations to resolve")
    func hysteresis() {
        var h = AlertHysteresis(fireAfter: 2, resolveAfter: 3)
        let input = [true, false, true, true, false, false, true, false, false, false]
        let out = input.map { h.update($0) }
        #expect(out == [nil, nil, nil, .fire, nil, nil, nil, nil, nil, .resolve])
    }

    @Test("OOM markers", arguments: ["RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB", "torch.OutOfMemoryError: x",
                                     "torch.cuda.OutOfMemoryError: CUDA out of memory."])
    func oomMarkers(line: String) {
        #expect(OutOfMemoryText.matches(line))
    }

    @Test("not OOM", arguments: ["Exception in thread", "RuntimeError: CUDA error: device-side assert triggered", "out of memory (host)"])
    func notOOM(line: String) {
        #expect(!OutOfMemoryText.matches(line))
    }
}
