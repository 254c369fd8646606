import Foundation

/// Micro-batch and gradient accumulation for one run on one card.
public struct BatchSettings: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// Samples per forward pass (`{batch_size}`).
    public var batchSize: Int
    /// Forward passes per optimiser step (`{grad_accum}`).
    public var gradAccum: Int

    public init(batchSize: Int, gradAccum: Int) {
        self.batchSize = batchSize
        self.gradAccum = gradAccum
    }

    /// Samples per optimiser step: `batchSize × gradAccum`, the number kept equal on every card.
    public var effectiveBatch: Int { batchSize * gradAccum }

    /// The settings after CUDA ran out of memory: half the micro-batch and twice the accumulation,
    /// so the effective batch is unchanged. Nil when that is impossible: the micro-batch is odd
    /// (halving would change the effective batch) or half of it is below `floor` (at least 1).
    public func downshifted(floor: Int = 1) -> BatchSettings? {
        guard batchSize % 2 == 0, batchSize / 2 >= max(floor, 1) else { return nil }
        return BatchSettings(batchSize: batchSize / 2, gradAccum: gradAccum * 2)
    }

    public var description: String { "batch \(batchSize) × accumulation \(gradAccum) (effective \(effectiveBatch))" }
}

/// Which cards a preset is for: the GPU name contains `name` (case-insensitive) and the card has
/// at least `minMemoryGB`. An empty matcher matches every card.
public struct GPUMatch: Sendable, Equatable, Hashable {
    /// A substring of the device name as NVML reports it (`"A6000"` matches `NVIDIA RTX A6000`).
    public var name: String?
    /// Minimum total memory in GB (10⁹ bytes, as cards are sold; a 48 GB card reports ~51.5e9).
    public var minMemoryGB: Double?

    public init(name: String? = nil, minMemoryGB: Double? = nil) {
        self.name = name
        self.minMemoryGB = minMemoryGB
    }

    /// True if a card with this name and memory satisfies the matcher.
    public func matches(deviceName: String, memoryGB: Double) -> Bool {
        if let n = name, deviceName.range(of: n, options: .caseInsensitive) == nil { return false }
        if let m = minMemoryGB, memoryGB < m { return false }
        return true
    }

    /// "name contains 'A6000' and ≥ 40 GB", for wait reasons.
    public var requirement: String {
        var parts: [String] = []
        if let n = name { parts.append("name contains '\(n)'") }
        if let m = minMemoryGB { parts.append("≥ \(m.formatted()) GB") }
        return parts.isEmpty ? "any GPU" : parts.joined(separator: " and ")
    }
}

/// Per-GPU-class settings of a job (`presets: {a6000: {match: …, batch_size: 16, grad_accum: 1}}`).
public struct GPUPreset: Sendable, Equatable, Hashable {
    /// The class name (`a6000`, `4090`), recorded on the run.
    public var name: String
    public var match: GPUMatch
    public var batch: BatchSettings
    /// Hyperparameters this card runs with instead of the job's (`hyperparameters: {lr: 2e-5}`
    /// in the preset): the guide's 4090 preset has its own learning rate and warm-up. Each names
    /// a hyperparameter of the job.
    public var hyperparameters: [Hyperparameter]

    public init(name: String, match: GPUMatch, batch: BatchSettings, hyperparameters: [Hyperparameter] = []) {
        self.name = name
        self.match = match
        self.batch = batch
        self.hyperparameters = hyperparameters
    }

    /// `run` with this card's hyperparameters put in (the sweep's values win: a swept value is
    /// what the run is about).
    public func applied(to run: RunSpec) -> RunSpec {
        var r = run
        for h in hyperparameters where !run.sweepValues.contains(where: { $0.name == h.name }) {
            if let i = r.hyperparameters.firstIndex(where: { $0.name == h.name }) { r.hyperparameters[i] = h } else { r.hyperparameters.append(h) }
        }
        return r
    }
}

/// The outcome of fitting a run to a card.
public enum PresetResolution: Sendable, Equatable {
    /// Run with this preset (the first in the spec's order whose matcher accepts the card).
    case matched(GPUPreset)
    /// The card fits no preset; `reason` says what each preset needs, for the run's wait reason.
    case noMatch(reason: String)
}

extension Array where Element == GPUPreset {
    /// Picks the preset for a card: the first, in the order the spec lists them, whose matcher
    /// accepts `deviceName` and `memoryGB`. With no presets at all, every card matches a preset
    /// named `default` with `fallback`.
    public func resolve(deviceName: String, memoryGB: Double, fallback: BatchSettings) -> PresetResolution {
        if isEmpty { return .matched(GPUPreset(name: "default", match: GPUMatch(), batch: fallback)) }
        if let p = first(where: { $0.match.matches(deviceName: deviceName, memoryGB: memoryGB) }) { return .matched(p) }
        let needs = map { "\($0.name) needs \($0.match.requirement)" }.joined(separator: "; ")
        return .noMatch(reason: "no preset fits \(deviceName) (\(memoryGB.formatted()) GB): \(needs)")
    }
}

extension Double {
    /// `40` for 40.0, `23.5` otherwise; for messages.
    fileprivate func formatted() -> String {
        self == rounded() && abs(self) < 1e15 ? String(Int64(self)) : String(self)
    }
}
