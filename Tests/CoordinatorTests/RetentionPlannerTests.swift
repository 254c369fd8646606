import JobSpecs
import Testing

@testable import Coordinator

@Suite("Retention planner")
struct RetentionPlannerTests {
    static func pin(_ step: Int64, full: Bool = true, roles: [String] = ["checkpoint"], path: String? = nil) -> PinRecord {
        PinRecord(runId: "r", step: step, path: path ?? "/pins/step\(step)\(full ? "" : "-light")", fullState: full, roles: roles, createdAt: 0)
    }

    @Test("without keep: only a resume-only pin superseded by a newer full-state pin is deleted")
    func noPolicyDeletesSupersededResumePoints() {
        let live = [Self.pin(100, roles: ["resume"]), Self.pin(200), Self.pin(300, roles: ["resume"])]
        let plan = RetentionPlanner.plan(live: live, policy: nil, protectedPaths: [], values: [:])
        #expect(plan.deletions == [.init(pin: live[0], reason: "a resume point superseded by the full-state pin at step 300")])
        #expect(plan.best == nil)
    }

    @Test("last: N keeps the newest N steps; protected paths survive; the reason names the policy")
    func lastKeepsNewest() {
        let live = [Self.pin(100), Self.pin(200), Self.pin(300), Self.pin(400)]
        let plan = RetentionPlanner.plan(live: live, policy: RetentionPolicy(last: 2, best: nil), protectedPaths: [live[0].path], values: [:])
        #expect(plan.deletions == [.init(pin: live[1], reason: "not among the newest 2")])
    }

    @Test("best: K by a measure keeps the K best steps (ties: the older), steps without a value rank last")
    func bestKeepsBestScored() {
        let live = [Self.pin(100), Self.pin(200), Self.pin(300), Self.pin(400)]
        let values: [Int64: Double] = [100: 0.30, 200: 0.10, 300: 0.10]
        let plan = RetentionPlanner.plan(live: live, policy: RetentionPolicy(last: nil, best: 2, measure: "eval/cer"), protectedPaths: [], values: values)
        let why = "not among the best 2 by eval/cer"
        #expect(plan.deletions == [.init(pin: live[0], reason: why), .init(pin: live[3], reason: why)])
        #expect(plan.best == .init(pin: live[1], value: 0.10), "the older of equal values")
    }

    @Test("a measure where larger is better ranks the other way; last and best together keep the union")
    func higherIsBetterAndUnion() {
        let live = [Self.pin(100), Self.pin(200), Self.pin(300)]
        let values: [Int64: Double] = [100: 0.9, 200: 0.5, 300: 0.7]
        let plan = RetentionPlanner.plan(live: live, policy: RetentionPolicy(last: 1, best: 1, measure: "eval/sim"), protectedPaths: [], values: values)
        #expect(plan.deletions == [.init(pin: live[1], reason: "not among the newest 1 nor the best 1 by eval/sim")])
        #expect(plan.best?.pin == live[0])
    }

    @Test("the best pin: resume-only pins do not compete; at an equal value a full-state pin wins over a light one of its step")
    func bestPrefersFullStateAtEqualValue() {
        let light = Self.pin(200, full: false), full = Self.pin(200, full: true)
        let plan = RetentionPlanner.plan(live: [Self.pin(100, roles: ["resume"]), light, full], policy: nil, protectedPaths: [],
                                         values: [100: 0.01, 200: 0.5])
        #expect(plan.best == .init(pin: full, value: 0.5))
        #expect(RetentionPlanner.measure(nil).key == "val/text_loss" && !RetentionPlanner.measure(nil).higherIsBetter)
    }
}
