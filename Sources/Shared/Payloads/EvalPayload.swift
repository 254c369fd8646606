import Foundation

/// One utterance of an evaluation set, as the coordinator picked it from a test manifest.
public struct EvalUtterance: Codable, Sendable, Equatable {
    /// The manifest record's `id`.
    public var id: String
    /// The transcript (`target_text`).
    public var text: String
    /// The test set's own recording of it (`target_audio_path`): the `reference` synthesizer's
    /// output and the ASR floor.
    public var referenceAudio: String?
    /// The voice prompt for a synthesizer (`prompt_audio_path`).
    public var promptAudio: String?
    /// The target's own codes decoded by the model's codec (`target_codec_audio_path`): the codec
    /// floor, the best MCD and SIM the codec allows.
    public var codecAudio: String?

    public init(id: String, text: String, referenceAudio: String?, promptAudio: String?, codecAudio: String? = nil) {
        self.id = id
        self.text = text
        self.referenceAudio = referenceAudio
        self.promptAudio = promptAudio
        self.codecAudio = codecAudio
    }

    enum CodingKeys: String, CodingKey {
        case id, text
        case referenceAudio = "reference_audio", promptAudio = "prompt_audio", codecAudio = "codec_audio"
    }
}

/// How an evaluation makes audio from text.
public struct SynthesizerSpec: Codable, Sendable, Equatable {
    /// `reference`: the test set's own audio (the ASR floor); `command`: a program per utterance;
    /// `persistent`: one program per shard, utterances sent as JSON lines (docs/SYNTHESIZER.md);
    /// `torch`: the `synthesize` method of a TorchScript module through the libtorch shim.
    public var kind: String
    /// For `command`: argv with `{checkpoint}`, `{text}`, `{prompt_audio}`, `{output}`, `{id}`
    /// (e.g. IndexTTS-2's `python infer.py --gpt {checkpoint} --prompt {prompt_audio} --text {text} --out {output}`).
    /// For `persistent`: the startup argv, with `{checkpoint}` and `{output_dir}` only (e.g.
    /// `python examples/synthesizers/indextts2_synth.py --checkpoint {checkpoint} --model-dir DIR`).
    public var command: [String]?
    /// Seconds one utterance may take before it is a per-utterance error.
    public var timeoutSeconds: Double
    /// For `persistent`: seconds from the start to the ready line (default 600).
    public var startupTimeoutSeconds: Double?
    /// For `persistent`: restarts after a failure (timeout, crash, protocol error) per shard (default 2).
    public var maxRestarts: Int?
    /// For `torch`: the TorchScript module whose parameters the checkpoint holds (a torch run's
    /// `model`). Without it the checkpoint itself must be a TorchScript file.
    public var module: String?
    /// For `torch`: the most codes `synthesize` may decode per utterance (default 250: 10 s at
    /// 25 codes/s).
    public var maxCodes: Int?

    public init(kind: String, command: [String]? = nil, timeoutSeconds: Double = 120, module: String? = nil, maxCodes: Int? = nil,
                startupTimeoutSeconds: Double? = nil, maxRestarts: Int? = nil) {
        self.kind = kind
        self.command = command
        self.timeoutSeconds = timeoutSeconds
        self.module = module
        self.maxCodes = maxCodes
        self.startupTimeoutSeconds = startupTimeoutSeconds
        self.maxRestarts = maxRestarts
    }

    public static let reference = SynthesizerSpec(kind: "reference")

    /// The synthesizer kinds there are.
    public static let kinds = ["reference", "command", "persistent", "torch"]

    /// The only placeholders of a `persistent` startup argv.
    public static let persistentPlaceholders = ["checkpoint", "output_dir"]

    /// The `{name}` placeholders in one argv word (names of letters, digits and `_`).
    public static func placeholders(in word: String) -> [String] {
        var names: [String] = []
        var rest = word[...]
        while let open = rest.firstIndex(of: "{") {
            let after = rest[rest.index(after: open)...]
            guard let close = after.firstIndex(of: "}") else { break }
            let name = after[..<close]
            if !name.isEmpty, name.allSatisfy({ $0 == "_" || ($0.isASCII && ($0.isLetter || $0.isNumber)) }) { names.append(String(name)) }
            rest = name.contains("{") ? after : after[after.index(after: close)...]
        }
        return names
    }

