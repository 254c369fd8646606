import Foundation
import GRDB
import Shared

/// A request that changes durable state and is deduplicated by `(session, sequence)`. (Metrics
/// travel as spool entries and are deduplicated by spool sequence instead: see
/// ``Store/ingestSpool(workerId:entries:now:)``.)
public enum DurableRequest: Sendable {
    case event(EventRequest)
    case result(ResultRequest)
}

/// The effect of storing a durable request.
public struct IngestOutcome: Sendable {
    /// What to send back (identical for a retried duplicate).
    public var ack: Ack
    public var duplicate: Bool
    /// Set when an event moved a shard from leased to running.
    public var started: ShardRef?
    /// Set when a result was applied.
    public var disposition: ResultDisposition?
}

extension Store {
    /// Stores a durable request exactly once: the high-water mark of the session advances in the
    /// same transaction that stores the data, and a retry of an already stored request gets the
    /// same answer without storing anything again.
    /// - Throws: ``ProtocolError`` `unknownSession` when the session is not this worker's.
    public func ingest(workerId: String, session: UInt64, sequence: UInt64, _ request: DurableRequest, now: Date = Date()) throws -> IngestOutcome {
        try write { db in
            guard let s = try Row.fetchOne(db, sql: "SELECT worker_id, high_water, last_reply FROM sessions WHERE session = ?", arguments: [Int64(bitPattern: session)]),
                  (s["worker_id"] as String) == workerId else {
                throw ProtocolError(.unknownSession, "unknown session for worker \(workerId); register again")
            }
            let highWater = UInt64(bitPattern: s["high_water"] as Int64)
            if sequence <= highWater {
                if sequence == highWater, let data = s["last_reply"] as Data?, let ack = try? Ack.decode(Array(data)) {
                    return IngestOutcome(ack: ack, duplicate: true)
                }
                return IngestOutcome(ack: Ack(highestSequence: highWater, accepted: true, note: "duplicate"), duplicate: true)
            }
            var outcome = IngestOutcome(ack: Ack(highestSequence: sequence), duplicate: false)
            switch request {
            case .event(let e):
                try Self.recordWorkerEvent(db, workerId: workerId, e, now: now.unixSeconds)
                if e.kind == .shardStarted, let ref = e.shard {
                    if try markStarted(db, workerId: workerId, ref: ref, now: now) {
                        outcome.started = ref
                    } else {
                        outcome.ack.accepted = false
                        outcome.ack.note = "stale lease: shard \(ref.shardId) epoch \(ref.leaseEpoch) is not leased to this worker"
                    }
                }
            case .result(let r):
                let d = try applyResult(db, workerId: workerId, result: r, now: now)
                let detail: [String: JSONValue] = ["accepted": .bool(d.accepted), "requeued": .bool(d.requeued),
                                                   "finished_run": d.finishedRun.map(JSONValue.string) ?? .null, "note": .string(d.note)]
                try Self.appendLog(db, .result, runId: try String.fetchOne(db, sql: "SELECT run_id FROM shards WHERE id = ?", arguments: [r.shard.shardId]),
                                   workerId: workerId, data: r.wireBytes(), detail: jsonString(detail), at: now.unixSeconds)
                outcome.disposition = d
                outcome.ack.accepted = d.accepted
                outcome.ack.note = d.note
            }
            try db.execute(sql: "UPDATE sessions SET high_water = ?, last_reply = ? WHERE session = ?",
                           arguments: [Int64(bitPattern: sequence), Data(outcome.ack.wireBytes()), Int64(bitPattern: session)])
            return outcome
        }
    }
}
