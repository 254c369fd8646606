import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The Vosk C library (`libvosk.so`, shipped inside the `vosk` PyPI wheel), loaded with `dlopen` at
/// run time so that the worker neither links against it nor needs it unless it evaluates. Vosk ships
/// no header; the few functions used are declared here with the signatures of `vosk_api.h`
/// (vosk 0.3.45).
///
/// The library is never unloaded (`dlclose` is not called): models and recognizers may outlive any
/// one owner, and the handle costs nothing to keep.
public final class VoskLibrary: Sendable {
    typealias SetLogLevel = @convention(c) (Int32) -> Void
    typealias ModelNew = @convention(c) (UnsafePointer<CChar>?) -> OpaquePointer?
    typealias ModelFree = @convention(c) (OpaquePointer?) -> Void
    typealias RecognizerNew = @convention(c) (OpaquePointer?, Float) -> OpaquePointer?
    typealias AcceptWaveformS = @convention(c) (OpaquePointer?, UnsafePointer<Int16>?, Int32) -> Int32
    typealias FinalResult = @convention(c) (OpaquePointer?) -> UnsafePointer<CChar>?
    typealias RecognizerFree = @convention(c) (OpaquePointer?) -> Void

    /// The path that was opened.
    public let path: String
    let setLogLevel: SetLogLevel
    let modelNew: ModelNew
    let modelFree: ModelFree
    let recognizerNew: RecognizerNew
    let acceptWaveformS: AcceptWaveformS
    let finalResult: FinalResult
    let recognizerFree: RecognizerFree

    private init(path: String, setLogLevel: SetLogLevel, modelNew: ModelNew, modelFree: ModelFree, recognizerNew: RecognizerNew,
                 acceptWaveformS: AcceptWaveformS, finalResult: FinalResult, recognizerFree: RecognizerFree) {
        self.path = path
        self.setLogLevel = setLogLevel
        self.modelNew = modelNew
        self.modelFree = modelFree
        self.recognizerNew = recognizerNew
        self.acceptWaveformS = acceptWaveformS
        self.finalResult = finalResult
        self.recognizerFree = recognizerFree
    }

    /// The library path used when none is given: `TTS_VOSK_LIBRARY`, else `libvosk.so` on the
    /// dynamic loader's search path.
    public static var defaultPath: String {
        ProcessInfo.processInfo.environment["TTS_VOSK_LIBRARY"] ?? "libvosk.so"
    }

    /// Opens `path` (default ``defaultPath``) and resolves the functions the wrapper uses.
    ///
    /// - Parameter logLevel: Vosk's (process-wide) log level; the default -1 silences Kaldi's info
    ///   logs, errors still go to stderr.
    public static func load(path: String? = nil, logLevel: Int = -1) throws(VoskError) -> VoskLibrary {
        let path = path ?? defaultPath
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown dlopen error"
            throw .libraryNotLoadable(path: path, reason: reason)
        }
        var missing: [String] = []
        func symbol<T>(_ name: String, _: T.Type) -> T? {
            guard let p = dlsym(handle, name) else { missing.append(name); return nil }
            return unsafeBitCast(p, to: T.self)
        }
        let setLogLevel = symbol("vosk_set_log_level", SetLogLevel.self)
        let modelNew = symbol("vosk_model_new", ModelNew.self)
        let modelFree = symbol("vosk_model_free", ModelFree.self)
        let recognizerNew = symbol("vosk_recognizer_new", RecognizerNew.self)
        let accept = symbol("vosk_recognizer_accept_waveform_s", AcceptWaveformS.self)
        let finalResult = symbol("vosk_recognizer_final_result", FinalResult.self)
        let recognizerFree = symbol("vosk_recognizer_free", RecognizerFree.self)
        guard let setLogLevel, let modelNew, let modelFree, let recognizerNew, let accept, let finalResult, let recognizerFree else {
            throw .missingSymbols(path: path, symbols: missing)
        }
        setLogLevel(Int32(clamping: logLevel))
        return VoskLibrary(path: path, setLogLevel: setLogLevel, modelNew: modelNew, modelFree: modelFree, recognizerNew: recognizerNew,
                           acceptWaveformS: accept, finalResult: finalResult, recognizerFree: recognizerFree)
    }
}
