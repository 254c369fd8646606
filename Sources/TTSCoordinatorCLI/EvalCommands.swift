import ArgumentParser
import ClusterAdmin
import Coordinator
import Foundation
import JobSpecs
import Shared

struct Eval: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluate a checkpoint: synthesize a seeded subset of a test set, transcribe it (Vosk Korean), score CER/WER exactly as jiwer 4.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The checkpoint (on storage the workers can read).")
    var checkpoint: String
    @Option(name: .customLong("manifest"), help: "A test manifest, path.jsonl::ko (repeatable).")
    var manifests: [String]
    @Option(help: "Utterances to evaluate (a seeded, stable subset; default all).")
    var numSamples: Int?
    @Option(help: "reference (the test set's own audio: the ASR floor), command (a process per utterance), persistent (one process per shard, JSON lines: docs/SYNTHESIZER.md), or torch (the module's synthesize method through the libtorch shim).")
    var synthesizer = "reference"
    @Option(help: "For --synthesizer torch: the TorchScript module the checkpoint belongs to (default: the checkpoint is itself a TorchScript file).")
    var synthModule: String?
    @Option(help: "For --synthesizer torch: the most codes decoded per utterance.")
    var maxCodes: Int?
    @Option(help: "For --synthesizer command: the command line, with {checkpoint} {text} {prompt_audio} {output} {id}; for persistent: with {checkpoint} (and {output_dir}).")
    var synthCommand: String?
    @Option(help: "Seconds one utterance's synthesis may take.")
    var synthTimeout = 120.0
    @Option(help: "The training run the results belong to (its metrics and W&B run).")
    var run: String?
    @Option(help: "The checkpoint's step (with --run).")
    var step: Int64?
    @Option(help: "Where audio and report.json/report.md go (default: next to the checkpoint).")
    var output: String?
    @Option(help: "Shards to spread it over.")
    var shards = 2
    @Option(help: "The subset's seed (default: the run id).")
    var seed: String?
    @Option(help: "ASR backend: vosk (workers with --vosk-model), command (a process per audio file, any worker, with --asr-command) or persistent (one process per shard, files sent as JSON lines: docs/ASR.md).")
    var asr = "vosk"
    @Option(help: "For --asr command: the command line, with {audio} {id} {language}; it prints the transcript on stdout. For --asr persistent: the startup command line (no placeholders), e.g. \"python examples/asr/whisper_large_v3_asr.py --model-dir DIR\".")
    var asrCommand: String?
    @Option(help: "Seconds one audio file's transcription may take (default: --synth-timeout).")
    var asrTimeout: Double?
    @Option(help: "For --asr persistent: seconds from its start to its ready line (default 600).")
    var asrStartupTimeout: Double?
    @Option(help: "For --asr persistent: restarts after a failure per shard (default 2).")
    var asrMaxRestarts: Int?
    @Flag(help: "Wait until it is done and print the scores.")
    var wait = false

    func run() async throws {
        var synth = SynthesizerSpec(kind: synthesizer, timeoutSeconds: synthTimeout, module: synthModule, maxCodes: maxCodes)
        if synthesizer == "command" || synthesizer == "persistent" {
            guard let synthCommand else { throw ValidationError("--synthesizer \(synthesizer) needs --synth-command \"…\"") }
            synth.command = try Self.words(synthCommand, option: "--synth-command")
        }
        var asrArgv: [String]?
        if asr == "command" || asr == "persistent" {
            guard let asrCommand else {
                throw ValidationError(asr == "command" ? "--asr command needs --asr-command \"… {audio} …\""
                                      : "--asr persistent needs --asr-command \"…\" (its startup command line, docs/ASR.md)")
            }
            asrArgv = try Self.words(asrCommand, option: "--asr-command")
        }
        if let problem = EvalPayload.asrProblem(kind: asr, command: asrArgv) { throw ValidationError("--asr \(asr): \(problem)") }
        if let t = asrTimeout, t <= 0 { throw ValidationError("--asr-timeout must be positive, got \(t)") }
        if let t = asrStartupTimeout, t <= 0 { throw ValidationError("--asr-startup-timeout must be positive, got \(t)") }
        if let n = asrMaxRestarts, n < 0 { throw ValidationError("--asr-max-restarts must be 0 or more, got \(n)") }
        let request = EvalRequest(checkpoint: checkpoint, manifests: manifests, numSamples: numSamples, synthesizer: synth, run: run,
                                  step: step, outputDir: output, shards: shards, seed: seed, asr: asr, asrCommand: asrArgv,
                                  asrTimeoutSeconds: asrTimeout, asrStartupTimeoutSeconds: asrStartupTimeout, asrMaxRestarts: asrMaxRestarts)
        try await runClient {
            let client = try options.client()
            var summary = try await client.eval(request)
            if !wait {
                if options.json { return try printJSON(summary) }
                print("evaluation \(summary.id): \(summary.utterances) utterance(s) in \(shards) shard(s); reports will be in \(summary.outputDir)")
                return
            }
            // Progress goes to stderr-free stdout only when not printing JSON.
            let progress = options.json ? nil : ProgressLine()
            while summary.state == .running {
                try await Task.sleep(for: .seconds(1))
                summary = try await client.evals().first { $0.id == summary.id } ?? summary
                if let progress {
                    let shards = try await client.shards(state: nil, jobId: summary.jobId)
                    let done = shards.filter { $0.state == .succeeded }.count
                    // Utterances done on the shards still running, from the workers' heartbeats.
                    let busy = try await client.workers().compactMap(\.progress).filter { p in shards.contains { $0.id == p.shard.shardId } }
                    let inFlight = busy.reduce(0) { $0 + Int($1.step) }, ofInFlight = busy.reduce(0) { $0 + Int($1.totalSteps) }
                    progress.update("evaluation \(summary.id): \(done)/\(shards.count) shard(s) done" + (busy.isEmpty ? "" : ", \(inFlight)/\(ofInFlight) utterance(s) on the running ones")
                                    + " of \(summary.utterances)")
                }
            }
            progress?.finish()
            if options.json { return try printJSON(summary) }
            print(Evals.line(summary))
            print("reports: \(summary.outputDir)/report.md, report.json")
            if summary.state != .succeeded { throw ExitCode(1) }
        }
    }
}

