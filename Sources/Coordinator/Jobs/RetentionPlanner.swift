import JobSpecs

/// Decides which of a run's pins retention deletes and which pin deserves W&B's `best` alias,
/// from the pins, the spec's `keep:` policy and the measure's values at the pins' steps. Pure:
/// ``CheckpointRetention`` gathers the inputs from the store and carries the plan out.
///
/// Never deleted: a protected pin (one a queued or running evaluation reads, the run's resume
/// points), and without `keep:` anything but a superseded resume-only pin.
/// - `last: N` keeps the pins of the newest N steps;
/// - `best: K, by: M` keeps the pins of the K best steps by metric M logged at the pin's step
///   (ties: the older step); steps without a value rank last (a pending evaluation keeps its pin
///   anyway);
/// - a pin kept only as a resume point (`roles: [resume]`) is deleted once a newer full-state
///   pin exists (the resume starts from the newest).
enum RetentionPlanner {
    /// The measure that picks the `best` pin when the spec has no `keep:`.
    static let defaultMeasure = "val/text_loss"

    /// A pin to delete, and why (in words, for the run's log).
    struct Deletion: Sendable, Equatable {
        var pin: PinRecord
        var reason: String
    }

    /// The best pin by the measure, with its value.
    struct Best: Sendable, Equatable {
        var pin: PinRecord
        var value: Double
    }

    /// What retention does for a run.
    struct Plan: Sendable, Equatable {
        /// The best pin (nil: no pin step has a value of the measure).
        var best: Best?
        /// Pins to delete, in the order of `live`.
        var deletions: [Deletion]
    }

    /// The measure that ranks pins and whether larger is better.
    static func measure(_ policy: RetentionPolicy?) -> (key: String, higherIsBetter: Bool) {
        (policy?.measure ?? defaultMeasure, policy?.higherIsBetter ?? false)
    }

    /// Plans retention.
    /// - Parameters:
    ///   - live: the pins not yet deleted, oldest step first.
    ///   - policy: the spec's `keep:` (nil: none).
    ///   - protectedPaths: paths never deleted.
    ///   - values: the measure (``measure(_:)``) at each step of a pin that is not resume-only;
    ///     a step without a (finite) value is absent.
    static func plan(live: [PinRecord], policy: RetentionPolicy?, protectedPaths: Set<String>, values: [Int64: Double]) -> Plan {
        guard !live.isEmpty else { return Plan(best: nil, deletions: []) }
        let newestFullStep = live.filter(\.fullState).map(\.step).max()
        var keepSteps = Set(live.map(\.step))
        var reasonFor: [Int64: String] = [:]
        if let policy {
            let steps = Array(Set(live.filter { $0.roles != ["resume"] }.map(\.step))).sorted()
            var keep: Set<Int64> = []
            if let n = policy.last { keep.formUnion(steps.suffix(n)) }
            if let k = policy.best, k > 0 {
                let scored = steps.map { ($0, values[$0]) }
                let ranked = scored.filter { $0.1 != nil }.sorted { a, b in
                    policy.higherIsBetter ? (a.1!, b.0) > (b.1!, a.0) : (a.1!, a.0) < (b.1!, b.0)
                }
                keep.formUnion(ranked.prefix(k).map(\.0))
            }
            keepSteps = keep
            let lastText = policy.last.map { "the newest \($0)" }
            let bestText = (policy.best ?? 0) > 0 ? "the best \(policy.best!) by \(policy.measure)" : nil
            let why = "not among " + [lastText, bestText].compactMap { $0 }.joined(separator: " nor ")
            for s in steps where !keep.contains(s) { reasonFor[s] = why }
        }
        var deletions: [Deletion] = []
        for pin in live {
            let resumeOnly = pin.roles == ["resume"]
            var reason: String?
            if resumeOnly {
                if let newest = newestFullStep, pin.step < newest { reason = "a resume point superseded by the full-state pin at step \(newest)" }
            } else if !keepSteps.contains(pin.step) {
                reason = reasonFor[pin.step]
            }
            guard let reason, !protectedPaths.contains(pin.path) else { continue }
            deletions.append(Deletion(pin: pin, reason: reason))
        }
        return Plan(best: best(live: live, higherIsBetter: measure(policy).higherIsBetter, values: values), deletions: deletions)
    }

    /// The best pin by the measure: pins kept only as resume points do not compete; at equal
    /// values (smaller is better) a full-state pin wins over a light one of the same step.
    static func best(live: [PinRecord], higherIsBetter: Bool, values: [Int64: Double]) -> Best? {
        var best: Best?
        for pin in live where pin.roles != ["resume"] {
            guard let v = values[pin.step] else { continue }
            let better = best.map { b in
                higherIsBetter ? v > b.value : v < b.value || (v == b.value && pin.fullState && !b.pin.fullState && pin.step == b.pin.step)
            } ?? true
            if better { best = Best(pin: pin, value: v) }
        }
        return best
    }
}
