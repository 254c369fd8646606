/// Debouncing of a boolean condition into fire/resolve transitions: it fires after `fireAfter`
/// consecutive true observations and resolves only after `resolveAfter` consecutive false ones.
/// A series flapping around its threshold therefore fires once and stays firing until it has
/// been quiet for the whole resolve hold, instead of firing and resolving at every crossing.
struct AlertHysteresis: Sendable {
    enum Transition: Sendable, Equatable { case fire, resolve }

    let fireAfter: Int
    let resolveAfter: Int
    private(set) var isFiring = false
    /// Consecutive observations that contradict the current state.
    private var streak = 0

    init(fireAfter: Int, resolveAfter: Int) {
        self.fireAfter = max(1, fireAfter)
        self.resolveAfter = max(1, resolveAfter)
    }

    mutating func update(_ condition: Bool) -> Transition? {
        if condition == isFiring {
            streak = 0
            return nil
        }
        streak += 1
        if isFiring {
            guard streak >= resolveAfter else { return nil }
            isFiring = false
            streak = 0
            return .resolve
        }
        guard streak >= fireAfter else { return nil }
        isFiring = true
        streak = 0
        return .fire
    }

    /// Forgets the state without a transition (the caller emits a resolve itself if needed).
    mutating func reset() {
        isFiring = false
        streak = 0
    }
}
