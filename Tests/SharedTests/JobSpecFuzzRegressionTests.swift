import Foundation
@testable import JobSpecs
@testable import Shared
import Testing

/// Job specs that crashed the parser (found while fuzzing it, `scripts/fuzz.sh`): a spec is
/// untrusted input to the coordinator's API, so a trap there stopped the coordinator. Each is
/// also under `Fuzz/Corpus/FuzzJobSpec/regressions/`, which every fuzzing run replays.
@Suite("Fuzz regressions: job specs")
struct JobSpecFuzzRegressionTests {
    static let regressions = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus/FuzzJobSpec/regressions")

    /// regressions/preset-effective-batch-overflow.yaml: `batch_size × grad_accum` trapped.
    @Test("a preset whose effective batch overflows is refused naming its grad_accum")
    func presetOverflow() throws {
        let yaml = "name: ko\nproject: p\ncommand: x\npresets:\n  a: {batch_size: 4611686018427387904, grad_accum: 4}\n"
        #expect(try String(contentsOf: Self.regressions.appendingPathComponent("preset-effective-batch-overflow.yaml"), encoding: .utf8) == yaml)
        do {
            _ = try JobSpecParser.parse(yaml: yaml)
            Issue.record("accepted")
        } catch {
            #expect(error.field == "presets.a.grad_accum" && error.line == 5 && error.message.contains("too large"))
        }
    }

    @Test("a top-level batch whose effective batch overflows is refused")
    func topLevelOverflow() {
        let yaml = "name: ko\nproject: p\ncommand: x {batch_size}\nbatch_size: 4611686018427387904\ngrad_accum: 2\n"
        #expect(throws: JobSpecError.self) { try JobSpecParser.parse(yaml: yaml) }
    }

    /// Found by ``JobSpecPropertyTests``: a control character (a reader error in libyaml) and a
    /// key written twice were refused without saying where.
    @Test("a control character and a duplicated key are refused naming their line")
    func located() {
        do {
            _ = try JobSpecParser.parse(yaml: "name: ko\nproject: p\ncommand: x \u{1}y\n")
            Issue.record("accepted")
        } catch {
            #expect(error.line == 3 && error.column == 12 && error.message.contains("control characters"), "\(error)")
        }
        do {
            _ = try JobSpecParser.parse(yaml: "name: ko\nproject: p\ncommand: x\nproject: q\n")
            Issue.record("accepted")
        } catch {
            #expect(error.field == "project" && error.line != nil, "\(error)")
        }
    }

    /// regressions/sweep-grid-count-overflow.yaml: 64 axes of 2 values; the run count (2⁶⁴)
    /// overflowed `Int` while it was being checked against the limit.
    @Test("a sweep grid whose run count overflows is refused as too many runs")
    func sweepOverflow() throws {
        let yaml = try String(contentsOf: Self.regressions.appendingPathComponent("sweep-grid-count-overflow.yaml"), encoding: .utf8)
        do {
            _ = try JobSpecParser.parse(yaml: yaml)
            Issue.record("accepted")
        } catch {
            #expect(error.field == "sweep.grid" && error.message.contains("at most \(JobSpecParser.maximumSweepRuns)"))
        }
        let grid = SweepGrid(axes: (0..<64).map { SweepGrid.Axis(name: "a\($0)", values: [.init("1"), .init("2")]) })
        #expect(grid.count == .max)
        #expect(SweepGrid(axes: Array(grid.axes.prefix(10))).count == 1024)
    }
}
