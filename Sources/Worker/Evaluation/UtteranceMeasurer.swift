import Foundation
import Scoring
import Shared

/// The SIM and MCD measures of an eval shard's utterances (docs/EVALUATION.md), made after
/// synthesis and ASR; one per shard.
///
/// * `sim`: the cosine of the embeddings of the synthesized audio and of the voice prompt;
///   `floor_sim`: the same with the test set's own (target) audio in place of the synthesized, the
///   ground-truth floor. Needs a ``SpeakerEmbedder`` (nil: no SIM, said once in ``notes``).
/// * `mcd`: ``MelCepstralDistortion`` of the synthesized audio against the target audio, both
///   resampled to 16 kHz.
///
/// Embeddings are cached by file path for the shard (a prompt shared by several utterances, a
/// target that is also the `reference` synthesizer's output, are embedded once). A measure that
/// could have been taken but failed goes to the result's `measure_errors`, never its `error`.
final class UtteranceMeasurer {
    let embedder: (any SpeakerEmbedder)?
    /// Why ``embedder`` is nil.
    let unavailable: String
    private let mcd: MelCepstralDistortion?
    private let mcdSetupError: String?
    private var embeddings: [String: Result<[Float], SpeakerEmbeddingError>] = [:]
    private var sawPrompt = false

    init(embedder: (any SpeakerEmbedder)?, unavailable: String?) {
        self.embedder = embedder
        self.unavailable = unavailable ?? "this worker has no speaker embedder"
        do {
            mcd = try MelCepstralDistortion()
            mcdSetupError = nil
        } catch {
            mcd = nil
            mcdSetupError = "\(error)"
        }
    }

    /// The shard-wide notes: SIM not measured for want of an embedder (when a prompt was seen).
    var notes: [String] {
        embedder == nil && sawPrompt ? ["sim not measured: \(unavailable)"] : []
    }

    /// Adds `sim`, `floor_sim`, `mcd`, their stage times and any `measure_errors` to `result`.
    /// - Parameters:
    ///   - synthesized: the synthesized audio (read, mixed down, not silent) and its file.
    func measure(_ result: inout EvalUtteranceResult, utterance u: EvalUtterance, synthesized: AudioClip, path: String) async {
        let clock = ContinuousClock()
        var errors: [String: String] = [:]
        var target: Result<AudioClip, AudioFileError>?
        func targetClip(_ p: String) -> Result<AudioClip, AudioFileError> {
            if let target { return target }
            let loaded: Result<AudioClip, AudioFileError>
            if p == path {
                loaded = .success(synthesized)
            } else {
                do { loaded = .success(try AudioFile.read(p)) } catch { loaded = .failure(error) }
            }
            target = loaded
            return loaded
        }

        if let prompt = u.promptAudio {
            sawPrompt = true
            if let embedder {
                let start = clock.now
                switch await embedding(prompt, with: embedder, clip: nil) {
                case .failure(let e):
                    errors["sim"] = "prompt: \(e)"
                    if u.referenceAudio != nil { errors["floor_sim"] = "prompt: \(e)" }
                case .success(let p):
                    switch await embedding(path, with: embedder, clip: synthesized) {
                    case .success(let s): Self.cosine(s, p, into: &result.sim, key: "sim", errors: &errors)
                    case .failure(let e): errors["sim"] = "\(e)"
                    }
                    if let ref = u.referenceAudio {
                        switch targetClip(ref) {
                        case .failure(let e): errors["floor_sim"] = "target: \(e)"
                        case .success(let clip):
                            switch await embedding(ref, with: embedder, clip: clip) {
                            case .success(let t): Self.cosine(t, p, into: &result.floorSim, key: "floor_sim", errors: &errors)
                            case .failure(let e): errors["floor_sim"] = "\(e)"
                            }
                        }
                    }
                }
                result.simSeconds = EvalExecutor.seconds(clock.now - start)
            }
        }

        if let ref = u.referenceAudio {
            let start = clock.now
            if let mcd {
                switch targetClip(ref) {
                case .failure(let e): errors["mcd"] = "target: \(e)"
                case .success(let clip):
                    do {
                        result.mcd = try mcd.distortion(synthesized: synthesized.resampled(to: mcd.configuration.sampleRate).samples,
                                                        target: clip.resampled(to: mcd.configuration.sampleRate).samples).mcd
                    } catch {
                        errors["mcd"] = "\(error)"
                    }
                }
            } else {
                errors["mcd"] = mcdSetupError ?? "MCD unavailable"
            }
            result.mcdSeconds = EvalExecutor.seconds(clock.now - start)
        }
        if let codec = u.codecAudio { await measureCodecFloor(&result, codec: codec, utterance: u, target: targetClip, errors: &errors) }
        result.measureErrors = errors.isEmpty ? nil : errors
    }

    /// The codec floor: the target's true codes decoded by the codec, against the target (MCD)
    /// and the prompt (SIM) — what a perfect model could reach through this codec.
    private func measureCodecFloor(_ result: inout EvalUtteranceResult, codec: String, utterance u: EvalUtterance,
                                   target: (String) -> Result<AudioClip, AudioFileError>, errors: inout [String: String]) async {
        let clip: AudioClip
        do { clip = try AudioFile.read(codec) } catch {
            errors["codec_mcd"] = "codec audio: \(error)"
            return
        }
        if let mcd, let ref = u.referenceAudio, case .success(let t) = target(ref) {
            do {
                result.codecMcd = try mcd.distortion(synthesized: clip.resampled(to: mcd.configuration.sampleRate).samples,
                                                     target: t.resampled(to: mcd.configuration.sampleRate).samples).mcd
            } catch {
                errors["codec_mcd"] = "\(error)"
            }
        }
        if let embedder, let prompt = u.promptAudio, case .success(let p) = await embedding(prompt, with: embedder, clip: nil) {
            switch await embedding(codec, with: embedder, clip: clip) {
            case .success(let c): Self.cosine(c, p, into: &result.codecSim, key: "codec_sim", errors: &errors)
            case .failure(let e): errors["codec_sim"] = "\(e)"
            }
        }
    }

    /// The embedding of one file, from the shard's cache or made now (reading the file when no
    /// clip is given).
    private func embedding(_ file: String, with embedder: any SpeakerEmbedder, clip: AudioClip?) async -> Result<[Float], SpeakerEmbeddingError> {
        if let cached = embeddings[file] { return cached }
        let made: Result<[Float], SpeakerEmbeddingError>
        do {
            let audio = try clip ?? AudioFile.read(file)
            made = .success(try await embedder.embed(path: file, clip: audio))
        } catch let e as SpeakerEmbeddingError {
            made = .failure(e)
        } catch {
            made = .failure(SpeakerEmbeddingError("\(error)"))
        }
        embeddings[file] = made
        return made
    }

    private static func cosine(_ a: [Float], _ b: [Float], into value: inout Double?, key: String, errors: inout [String: String]) {
        guard a.count == b.count else {
            errors[key] = "embeddings of different sizes (\(a.count), \(b.count))"
            return
        }
        value = SpeakerEncoder.similarity(a, b)
    }
}
