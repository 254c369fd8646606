import CTorchShim
import Foundation
import Synchronization

/// A waveform embedder loaded through the torch shim (`tts_shim_encoder_load`): an
/// inference-only TorchScript module exporting `embed_waveform(wav) -> Tensor` and
/// `embedding_sample_rate() -> int` (Sources/TorchShim/CONTRACT.md, "Embeddings").
///
/// With the module of `scripts/torch/export_speaker_encoder.py` it is Resemblyzer's GE2E speaker
/// encoder: 16 kHz mono samples in, the 256-d L2-normalised utterance embedding of
/// `VoiceEncoder.embed_utterance` out (volume normalisation, mel features and partial utterances
/// inside the module). Resampling to ``sampleRate`` and Resemblyzer's VAD trimming of long
/// silences are the caller's (the embedding of a waveform with long pauses differs a little from
/// Resemblyzer's `preprocess_wav` path). The SIM metric of two utterances is
/// ``similarity(_:_:)`` of their embeddings.
///
/// Calls are serialised (the shim allows one call at a time per handle).
public final class SpeakerEncoder: @unchecked Sendable { // the handle is only touched under `lock`
    public let shim: TorchShim
    /// The rate ``embed(_:)`` expects, in Hz (16 000 for the speaker encoder).
    public let sampleRate: Int
    private let handle: OpaquePointer
    private let fns: TorchShim.Functions
    private let lock = Mutex(())

    init(shim: TorchShim, handle: OpaquePointer, fns: TorchShim.Functions) {
        self.shim = shim
        self.handle = handle
        self.fns = fns
        self.sampleRate = Int(fns.encoderSampleRate(handle))
    }

    deinit { fns.encoderFree(handle) }

    /// The embedding of `samples` (mono, at ``sampleRate``, in [-1, 1]).
    /// - Throws: ``TorchShimError``: `.invalidArgument` for an empty or silent waveform or a sample
    ///   that is not finite; `.shape`/`.internal` when the module raises (its message).
    public func embed(_ samples: [Float]) throws(TorchShimError) -> [Float] {
        var capacity = 1_024
        while true {
            let (status, length, values): (Int32, Int, [Float]) = lock.withLock { _ in
                var out = [Float](repeating: 0, count: capacity)
                var length: Int64 = 0
                let status = samples.withUnsafeBufferPointer { input in
                    out.withUnsafeMutableBufferPointer { output in
                        fns.embedWaveform(handle, input.baseAddress, Int64(input.count), output.baseAddress, Int64(capacity), &length)
                    }
                }
                return (status, Int(length), status == TTS_OK ? Array(out.prefix(Int(length))) : [])
            }
            // A module whose embedding is larger than the buffer: once more with room for it.
            if status == TTS_ERR_INVALID_ARGUMENT, length > capacity {
                capacity = length
                continue
            }
            try shim.check(status)
            return values
        }
    }

    /// Cosine similarity of two embeddings (SIM), in double precision: `a·b / (|a| |b|)`; 0 when
    /// either is all zeros. For the speaker encoder's non-negative unit vectors it lies in [0, 1].
    public static func similarity(_ a: [Float], _ b: [Float]) -> Double {
        precondition(a.count == b.count, "embeddings of different sizes (\(a.count), \(b.count))")
        var dot = 0.0, na = 0.0, nb = 0.0
        for i in a.indices {
            let x = Double(a[i]), y = Double(b[i])
            dot += x * y
            na += x * x
            nb += y * y
        }
        guard na > 0, nb > 0 else { return 0 }
        return dot / (na.squareRoot() * nb.squareRoot())
    }
}
