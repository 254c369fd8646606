import FuzzSupport
import Shared

/// The manifest the fuzzed bytes stand for; relative audio paths resolve under its folder.
let manifest = ManifestSpec(path: "/fuzz/eval/test.jsonl", language: "ko")

/// Fuzzes ``EvalManifest/parse(_:spec:)`` (test manifests with `target_text` and
/// `target_audio_path`), then ``EvalManifest/subset(_:count:seed:)`` on what it read.
///
/// Beyond "does not crash": at most one utterance per non-blank line, distinct ids, audio paths
/// absolute and standardized, relative ones inside the manifest's folder; a subset is a prefix of
/// a larger one; a refusal is an ``EvalManifestError`` naming the file.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = FuzzInput.bytes(start, count)
    let utterances: [EvalUtterance]
    do { utterances = try EvalManifest.parse(bytes, spec: manifest) } catch {
        FuzzCheck.require(error.message.contains(manifest.path), "an EvalManifestError not naming the file: \(error)")
        return 0
    }
    FuzzCheck.require(!utterances.isEmpty, "an accepted manifest without utterances")
    FuzzCheck.require(utterances.count <= JSONLines.recordLines(bytes), "\(utterances.count) utterances from \(JSONLines.recordLines(bytes)) lines")
    FuzzCheck.require(Set(utterances.map(\.id)).count == utterances.count, "duplicate ids kept")
    for u in utterances {
        for p in [u.referenceAudio, u.promptAudio].compactMap({ $0 }) {
            FuzzCheck.require(JSONLines.isStandardAbsolute(p), "audio path '\(p)'")
        }
    }
    let small = EvalManifest.subset(utterances, count: 2, seed: "fuzz")
    let large = EvalManifest.subset(utterances, count: 5, seed: "fuzz")
    FuzzCheck.require(small.count == min(2, utterances.count) && large.count == min(5, utterances.count), "subset sizes")
    FuzzCheck.require(large.prefix(small.count).map(\.id) == small.map(\.id), "a smaller subset is not a prefix of a larger one")
    return 0
}

/// The executable's entry point (SwiftPM links `FuzzEvalManifest_main` as `main`): runs libFuzzer on ``fuzz(_:_:)``.
@_cdecl("FuzzEvalManifest_main")
public func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.run(argc, argv) { data, size in data.map { fuzz(UnsafeRawPointer($0), size) } ?? 0 }
}
