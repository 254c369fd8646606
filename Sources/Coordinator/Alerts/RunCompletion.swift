/// What the coordinator knows about a finished run, for the `run_completed` notice. Fields
/// left nil or empty are filled from what the engine saw of the run (final and best values
/// of its watched losses, best CER).
public struct RunCompletion: Sendable, Equatable {
    public var runId: String
    public var worker: String?
    /// Wall-clock duration of the run in seconds.
    public var durationSeconds: Double?
    /// The last checkpoint (path or artifact name).
    public var checkpoint: String?
    /// Final value of each loss, in display order.
    public var finalLosses: [AlertSignal.Value]
    /// Best (lowest) value of each loss.
    public var bestLosses: [AlertSignal.Value]
    public var bestCER: Double?
    public var finalStep: Int64?

    public init(runId: String, worker: String? = nil, durationSeconds: Double? = nil, checkpoint: String? = nil,
                finalLosses: [AlertSignal.Value] = [], bestLosses: [AlertSignal.Value] = [], bestCER: Double? = nil,
                finalStep: Int64? = nil) {
        self.runId = runId
        self.worker = worker
        self.durationSeconds = durationSeconds
        self.checkpoint = checkpoint
        self.finalLosses = finalLosses
        self.bestLosses = bestLosses
        self.bestCER = bestCER
        self.finalStep = finalStep
    }
}
