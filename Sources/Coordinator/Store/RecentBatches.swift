import Foundation
import Synchronization

/// The metric batches this store committed last, decoded, by `metric_batches.id`: what the
/// consumers of the ingest log (the alert rules, the series summaries, W&B delivery) read right
/// after ingest stored it, without reading the blob back from SQLite and decoding it again.
///
/// The database stays the truth: a batch is put here only after its transaction committed, a
/// reader that misses (a batch older than the bound, written by another process, or one whose
/// commit is not yet announced) reads the row as before, and a hit is checked against the row's
/// `first_seq`, which the reader has in hand. Stored batches are never rewritten or deleted, so
/// an id names the same batch for good.
///
/// Bounded by points (about 28 bytes each decoded) and by age, so a quiet coordinator holds
/// little and a saturated one at most ``pointLimit`` points.
struct RecentBatches: Sendable {
    struct Entry: Sendable {
        var id: Int64
        var firstSeq: Int64
        var batch: PointBatch
        var storedAt: Double
    }

    /// The most points held (2 M: about 56 MB decoded, some 0.7 s of ingest at saturation).
    static let pointLimit = 2_000_000
    /// Batches older than this are dropped at the next insert (seconds).
    static let maxAge: Double = 10

    private var entries: [Int64: Entry] = [:]
    /// Ids in insertion order (ascending: ids grow with each commit), oldest first.
    private var order: [Int64] = []
    private var head = 0
    private var points = 0
    private(set) var hits = 0
    private(set) var misses = 0

    /// Remembers batches that were just committed.
    mutating func insert(_ committed: [Entry]) {
        for e in committed where entries[e.id] == nil {
            entries[e.id] = e
            order.append(e.id)
            points += e.batch.count
        }
        let now = committed.last?.storedAt ?? 0
        while head < order.count, points > Self.pointLimit || (entries[order[head]]?.storedAt ?? 0) < now - Self.maxAge {
            if let gone = entries.removeValue(forKey: order[head]) { points -= gone.batch.count }
            head += 1
        }
        if head > 1_024, head * 2 > order.count {
            order.removeFirst(head)
            head = 0
        }
    }

    /// The decoded batch with this id and first ingest sequence, if it is held.
    mutating func batch(id: Int64, firstSeq: Int64?) -> PointBatch? {
        if let e = entries[id], firstSeq == nil || e.firstSeq == firstSeq {
            hits += 1
            return e.batch
        }
        misses += 1
        return nil
    }

    /// Points held now.
    var heldPoints: Int { points }
}

extension Mutex where Value == RecentBatches {
    /// The held batch, or `load()`'s (the row read and decoded) on a miss.
    func batch(id: Int64, firstSeq: Int64?, orLoad load: () throws -> PointBatch?) rethrows -> PointBatch? {
        if let b = withLock({ $0.batch(id: id, firstSeq: firstSeq) }) { return b }
        return try load()
    }
}
