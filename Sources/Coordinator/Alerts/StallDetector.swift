/// Step progress of one run, for `stalled`: a live worker (recent heartbeat) whose step has
/// not advanced for max(K × median step time, floor).
///
/// Two clocks: step times come from the trainer's wall times (points) or from heartbeat
/// arrival times; "not advanced for" is measured on the engine clock (`now`).
struct StallDetector: Sendable {
    private(set) var lastStep: Int64 = .min
    private var lastStepWallTime = Double.nan
    /// Engine time of the last progress (or of the shard start).
    private(set) var lastProgressAt = Double.nan
    private(set) var lastHeartbeatAt = Double.nan
    /// Seconds per step, recent samples.
    private var stepTimes = SortedWindow(capacity: 64)
    private(set) var isFiring = false

    var medianStepTime: Double { stepTimes.median }

    /// A metric point: the step advanced if it is past the last one. Returns true when this
    /// progress ends a firing stall.
    @inline(__always)
    mutating func observePoint(step: Int64, wallTime: Double, now: Double) -> Bool {
        guard step > lastStep else { return false }
        if lastStep != .min, wallTime.isFinite, lastStepWallTime.isFinite, wallTime > lastStepWallTime {
            stepTimes.push((wallTime - lastStepWallTime) / Double(step - lastStep))
        }
        lastStep = step
        lastStepWallTime = wallTime
        return progressed(now: now)
    }

    /// A heartbeat, with the shard's current step when it reports one. A step below the last
    /// one is a resume from a checkpoint: progress too. Returns true when this ends a firing stall.
    mutating func observeHeartbeat(step: Int64?, now: Double) -> Bool {
        lastHeartbeatAt = now
        if lastProgressAt.isNaN { lastProgressAt = now }
        guard let step, step != lastStep else { return false }
        if lastStep != .min, step > lastStep, lastProgressAt.isFinite, now > lastProgressAt {
            stepTimes.push((now - lastProgressAt) / Double(step - lastStep))
        }
        lastStep = step
        lastStepWallTime = .nan
        return progressed(now: now)
    }

    /// A shard (re)started at `step`: the stall clock starts over. Returns true if a stall was firing.
    mutating func restart(step: Int64?, now: Double) -> Bool {
        if let step { lastStep = step }
        lastStepWallTime = .nan
        lastHeartbeatAt = now
        return progressed(now: now)
    }

    /// The worker is gone: heartbeats are no longer fresh. Returns true if a stall was firing.
    mutating func workerGone() -> Bool {
        lastHeartbeatAt = .nan
        defer { isFiring = false }
        return isFiring
    }

    private mutating func progressed(now: Double) -> Bool {
        lastProgressAt = now
        defer { isFiring = false }
        return isFiring
    }

    /// The stall limit in seconds under `configuration`.
    func limit(_ configuration: AlertRulesConfiguration.Stalled) -> Double {
        let median = stepTimes.median
        return median.isFinite ? max(configuration.stepTimeMultiple * median, configuration.floorSeconds) : configuration.floorSeconds
    }

    /// True when the stall starts now (the caller emits the fire).
    mutating func check(now: Double, _ configuration: AlertRulesConfiguration.Stalled) -> Bool {
        guard !isFiring, lastHeartbeatAt.isFinite, lastProgressAt.isFinite,
              now - lastHeartbeatAt <= configuration.heartbeatFreshSeconds,
              now - lastProgressAt > limit(configuration) else { return false }
        isFiring = true
        return true
    }
}
