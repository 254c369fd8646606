import FuzzSupport
import Shared
import Worker

/// The manifest the fuzzed bytes stand for; relative feature paths resolve under its folder.
let manifest = ManifestSpec(path: "/fuzz/data/gpt_pairs_train.jsonl", language: "ko")

/// Fuzzes ``PairManifest/parse(_:spec:)`` (the trainer's pair manifests, JSON Lines).
///
/// Beyond "does not crash": an accepted manifest gives one pair per non-blank line, each with
/// non-empty, absolute, standardized feature paths and non-negative lengths; a refusal is a
/// ``ManifestError`` naming the file and, when it names a line, a line of the input.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = FuzzInput.bytes(start, count)
    let pairs: [TrainingPair]
    do { pairs = try PairManifest.parse(bytes, spec: manifest) } catch {
        FuzzCheck.require(error.path == manifest.path && !error.message.isEmpty, "a ManifestError without path or message")
        if let line = error.line {
            FuzzCheck.require(line >= 1 && line <= JSONLines.lineCount(bytes), "error at line \(line) of \(JSONLines.lineCount(bytes))")
        }
        return 0
    }
    FuzzCheck.require(!pairs.isEmpty, "an accepted manifest without pairs")
    FuzzCheck.require(pairs.count == JSONLines.recordLines(bytes), "\(pairs.count) pairs from \(JSONLines.recordLines(bytes)) lines")
    for p in pairs {
        FuzzCheck.require(JSONLines.isStandardAbsolute(p.textIdsPath), "text ids path '\(p.textIdsPath)'")
        FuzzCheck.require(JSONLines.isStandardAbsolute(p.codesPath), "codes path '\(p.codesPath)'")
        FuzzCheck.require((p.textLength ?? 0) >= 0 && (p.codeLength ?? 0) >= 0, "negative length in \(p)")
        FuzzCheck.require(p.language == "ko", "pair without the manifest's language")
    }
    return 0
}

/// The executable's entry point (SwiftPM links `FuzzPairManifest_main` as `main`): runs libFuzzer on ``fuzz(_:_:)``.
@_cdecl("FuzzPairManifest_main")
public func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.run(argc, argv) { data, size in data.map { fuzz(UnsafeRawPointer($0), size) } ?? 0 }
}