extension Eval {
    /// A command line split like a shell splits words (no shell runs it); the worker fills the placeholders.
    static func words(_ line: String, option: String) throws -> [String] {
        do {
            return try CommandTemplate(commandLine: line).parts.compactMap { part -> String? in
                if case .word(let w) = part { return w }
                return nil
            }
        } catch {
            throw ValidationError("\(option): \(error)")
        }
    }
}

struct Evals: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Evaluations: state, CER (corpus and utterance mean), WER, ASR floor; with RUN, its checkpoints side by side.",
        discussion: """
            With a run (id or name), every evaluated checkpoint of that run is listed in step order with \
            CER, WER, SIM, MCD and the floors, and the best one by --by is marked with *: the \
            measure that `keep: {best: K, by: …}` ranks checkpoints by (lower is better, except eval/sim).
            """)
    @OptionGroup var options: ClientOptions
    @Argument(help: "A run (id or name): compare its evaluated checkpoints.")
    var run: String?
    @Option(help: "With RUN: the measure that marks the best checkpoint (\(CheckpointComparison.measures.joined(separator: ", "))).")
    var by = "eval/cer"

    func run() async throws {
        try await runClient {
            let client = try options.client()
            let evals = try await client.evals()
            func pct(_ d: Double?) -> String { d.map { String(format: "%.2f%%", $0 * 100) } ?? "-" }
            func num(_ d: Double?, _ format: String) -> String { d.map { String(format: format, $0) } ?? "-" }
            guard let run else {
                if options.json { return try printJSON(evals) }
                Table.print(header: ["EVAL", "RUN", "STEP", "STATE", "UTTS", "CER", "CER UTT-MEAN", "WER", "FLOOR CER", "MESSAGE"], rows: evals.map { e in
                    [String(e.id), e.runId ?? "-", e.step.map(String.init) ?? "-", e.state.rawValue, String(e.utterances), pct(e.cer),
                     pct(e.cerUtteranceMean), pct(e.wer), pct(e.floorCer), String(e.message.prefix(60))]
                })
                return
            }
            let runs = try await client.runs()
            guard let r = runs.first(where: { $0.id == run || $0.name == run }) else { throw ValidationError("no run \(run)") }
            let comparison: CheckpointComparison
            do { comparison = try CheckpointComparison(evals: evals, runId: r.id, by: by) } catch { throw ValidationError("\(error)") }
            if options.json { return try printJSON(comparison.rows.map(\.eval)) }
            Table.print(header: ["BEST", "STEP", "EVAL", "STATE", "CER", "WER", "SIM", "MCD dB", "FLOOR CER", "FLOOR SIM", "NOTE"], rows: comparison.rows.map { row in
                let e = row.eval
                return [row.isBest ? "*" : "", e.step.map(String.init) ?? "-", String(e.id), e.state.rawValue, pct(e.cer), pct(e.wer),
                        num(e.sim, "%.3f"), num(e.mcd, "%.2f"), pct(e.floorCer), num(e.simFloor, "%.3f"), String((e.note ?? "").prefix(60))]
            })
            if let best = comparison.best {
                print("best by \(comparison.measure) (\(comparison.higherIsBetter ? "higher" : "lower") is better): step \(best.eval.step.map(String.init) ?? "-"), eval \(best.eval.id)")
            } else {
                print("no evaluation of run \(r.name) has a value of \(comparison.measure)")
            }
        }
    }

    static func line(_ e: EvalSummary) -> String {
        func pct(_ d: Double?) -> String { d.map { String(format: "%.2f %%", $0 * 100) } ?? "n/a" }
        return "evaluation \(e.id) \(e.state): CER \(pct(e.cer)) (corpus), \(pct(e.cerUtteranceMean)) (utterance mean), WER \(pct(e.wer)), ASR floor CER \(pct(e.floorCer)); \(e.message)\(e.note.map { "\nnote: \($0)" } ?? "")"
    }
}
