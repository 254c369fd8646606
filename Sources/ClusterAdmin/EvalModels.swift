import Foundation
import Shared

/// `eval` arguments: evaluate a checkpoint on a test set.
public struct EvalRequest: Codable, Sendable, Equatable {
    public var checkpoint: String
    /// Test manifests (`path.jsonl::ko`).
    public var manifests: [String]
    /// How many utterances (a seeded, stable subset); nil: all.
    public var numSamples: Int?
    public var synthesizer: SynthesizerSpec
    /// The training run it belongs to (its metrics and W&B run get the results) and the step.
    public var run: String?
    public var step: Int64?
    /// Where audio and the reports go (default: `<checkpoint dir>/eval-<step or name>`).
    public var outputDir: String?
    /// How many shards to split it into (default 2).
    public var shards: Int?
    /// The subset's seed (default: the run id, or "eval").
    public var seed: String?
    /// `vosk` (default), `command` or `persistent` with ``asrCommand`` (see ``EvalPayload/asrCommand``).
    public var asr: String?
    public var asrCommand: [String]?
    /// Seconds one transcription by an ASR program may take (default: the synthesizer's timeout).
    public var asrTimeoutSeconds: Double?
    /// For `asr: persistent`: seconds from its start to its ready line (default 600).
    public var asrStartupTimeoutSeconds: Double?
    /// For `asr: persistent`: restarts after a failure per shard (default 2).
    public var asrMaxRestarts: Int?

    public init(checkpoint: String, manifests: [String], numSamples: Int? = nil, synthesizer: SynthesizerSpec = .reference,
                run: String? = nil, step: Int64? = nil, outputDir: String? = nil, shards: Int? = nil, seed: String? = nil,
                asr: String? = nil, asrCommand: [String]? = nil, asrTimeoutSeconds: Double? = nil,
                asrStartupTimeoutSeconds: Double? = nil, asrMaxRestarts: Int? = nil) {
        self.checkpoint = checkpoint
        self.manifests = manifests
        self.numSamples = numSamples
        self.synthesizer = synthesizer
        self.run = run
        self.step = step
        self.outputDir = outputDir
        self.shards = shards
        self.seed = seed
        self.asr = asr
        self.asrCommand = asrCommand
        self.asrTimeoutSeconds = asrTimeoutSeconds
        self.asrStartupTimeoutSeconds = asrStartupTimeoutSeconds
        self.asrMaxRestarts = asrMaxRestarts
    }
}

/// An evaluation as `tts-coordinator evals` shows it.
public struct EvalSummary: Codable, Sendable, Equatable {
    public var id: Int64
    public var jobId: Int64
    public var runId: String?
    public var step: Int64?
    public var checkpoint: String
    /// `running`, `succeeded` or `failed`.
    public var state: State
    public var utterances: Int
    public var outputDir: String
    /// Corpus-level CER and WER (normalised), the utterance mean of CER, and the ASR floor's CER
    /// (the test set's own audio); nil until done.
    public var cer: Double?
    public var wer: Double?
    public var cerUtteranceMean: Double?
    public var floorCer: Double?
    /// Utterances that could not be scored (synthesis or audio errors).
    public var failedUtterances: Int?
    public var normalizer: String?
    public var message: String
    public var createdAt: Date?
    public var finishedAt: Date?
    /// What the figures do not say by themselves, in words: e.g. that the ASR cannot read this
    /// test set's own audio (its floor CER is above the threshold), so CER does not measure the
    /// model here. Nil when there is nothing to add.
    public var note: String?
    /// The floor shows that the ASR cannot read the test set's own audio: CER does not measure
    /// the model in this evaluation.
    public var asrUnreadable: Bool?
    /// Speaker similarity: the mean cosine between the speaker embedding of each synthesized
    /// utterance and of its voice prompt (`eval/sim`), and the same for the test set's own audio
    /// (`eval/sim_floor`, the ground truth). Nil when not measured.
    public var sim: Double?
    public var simFloor: Double?
    /// Mel-cepstral distortion (dB) between synthesized and target audio after DTW (`eval/mcd`);
    /// nil when the set has no target audio or it was not measured.
    public var mcd: Double?

    public init(id: Int64, jobId: Int64, runId: String?, step: Int64?, checkpoint: String, state: State, utterances: Int, outputDir: String,
                cer: Double?, wer: Double?, cerUtteranceMean: Double?, floorCer: Double?, failedUtterances: Int?, normalizer: String?,
                message: String, createdAt: Date?, finishedAt: Date?, note: String? = nil, asrUnreadable: Bool? = nil,
                sim: Double? = nil, simFloor: Double? = nil, mcd: Double? = nil) {
        self.note = note
        self.asrUnreadable = asrUnreadable
        self.sim = sim
        self.simFloor = simFloor
        self.mcd = mcd
        self.id = id
        self.jobId = jobId
        self.runId = runId
        self.step = step
        self.checkpoint = checkpoint
        self.state = state
        self.utterances = utterances
        self.outputDir = outputDir
        self.cer = cer
        self.wer = wer
        self.cerUtteranceMean = cerUtteranceMean
        self.floorCer = floorCer
        self.failedUtterances = failedUtterances
        self.normalizer = normalizer
        self.message = message
        self.createdAt = createdAt
        self.finishedAt = finishedAt
    }
}
