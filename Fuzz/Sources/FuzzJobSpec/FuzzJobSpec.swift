import FuzzSupport
import JobSpecs
import Shared

/// Fuzzes ``JobSpecParser/parse(yaml:)`` (YAML, and JSON, which is YAML) with any UTF-8 text.
///
/// Beyond "does not crash": an accepted spec satisfies what the parser promises (a valid name,
/// at least one run, distinct run names, as many runs as the sweep's grid, one effective batch
/// across presets, presets at or above the floor); a refusal is a ``JobSpecError`` with a message
/// and, when it names a line, a line inside the document.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = FuzzInput.bytes(start, count)
    guard let text = String(validating: bytes, as: UTF8.self) else { return 0 }
    do {
        check(try JobSpecParser.parse(yaml: text))
    } catch {
        FuzzCheck.require(!error.message.isEmpty, "a JobSpecError without a message")
        // An upper bound on the lines the YAML scanner counts (it also breaks lines at \r, NEL, LS
        // and PS; \r\n counts twice here, which only loosens the bound).
        let breaks: Set<Unicode.Scalar> = ["\n", "\r", "\u{85}", "\u{2028}", "\u{2029}"]
        let lines = text.unicodeScalars.reduce(1) { $0 + (breaks.contains($1) ? 1 : 0) }
        if let line = error.line {
            // libyaml puts the end of the stream on the line after the last one (a line further
            // when the last line has no line break).
            FuzzCheck.require(line >= 1 && line <= lines + 1, "error at line \(line) of a \(lines)-line document: \(error)")
        }
        if let column = error.column { FuzzCheck.require(column >= 1, "error at column \(column): \(error)") }
    }
    return 0
}

func check(_ spec: JobSpec) {
    FuzzCheck.require(!spec.name.isEmpty && spec.name.allSatisfy { $0.isASCII }, "accepted name '\(spec.name)'")
    FuzzCheck.require(!spec.project.isEmpty, "accepted an empty project")
    let runs = spec.runs()
    FuzzCheck.require(!runs.isEmpty, "a spec with no runs")
    FuzzCheck.require(runs.count == (spec.sweep?.count ?? 1), "\(runs.count) runs for a grid of \(spec.sweep?.count ?? 1)")
    FuzzCheck.require(runs.count <= JobSpecParser.maximumSweepRuns, "\(runs.count) runs accepted")
    FuzzCheck.require(Set(runs.map(\.name)).count == runs.count, "two runs share a name")
    FuzzCheck.require(Set(spec.presets.map(\.batch.effectiveBatch)).count <= 1, "presets with different effective batches")
    for p in spec.presets {
        FuzzCheck.require(p.batch.batchSize >= spec.minimumBatchSize, "preset \(p.name) below min_batch_size")
    }
    FuzzCheck.require(spec.checkpointEvery >= 1 && spec.maxRetries >= 0, "bad checkpoint_every or max_retries")
    if spec.runner == .command { FuzzCheck.require(!spec.command.parts.isEmpty, "an empty command accepted") }
}

/// The executable's entry point (SwiftPM links `FuzzJobSpec_main` as `main`): runs libFuzzer on ``fuzz(_:_:)``.
@_cdecl("FuzzJobSpec_main")
public func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.run(argc, argv) { data, size in data.map { fuzz(UnsafeRawPointer($0), size) } ?? 0 }
}
