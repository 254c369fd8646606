/// Compares a short smoothed value (an EMA) with a baseline (the rolling median of a longer
/// window) and debounces the result: `loss_spike` (smoothed > threshold × baseline) and
/// `accuracy_collapse` (smoothed < fraction × baseline).
///
/// The EMA absorbs step-to-step noise, the median ignores the spike itself and lags a slow
/// trend by only half its window, and the hysteresis needs K consecutive points to fire and a
/// longer quiet hold to resolve.
struct BaselineDeviationDetector: Sendable {
    enum Direction: Sendable { case above, below }

    let direction: Direction
    let factor: Double
    let alpha: Double
    let warmup: Int
    private(set) var ema = Double.nan
    private var baseline: SortedWindow
    private var hysteresis: AlertHysteresis
    /// Smoothed / baseline at the last evaluated point.
    private(set) var ratio = Double.nan
    /// The baseline at the last evaluated point.
    private(set) var lastBaseline = Double.nan
    /// The most extreme ratio since the alert fired.
    private(set) var peakRatio = Double.nan

    init(direction: Direction, factor: Double, smoothingPoints: Int, baselinePoints: Int, warmupPoints: Int,
         consecutivePoints: Int, resolvePoints: Int) {
        self.direction = direction
        self.factor = factor
        alpha = 2.0 / (Double(max(1, smoothingPoints)) + 1.0)
        warmup = max(1, min(warmupPoints, min(baselinePoints, 4096)))
        baseline = SortedWindow(capacity: min(max(1, baselinePoints), 4096))
        hysteresis = AlertHysteresis(fireAfter: consecutivePoints, resolveAfter: resolvePoints)
    }

    var isFiring: Bool { hysteresis.isFiring }
    var baselineMedian: Double { baseline.median }

    /// Feeds one finite value; returns a transition when the alert fires or resolves.
    mutating func update(_ x: Double) -> AlertHysteresis.Transition? {
        ema = ema.isNaN ? x : ema + alpha * (x - ema)
        var transition: AlertHysteresis.Transition?
        if baseline.count >= warmup {
            let median = baseline.median
            lastBaseline = median
            // A ratio is meaningful only against a positive baseline (losses, accuracies).
            ratio = median > 0 ? ema / median : .nan
            let condition: Bool
            switch direction {
            case .above: condition = ratio > factor
            case .below: condition = ratio < factor
            }
            transition = hysteresis.update(condition)
            if transition == .fire || (isFiring && extreme(ratio)) { peakRatio = ratio }
        }
        baseline.push(x)
        return transition
    }

    private func extreme(_ r: Double) -> Bool {
        switch direction {
        case .above: r > peakRatio
        case .below: r < peakRatio
        }
    }

    /// Forgets the alert state (after the caller resolved it for another reason).
    mutating func resetAlert() { hysteresis.reset() }
}
