/// Best CER of a run and whether the last evaluation regressed from it, for `eval_regression`.
struct EvalRegressionTracker: Sendable {
    private(set) var best = Double.nan
    private(set) var bestStep: Int64?
    private(set) var last = Double.nan
    private(set) var lastStep: Int64?
    private(set) var isFiring = false

    enum Outcome: Sendable, Equatable { case none, fire, resolve }

    /// The CER above which an evaluation counts as a regression.
    func limit(_ configuration: AlertRulesConfiguration.EvalRegression) -> Double {
        best + max(configuration.absoluteMargin, configuration.relativeMargin * best)
    }

    /// Records one evaluation. Non-finite CERs are ignored (they are `non_finite`'s business).
    mutating func record(cer: Double, step: Int64?, _ configuration: AlertRulesConfiguration.EvalRegression) -> Outcome {
        guard cer.isFinite else { return .none }
        last = cer
        lastStep = step
        if best.isNaN || cer < best {
            best = cer
            bestStep = step
            if isFiring { isFiring = false; return .resolve }
            return .none
        }
        let regressed = cer > limit(configuration)
        if regressed && !isFiring { isFiring = true; return .fire }
        if !regressed && isFiring { isFiring = false; return .resolve }
        return .none
    }

    mutating func resetAlert() { isFiring = false }
}
