import Testing
@testable import Coordinator
@testable import Shared

@Suite("History rows for W&B")
struct HistoryBuilderTests {
    typealias P = HistoryBuilder.Point
    var seq: Int64 = 0

    mutating func pts(_ step: Int64, _ keys: [String], wall: Double = 100) -> [P] {
        keys.map { k in
            seq += 1
            return P(seq: seq, step: step, key: k, value: Double(step), wallTime: wall + Double(step))
        }
    }

    @Test("a step's row is emitted when a later step arrives; the open step waits")
    mutating func closing() {
        let points = pts(0, ["a", "b"]) + pts(1, ["a", "b"]) + pts(2, ["a"])
        let out = HistoryBuilder.build(points: points, lastStep: nil, final: false, startTime: 100)
        #expect(out.rows.map(\.step) == [0, 1])
        #expect(out.rows[0].values.map(\.key) == ["a", "b"])
        #expect(out.cursor == 4, "points up to the last of step 1 are covered")
        #expect(out.lastStep == 1)
        #expect(out.rows[1].runtime == 1)
    }

    @Test("the same points after the cursor always give the same rows (crash replay)")
    mutating func deterministic() {
        let points = pts(0, ["a"]) + pts(1, ["a"]) + pts(2, ["a"]) + pts(3, ["a"])
        let a = HistoryBuilder.build(points: points, lastStep: nil, final: false, startTime: 0)
        let b = HistoryBuilder.build(points: points, lastStep: nil, final: false, startTime: 0)
        #expect(a == b)
        // Continuing from the cursor yields the rest without repeating anything.
        let rest = HistoryBuilder.build(points: points.filter { $0.seq > a.cursor! }, lastStep: a.lastStep, final: true, startTime: 0)
        #expect(a.rows.map(\.step) + rest.rows.map(\.step) == [0, 1, 2, 3])
    }

    @Test("a late point never rewinds _step: it joins the next row with its step as a value")
    mutating func latePoint() {
        var points = pts(5000, ["train/text_loss"]) + pts(5400, ["train/text_loss"])
        points += [P(seq: 100, step: 5000, key: "eval/cer", value: 0.12, wallTime: 6000)]
        points += pts(5401, ["train/text_loss"])
        let out = HistoryBuilder.build(points: points, lastStep: nil, final: false, startTime: 0)
        #expect(out.rows.map(\.step) == [5000, 5400])
        let row = out.rows[1]
        #expect(row.values.first { $0.key == "eval/cer" }?.value == .number(0.12))
        #expect(row.values.first { $0.key == "eval/step" }?.value == .integer(5000))
        #expect(out.rows.map(\.step) == out.rows.map(\.step).sorted())
    }

    @Test("late points for delivered steps wait for the next row; at the end they get one row past the last step")
    mutating func lateAfterEnd() {
        let waiting = HistoryBuilder.build(points: [P(seq: 9, step: 10, key: "eval/cer", value: 0.2, wallTime: 1)], lastStep: 20, final: false, startTime: 0)
        #expect(waiting.rows.isEmpty)
        #expect(waiting.cursor == nil)
        let end = HistoryBuilder.build(points: [P(seq: 9, step: 10, key: "eval/cer", value: 0.2, wallTime: 1)], lastStep: 20, final: true, startTime: 0)
        #expect(end.rows.map(\.step) == [21])
        #expect(end.rows[0].values.map(\.key) == ["eval/cer", "eval/step"])
        #expect(end.cursor == 9)
    }

    @Test("NaN is carried into the row")
    func nan() {
        let out = HistoryBuilder.build(points: [P(seq: 1, step: 0, key: "train/text_loss", value: .nan, wallTime: 0)], lastStep: nil, final: true, startTime: 0)
        guard case .number(let v) = out.rows[0].values[0].value else { Issue.record("not a number"); return }
        #expect(v.isNaN)
        #expect(out.rows[0].jsonLine.contains("\"train/text_loss\":NaN"))
    }

    @Test("step keys for late values")
    func stepKeys() {
        #expect(HistoryBuilder.stepKey(for: "eval/cer") == "eval/step")
        #expect(HistoryBuilder.stepKey(for: "val/a/b") == "val/a/step")
        #expect(HistoryBuilder.stepKey(for: "cer") == "cer_step")
    }
}