    enum CodingKeys: String, CodingKey {
        case kind, command, module
        case timeoutSeconds = "timeout_seconds", maxCodes = "max_codes"
        case startupTimeoutSeconds = "startup_timeout_seconds", maxRestarts = "max_restarts"
    }
}

/// The payload of an `eval` shard: score utterances of a test set against one checkpoint.
public struct EvalPayload: Codable, Sendable, Equatable {
    /// The evaluation (the job) this shard belongs to.
    public var evalId: Int64
    public var checkpoint: String
    public var utterances: [EvalUtterance]
    public var synthesizer: SynthesizerSpec
    /// The ASR backend: `vosk` (the worker's Vosk library and Korean model), `command` (a program
    /// per audio file) or `persistent` (one program per shard, files sent as JSON lines, docs/ASR.md).
    public var asr: String
    /// For `asr: command`: argv with `{audio}` (the audio file, any format libsndfile reads),
    /// `{id}` and `{language}`. Contract: the program writes the transcript (UTF-8) to stdout and
    /// exits 0; its stdout lines, trimmed and joined with spaces, are the hypothesis; a non-zero
    /// exit or the timeout makes it that utterance's error. For `asr: persistent`: the startup
    /// argv (no placeholders; the files come as JSON lines on its stdin, docs/ASR.md).
    public var asrCommand: [String]?
    /// Seconds one transcription by the command may take (`command` and `persistent`).
    public var asrTimeoutSeconds: Double?
    /// For `asr: persistent`: seconds from its start to its ready line (default 600).
    public var asrStartupTimeoutSeconds: Double?
    /// For `asr: persistent`: restarts after a failure per shard (default 2).
    public var asrMaxRestarts: Int?
    /// Where synthesized audio goes (`OUTPUT/audio/ID.wav`).
    public var outputDir: String
    /// Also transcribe the reference audio of each utterance (the ASR floor).
    public var withFloor: Bool

    public init(evalId: Int64, checkpoint: String, utterances: [EvalUtterance], synthesizer: SynthesizerSpec, asr: String = "vosk",
                asrCommand: [String]? = nil, asrTimeoutSeconds: Double? = nil, asrStartupTimeoutSeconds: Double? = nil, asrMaxRestarts: Int? = nil,
                outputDir: String, withFloor: Bool = true) {
        self.evalId = evalId
        self.checkpoint = checkpoint
        self.utterances = utterances
        self.synthesizer = synthesizer
        self.asr = asr
        self.asrCommand = asrCommand
        self.asrTimeoutSeconds = asrTimeoutSeconds
        self.asrStartupTimeoutSeconds = asrStartupTimeoutSeconds
        self.asrMaxRestarts = asrMaxRestarts
        self.outputDir = outputDir
        self.withFloor = withFloor
    }

    enum CodingKeys: String, CodingKey {
        case checkpoint, utterances, synthesizer, asr
        case evalId = "eval_id", outputDir = "output_dir", withFloor = "with_floor"
        case asrCommand = "asr_command", asrTimeoutSeconds = "asr_timeout_seconds"
        case asrStartupTimeoutSeconds = "asr_startup_timeout_seconds", asrMaxRestarts = "asr_max_restarts"
    }

    /// The shard kind that runs it: `eval` needs a worker with Vosk, `eval-command` (an ASR
    /// program, `command` or `persistent`) any worker.
    public static func shardKind(asr: String) -> String { asr == "vosk" ? "eval" : "eval-command" }

    /// The ASR backends there are.
    public static let asrKinds = ["vosk", "command", "persistent"]

    /// Why an ASR backend and its command cannot run, or nil: an unknown kind, a `command` ASR
    /// without `{audio}`, a `persistent` ASR without a command or with a placeholder in it (its
    /// files come as JSON lines on its stdin).
    public static func asrProblem(kind: String, command: [String]?) -> String? {
        switch kind {
        case "vosk": return nil
        case "command":
            return (command ?? []).contains(where: { $0.contains("{audio}") }) ? nil
                : "the command ASR needs a command with {audio} (it prints the transcript on stdout)"
        case "persistent":
            guard let command, !command.isEmpty else {
                return "the persistent ASR needs a command (its startup argv, e.g. [python, examples/asr/whisper_large_v3_asr.py, --model-dir, DIR])"
            }
            if let p = command.flatMap(SynthesizerSpec.placeholders(in:)).first {
                return "the persistent ASR's command uses {\(p)}: it takes no placeholders (the audio files come as JSON lines on its stdin, docs/ASR.md)"
            }
            return nil
        default:
            return "unknown ASR backend '\(kind)': use \(asrKinds.joined(separator: ", "))"
        }
    }
    /// Both eval shard kinds.
    public static let shardKinds = ["eval", "eval-command"]
}

