import Foundation

/// `world:` of a training job: how many ranks (one worker = one GPU = one rank) train one run
/// together, data-parallel.
///
/// ```yaml
/// world: {gpus: 4}                       # 4 ranks on any hosts (ranks on one host are consecutive)
/// world: {nodes: 2, gpus_per_node: 2}    # exactly 2 hosts with 2 ranks each
/// ```
///
/// The spec's presets give each card's micro-batch and the run's effective batch
/// (`batch_size × grad_accum`), which is kept whatever the world size: each rank takes
/// `effective / gpus` samples per optimiser step, as its preset's micro-batch (or the largest
/// divisor of that share below it) times an accumulation that makes up the rest
/// (``rankBatch(_:)``). The effective batch must therefore be a multiple of the number of ranks.
public struct WorldSpec: Sendable, Equatable, Hashable {
    /// The number of ranks.
    public var gpus: Int
    /// When set, the ranks are spread over exactly this many hosts with ``gpusPerNode`` each.
    public var nodes: Int?
    public var gpusPerNode: Int?

    /// A single GPU: the default of every job.
    public static let single = WorldSpec(gpus: 1)

    public init(gpus: Int, nodes: Int? = nil, gpusPerNode: Int? = nil) {
        self.gpus = gpus
        self.nodes = nodes
        self.gpusPerNode = gpusPerNode
    }

    /// More than one rank: the run is leased as a gang.
    public var isGang: Bool { gpus > 1 }

    /// The batch of one rank for a preset's (single-GPU) batch: `effective / gpus` samples per
    /// step, as the preset's micro-batch (lowered to the largest divisor of that share when it is
    /// larger or does not divide it) × the accumulation that makes up the share. Nil when the
    /// effective batch is not a multiple of the world size.
    public func rankBatch(_ preset: BatchSettings) -> BatchSettings? {
        let e = preset.effectiveBatch
        guard e % gpus == 0 else { return nil }
        let share = e / gpus
        var micro = min(preset.batchSize, share)
        while share % micro != 0 { micro -= 1 }
        return BatchSettings(batchSize: micro, gradAccum: share / micro)
    }

    /// Why a batch cannot be split over the ranks, in words (for errors); nil when it can.
    func splitProblem(_ preset: BatchSettings, field: String) -> String? {
        guard rankBatch(preset) == nil else { return nil }
        return "\(field): the effective batch \(preset.effectiveBatch) (\(preset)) cannot be shared equally by \(gpus) ranks; it is kept whatever the world size, so it must be a multiple of \(gpus)"
    }

    public var description: String {
        if let nodes, let gpusPerNode { return "\(gpus) GPUs (\(nodes) nodes × \(gpusPerNode))" }
        return gpus == 1 ? "1 GPU" : "\(gpus) GPUs"
    }
}
