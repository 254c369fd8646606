import Foundation
import Synchronization

/// A batch of training pairs, padded, as the training contract takes it: `text_ids [B×T]`,
/// `text_lengths [B]`, `code_ids [B×C]`, `code_lengths [B]` (int64, padding 0), and, from a
/// loader made with `conditions: true`, `condition [B×R×D]` (float32: each pair's
/// `prompt_condition_path` array, all of the same shape [R, D]).
public struct PaddedBatch: Sendable, Equatable {
    public var ids: [String]
    public var textIds: [Int64]
    public var textLengths: [Int64]
    public var maxTextLength: Int
    public var codeIds: [Int64]
    public var codeLengths: [Int64]
    public var maxCodeLength: Int
    /// The prompts' conditions, row-major [B, R, D], and [R, D]; nil when not loaded.
    public var condition: [Float]? = nil
    public var conditionShape: [Int] = []
    public var size: Int { ids.count }
}

/// Where a loader is in its data: the next batch to produce is batch `batch` of epoch `epoch`.
/// Saved with each checkpoint, so a resumed run continues with the same data.
public struct LoaderPosition: Codable, Sendable, Equatable, Hashable {
    public var epoch: Int
    public var batch: Int
    public init(epoch: Int, batch: Int) {
        self.epoch = epoch
        self.batch = batch
    }
}

/// Produces padded batches of a pair manifest in a seeded, reproducible order, one epoch after
/// another, reading the `.npy` files on a background thread ahead of the trainer.
///
/// - **Order.** Each epoch permutes the pairs with a generator seeded by `(seed, epoch)`, cuts
///   the permutation into chunks of `batchSize × bucketBatches`, sorts each chunk by code length
///   (length bucketing: little padding), cuts batches of `batchSize` (a last short batch is
///   dropped when the epoch has at least one full batch), and shuffles the batches. The same seed
///   gives the same batches everywhere; a ``LoaderPosition`` resumes mid-epoch exactly.
/// - **Prefetch.** A producer thread keeps up to `prefetch` batches ready, so a step waits on
///   disk only when the data is not in the page cache and the trainer outruns the reads.
///   ``waitSeconds`` is the time callers of ``next()`` spent waiting.
public final class BatchLoader: Sendable {
    public let batchSize: Int
    public let seed: UInt64
    private let pairs: [TrainingPair]
    private let lengths: [Int]
    private let bucketBatches: Int
    /// Whether batches carry the prompts' conditions (``PaddedBatch/condition``).
    public let conditions: Bool
    /// A data-parallel rank's share of the batches (``init(pairs:batchSize:seed:start:bucketBatches:prefetch:conditions:share:)``).
    public let share: (rank: Int, of: Int)

    private struct Queue: Sendable {
        var ready: [(batch: Result<PaddedBatch, NpyError>, next: LoaderPosition)] = []
        var closed = false
        var waited: Duration = .zero
    }
    private let queue = Mutex(Queue())
    private let items = DispatchSemaphore(value: 0)
    private let slots: DispatchSemaphore
    private let stopped = DispatchSemaphore(value: 0)

    /// - Parameters:
    ///   - pairs: the training pairs (``PairManifest/read(_:)``).
    ///   - start: the first batch to produce (a checkpoint's position).
    ///   - conditions: also load each pair's `prompt_condition_path` (every pair must have one).
    ///   - share: a data-parallel rank's share: of every `of` consecutive batches of the plan
    ///     (the order a single process would take them in), only the `rank`-th is loaded and
    ///     returned, and the position after it is the one after all `of` — the same on every rank.
    ///     So `of` ranks taking `a` batches a step together take the batches one process takes
    ///     with `of × a` micro-batches a step, and a checkpoint's position fits every rank.
    /// - Throws: ``NpyError`` when a pair's lengths are not in the manifest and its codes file
    ///   cannot be read to find out, or `conditions` is set and a pair has no condition file.
    public init(pairs: [TrainingPair], batchSize: Int, seed: UInt64, start: LoaderPosition = LoaderPosition(epoch: 0, batch: 0),
                bucketBatches: Int = 50, prefetch: Int = 4, conditions: Bool = false, share: (rank: Int, of: Int) = (0, 1)) throws(NpyError) {
        precondition(!pairs.isEmpty && batchSize > 0)
        precondition(share.of >= 1 && (0..<share.of).contains(share.rank))
        self.share = share
        if conditions, let bare = pairs.first(where: { $0.conditionPath == nil }) {
            throw NpyError(path: bare.codesPath, message: "belongs to pair \(bare.id), which has no prompt_condition_path, but the model's forward takes a condition")
        }
        self.conditions = conditions
        self.pairs = pairs
        self.batchSize = batchSize
        self.seed = seed
        self.bucketBatches = max(1, bucketBatches)
        var lengths: [Int] = []
        lengths.reserveCapacity(pairs.count)
        for p in pairs {
            if let n = p.codeLength { lengths.append(n) } else { lengths.append(try NpyArray.read(contentsOf: p.codesPath).count) }
        }
        self.lengths = lengths
        // Created at 0 and signalled up: libdispatch traps when a semaphore is freed below the
        // value it was created with.
        slots = DispatchSemaphore(value: 0)
        for _ in 0..<max(1, prefetch) { slots.signal() }
        let thread = Thread { [self] in self.produce(from: start) }
        thread.name = "tts-batch-loader"
        thread.start()
    }

    deinit { close() }

