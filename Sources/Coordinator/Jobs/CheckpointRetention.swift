import Foundation
import GRDB
import JobSpecs
import Shared

/// Carries out a run's retention inside the store's transaction that changed its pins or scores:
/// reads the pins (``Store/retentionSnapshot(_:runId:)``), plans (``RetentionPlanner``), moves
/// W&B's `best` alias when the best pin changed (a `checkpoint_saved` event with `alias: best`,
/// which the W&B outbox logs as the same artifact version with `best`), and deletes the pins the
/// plan drops, each logged as a `retention` event.
///
/// A file that cannot be deleted (not visible from the coordinator) is reported in the event and
/// marked deleted anyway, so it is not retried forever; the file then needs deleting by hand.
enum CheckpointRetention {
    static func apply(_ db: Database, store: Store, runId: String, now: Date) throws {
        let snapshot = try store.retentionSnapshot(db, runId: runId)
        guard !snapshot.live.isEmpty else { return }
        let policy = snapshot.specText.flatMap { try? JobSpecParser.parse(yaml: $0) }?.retention
        let measure = RetentionPlanner.measure(policy)
        var values: [Int64: Double] = [:]
        for step in Set(snapshot.live.filter { $0.roles != ["resume"] }.map(\.step)) {
            // A CER-based measure of a set the ASR cannot read says nothing about the checkpoint
            // (`eval/asr_unreadable` = 1 at that step): it does not rank it.
            if CheckpointComparison.cerBased.contains(measure.key),
               try store.metricValue(db, runId: runId, key: "eval/asr_unreadable", at: step) == 1 { continue }
            if let v = try store.metricValue(db, runId: runId, key: measure.key, at: step) { values[step] = v }
        }
        let plan = RetentionPlanner.plan(live: snapshot.live, policy: policy, protectedPaths: snapshot.protectedPaths, values: values)
        if let best = plan.best, snapshot.bestPin != best.pin.path {
            try announceBest(db, store: store, runId: runId, best: best, measure: measure.key, now: now)
        }
        for deletion in plan.deletions {
            let pin = deletion.pin, reason = deletion.reason
            var message = "deleted pin \(pin.path) (step \(pin.step)): \(reason)"
            do {
                if FileManager.default.fileExists(atPath: pin.path) { try FileManager.default.removeItem(atPath: pin.path) }
            } catch {
                message = "could not delete pin \(pin.path) (step \(pin.step), \(reason)): \(error.localizedDescription); delete it by hand (is the checkpoint volume mounted on the coordinator?)"
            }
            try store.markPinDeleted(db, runId: runId, path: pin.path, reason: reason, now: now)
            let data: [String: JSONValue] = ["path": .string(pin.path), "step": .number(Double(pin.step)), "reason": .string(reason)]
            try Store.insertEvent(db, kind: "retention", message: message, data: jsonString(data) ?? "", runId: runId,
                                  wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
        }
    }

    /// Gives the pin W&B's `best` alias: records it on the run and logs the `checkpoint_saved`
    /// event (with `alias: best`) that the W&B outbox turns into the alias.
    static func announceBest(_ db: Database, store: Store, runId: String, best: RetentionPlanner.Best, measure: String, now: Date) throws {
        try store.setBestPin(db, runId: runId, path: best.pin.path)
        var data: [String: JSONValue] = [
            "step": .number(Double(best.pin.step)), "path": .string(best.pin.path), "kind": .string("pin"), "pinned": .bool(true),
            "full_state": .bool(best.pin.fullState), "roles": .array(best.pin.roles.map(JSONValue.string)), "alias": .string("best"),
            measure: .number(best.value),
        ]
        if let size = best.pin.size { data["size"] = .number(Double(size)) }
        if let sha = best.pin.sha256 { data["sha256"] = .string(sha) }
        try Store.insertEvent(db, kind: "checkpoint_saved", message: "best checkpoint by \(measure): \(best.pin.path) (step \(best.pin.step), \(best.value))",
                              data: jsonString(data) ?? "", runId: runId, wallTime: now.unixSeconds, receivedAt: now.unixSeconds)
    }
}
