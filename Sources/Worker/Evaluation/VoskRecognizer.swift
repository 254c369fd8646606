import Foundation

/// One Vosk recognizer, for one utterance: created from a shared ``VoskModel``, fed the whole
/// utterance in a single call, asked for its final result, freed.
///
/// One recognizer per utterance because a recognizer adapts (online i-vectors) to what it has
/// heard, so reusing it would make a result depend on the utterances before it. The whole utterance
/// in one `vosk_recognizer_accept_waveform_s` call because the i-vector silence weighting is updated
/// per call, so the text depends on how the audio is chunked; a single call is the one chunking that
/// needs no parameter. Noncopyable, and ``transcribe(_:)`` consumes it, so it cannot be used twice or
/// from two tasks at once.
public struct VoskRecognizer: ~Copyable {
    private let model: VoskModel
    private let handle: OpaquePointer

    /// A recognizer at ``VoskModel/sampleRate`` (16 kHz).
    public init(model: VoskModel) throws(VoskError) {
        guard let handle = model.library.recognizerNew(model.handle, Float(VoskModel.sampleRate)) else {
            throw .recognizerCreationFailed(sampleRate: VoskModel.sampleRate)
        }
        self.model = model
        self.handle = handle
    }

    deinit {
        model.library.recognizerFree(handle)
    }

    /// Decodes `samples` (16 kHz, mono, 16-bit) and returns the final result.
    public consuming func transcribe(_ samples: [Int16]) throws(VoskError) -> VoskTranscript {
        guard samples.count <= Int(Int32.max) else { throw .audioTooLong(samples: samples.count) }
        let library = model.library
        let handle = self.handle
        if !samples.isEmpty {
            // 1 = an endpoint was detected, 0 = decoding goes on: both are fine, the final result
            // below covers the whole utterance because `vosk_recognizer_result` is never called.
            let status = samples.withUnsafeBufferPointer { library.acceptWaveformS(handle, $0.baseAddress, Int32(samples.count)) }
            guard status >= 0 else { throw .decodingFailed }
        }
        // Owned by the recognizer and valid until the next call on it: copied at once.
        guard let raw = library.finalResult(handle) else { throw .malformedResult("(null)") }
        let json = String(cString: raw)
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let text = object["text"] as? String else {
            throw .malformedResult(json)
        }
        return VoskTranscript(text: text, json: json)
    }
}