    /// The batches of `epoch`, as indices into the pairs.
    public func plan(epoch: Int) -> [[Int]] {
        var rng = SplitMix64(seed: seed &+ UInt64(truncatingIfNeeded: epoch) &* 0x9E37_79B9_7F4A_7C15)
        var order = Array(pairs.indices)
        rng.permute(&order)
        let chunk = batchSize * bucketBatches
        var batches: [[Int]] = []
        var i = 0
        while i < order.count {
            let sorted = order[i..<min(order.count, i + chunk)].sorted { (lengths[$0], $0) < (lengths[$1], $1) }
            var j = 0
            while j < sorted.count {
                batches.append(Array(sorted[j..<min(sorted.count, j + batchSize)]))
                j += batchSize
            }
            i += chunk
        }
        if batches.count > 1, let last = batches.last, last.count < batchSize { batches.removeLast() }
        rng.permute(&batches)
        return batches
    }

    /// The next batch and the position after it (blocks until the producer has it ready).
    public func next() throws(NpyError) -> (batch: PaddedBatch, next: LoaderPosition) {
        let clock = ContinuousClock()
        let start = clock.now
        items.wait()
        let waited = clock.now - start
        let item = queue.withLock { q -> (batch: Result<PaddedBatch, NpyError>, next: LoaderPosition)? in
            q.waited += waited
            return q.ready.isEmpty ? nil : q.ready.removeFirst()
        }
        guard let item else { throw NpyError(path: "<loader>", message: "was closed") }
        slots.signal()
        return (try item.batch.get(), item.next)
    }

    /// Total time spent in ``next()`` waiting for the producer.
    public var waitSeconds: Double {
        let d = queue.withLock { $0.waited }
        return Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Stops the producer (idempotent).
    public func close() {
        let first = queue.withLock { q -> Bool in
            defer { q.closed = true }
            return !q.closed
        }
        guard first else { return }
        slots.signal()
        items.signal()
    }

    private func produce(from start: LoaderPosition) {
        var position = start
        var batches = plan(epoch: position.epoch)
        if position.batch >= batches.count {
            position = LoaderPosition(epoch: position.epoch + 1, batch: 0)
            batches = plan(epoch: position.epoch)
        }
        while true {
            slots.wait()
            if queue.withLock({ $0.closed }) { return }
            var result: Result<PaddedBatch, NpyError>?
            for k in 0..<share.of {
                if k == share.rank {
                    let indices = batches[position.batch]
                    result = Result { () throws(NpyError) -> PaddedBatch in try self.load(indices) }
                }
                position.batch += 1
                // The position after the last batch of an epoch is the start of the next one.
                if position.batch >= batches.count {
                    position = LoaderPosition(epoch: position.epoch + 1, batch: 0)
                    batches = plan(epoch: position.epoch)
                }
            }
            guard let result else { return }
            let next = position
            queue.withLock { $0.ready.append((result, next)) }
            items.signal()
        }
    }

    /// Reads and pads the pairs of one batch.
    public func load(_ indices: [Int]) throws(NpyError) -> PaddedBatch {
        var texts: [[Int64]] = []
        var codes: [[Int64]] = []
        for i in indices {
            let t = try NpyArray.read(contentsOf: pairs[i].textIdsPath)
            let c = try NpyArray.read(contentsOf: pairs[i].codesPath)
            guard t.dtype != .float32, c.dtype != .float32 else {
                throw NpyError(path: t.dtype == .float32 ? pairs[i].textIdsPath : pairs[i].codesPath, message: "holds float32; text ids and codes must be integers (int32)")
            }
            guard !t.integers.isEmpty, !c.integers.isEmpty else {
                throw NpyError(path: t.integers.isEmpty ? pairs[i].textIdsPath : pairs[i].codesPath, message: "is empty")
            }
            texts.append(t.integers)
            codes.append(c.integers)
        }
        let maxText = texts.map(\.count).max() ?? 0
        let maxCode = codes.map(\.count).max() ?? 0
        func pad(_ rows: [[Int64]], to n: Int) -> [Int64] {
            var out = [Int64](repeating: 0, count: rows.count * n)
            for (r, row) in rows.enumerated() { for (k, v) in row.enumerated() { out[r * n + k] = v } }
            return out
        }
        var batch = PaddedBatch(ids: indices.map { pairs[$0].id }, textIds: pad(texts, to: maxText), textLengths: texts.map { Int64($0.count) },
                                maxTextLength: maxText, codeIds: pad(codes, to: maxCode), codeLengths: codes.map { Int64($0.count) },
                                maxCodeLength: maxCode)
        if conditions {
            var values: [Float] = []
            var shape: [Int] = []
            for i in indices {
                guard let path = pairs[i].conditionPath else { continue }  // excluded at init
                let a = try NpyArray.read(contentsOf: path)
                guard a.dtype == .float32, a.shape.count == 2, a.count > 0 else {
                    throw NpyError(path: path, message: "is a prompt condition, which must be a non-empty float32 [R, D] array; it is \(a.dtype.rawValue) \(a.shape)")
                }
                if shape.isEmpty { shape = a.shape } else if a.shape != shape {
                    throw NpyError(path: path, message: "has shape \(a.shape), but the other prompt conditions of its batch have \(shape) (they must all have one shape)")
                }
                values.append(contentsOf: a.floats)
            }
            batch.condition = values
            batch.conditionShape = shape
        }
        return batch
    }
}

/// A small, fast, seedable generator (SplitMix64): the same seed gives the same sequence on
/// every machine, which `SystemRandomNumberGenerator` does not.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// Fisher–Yates with this generator, spelled out so the order never depends on the
    /// standard library's shuffle algorithm.
    public mutating func permute<T>(_ a: inout [T]) {
        guard a.count > 1 else { return }
        for i in stride(from: a.count - 1, to: 0, by: -1) {
            let j = Int(next() % UInt64(i + 1))
            a.swapAt(i, j)
        }
    }
}