/// What a worker found for one utterance: the raw transcripts (scoring happens once, over the
/// whole set, at the coordinator), the speaker similarity and mel-cepstral distortion
/// (docs/EVALUATION.md), the audio and the timings, or the error that stopped it.
///
/// The measures are optional: absent means not measured (older workers, no prompt or target audio
/// in the manifest, no speaker encoder on the worker — the shard's ``EvalShardOutput/notes`` say
/// so). When a measure could have been taken but was not (an unreadable prompt, an embedder that
/// failed), ``measureErrors`` says why, without touching the utterance's ``error`` or its CER.
public struct EvalUtteranceResult: Codable, Sendable, Equatable {
    public var id: String
    public var reference: String
    /// The ASR transcript of the synthesized audio; nil when the utterance failed.
    public var hypothesis: String?
    /// The ASR transcript of the test set's own audio (the floor), if asked for.
    public var floorHypothesis: String?
    /// The audio that was transcribed.
    public var audioPath: String?
    public var audioSeconds: Double?
    public var synthesisSeconds: Double
    public var asrSeconds: Double
    /// Why this utterance has no hypothesis (missing or corrupt audio, synthesizer failure, silence).
    public var error: String?
    /// Why the floor (the test set's own audio through the same ASR) has no transcript when it
    /// was asked for (missing or unreadable target audio, ASR failure): counted as deletions.
    public var floorError: String?
    /// `sim`: cosine of the speaker embeddings of the synthesized audio and of the voice prompt.
    public var sim: Double?
    /// `floor_sim`: cosine of the speaker embeddings of the test set's own (target) audio and of the
    /// voice prompt: the ground-truth floor beside ``sim``.
    public var floorSim: Double?
    /// `mcd`: mel-cepstral distortion (dB, after DTW) of the synthesized audio against the target audio.
    public var mcd: Double?
    /// `sim_seconds`: wall time of this utterance's SIM stage (loading, resampling, embedding the
    /// synthesized, prompt and target audio; cached prompt embeddings cost nothing).
    public var simSeconds: Double?
    /// `mcd_seconds`: wall time of this utterance's MCD stage (loading the target, analysis, DTW).
    public var mcdSeconds: Double?
    /// `codec_sim`, `codec_mcd`: the codec floor — the target's true codes decoded by the model's
    /// codec (`target_codec_audio_path`) against the prompt (SIM) and the target (MCD).
    public var codecSim: Double?
    public var codecMcd: Double?
    /// `measure_errors`: why a measure that could have been taken is missing, keyed by `sim`,
    /// `floor_sim` or `mcd`; nil when there is nothing to say.
    public var measureErrors: [String: String]?

    public init(id: String, reference: String, hypothesis: String?, floorHypothesis: String?, audioPath: String?, audioSeconds: Double?,
                synthesisSeconds: Double, asrSeconds: Double, error: String?, sim: Double? = nil, floorSim: Double? = nil, mcd: Double? = nil,
                simSeconds: Double? = nil, mcdSeconds: Double? = nil, measureErrors: [String: String]? = nil) {
        self.id = id
        self.reference = reference
        self.hypothesis = hypothesis
        self.floorHypothesis = floorHypothesis
        self.audioPath = audioPath
        self.audioSeconds = audioSeconds
        self.synthesisSeconds = synthesisSeconds
        self.asrSeconds = asrSeconds
        self.error = error
        self.sim = sim
        self.floorSim = floorSim
        self.mcd = mcd
        self.simSeconds = simSeconds
        self.mcdSeconds = mcdSeconds
        self.measureErrors = measureErrors
    }

    enum CodingKeys: String, CodingKey {
        case id, reference, hypothesis, error, sim, mcd
        case floorHypothesis = "floor_hypothesis", audioPath = "audio_path", audioSeconds = "audio_seconds"
        case synthesisSeconds = "synthesis_seconds", asrSeconds = "asr_seconds"
        case floorError = "floor_error"
        case floorSim = "floor_sim", simSeconds = "sim_seconds", mcdSeconds = "mcd_seconds", measureErrors = "measure_errors"
        case codecSim = "codec_sim", codecMcd = "codec_mcd"
    }
}
