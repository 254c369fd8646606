import ArgumentParser
import Foundation
import Shared
import Worker

/// Issue 17: utterances/s of each evaluation stage on one worker — synthesis, ASR, SIM, MCD — from
/// the per-utterance stage times of one real eval shard run in process (``EvalExecutor``: the
/// synthesizer, Vosk Korean, the speaker encoder through the torch shim, ``MelCepstralDistortion``).
struct EvalStagesBench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval-stages",
        abstract: "Utterances/s per evaluation stage (synthesis, ASR, SIM, MCD) of one worker, over a test manifest.",
        discussion: """
            One warm-up shard of one utterance (Vosk and torch warm), then one shard of --utterances \
            utterances of the manifest (seeded subset). A stage's rate is utterances / the sum of its \
            per-utterance seconds (synthesis_seconds, asr_seconds, sim_seconds, mcd_seconds). SIM \
            embeds the synthesized audio, and each prompt and target once per shard (cached).
            """)

    @Option(help: "libvosk.so") var voskLibrary: String
    @Option(help: "The Vosk Korean model directory.") var voskModel: String
    @Option(help: "A test manifest (path.jsonl::ko) with prompt_audio_path and target_audio_path.") var manifest: String
    @Option(help: "The torch shim (libtts_torch_shim.so).") var torchShim: String
    @Option(help: "The exported speaker encoder (speaker_encoder.pt).") var speakerEncoder: String
    @Option(help: "reference (the test set's audio) or espeak (espeak-ng -v ko, a command per utterance).") var synthesizer = "espeak"
    @Option(help: "Utterances.") var utterances = 24

    func run() async throws {
        let shim = try TorchShim.load(path: torchShim)
        let embedder = try TorchSpeakerEmbedder.load(speakerEncoder, shim: shim)
        let all = try EvalManifest.read([ManifestSpec(parsing: manifest)])
        let picked = EvalManifest.subset(all, count: utterances, seed: "eval-stages")
        let spec: SynthesizerSpec
        switch synthesizer {
        case "reference": spec = .reference
        case "espeak": spec = SynthesizerSpec(kind: "command", command: ["/usr/bin/espeak-ng", "-v", "ko", "-w", "{output}", "{text}"], timeoutSeconds: 60)
        default: throw BenchError("--synthesizer must be reference or espeak")
        }
        let executor = EvalExecutor(voskLibrary: voskLibrary, voskModel: voskModel, speakerEmbedder: embedder)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-bench-eval-stages-\(getpid())").path
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func shard(_ us: [EvalUtterance], _ name: String) async throws -> (EvalShardOutput, Double) {
            let payload = EvalPayload(evalId: 1, checkpoint: "/bench/model.pth", utterances: us, synthesizer: spec, outputDir: dir + "/" + name, withFloor: false)
            let a = ShardAssignment(shard: ShardRef(shardId: 1, leaseEpoch: 1), jobId: 1, kind: "eval", attempt: 1, payload: try JSONCoding.encode(payload))
            let start = Date()
            let report = try await executor.run(a, context: ShardContext(assignment: a, progress: { _, _ in }))
            guard report.outcome == .succeeded else { throw BenchError("eval shard failed: \(report.message)") }
            return (try JSONCoding.decode(EvalShardOutput.self, from: report.output), Date().timeIntervalSince(start))
        }
        _ = try await shard(Array(all.prefix(1)), "warm")
        let (out, wall) = try await shard(picked, "measured")
        let ok = out.utterances.filter { $0.error == nil }
        guard !ok.isEmpty else { throw BenchError("no utterance succeeded: \(out.utterances.first?.error ?? "")") }
        let audio = ok.compactMap(\.audioSeconds).reduce(0, +)
        print("\n### Evaluation stages on one worker: \(synthesizer == "espeak" ? "espeak-ng ko" : "reference audio") → Vosk Korean → SIM (GE2E, torch shim) → MCD, \(ok.count) utterances (\(String(format: "%.1f", audio)) s of audio)\n")
        print("| stage | seconds (sum over utterances) | utterances/s | ms per utterance |")
        print("|---|---|---|---|")
        let stages: [(String, [Double])] = [
            ("synthesis", ok.map(\.synthesisSeconds)), ("ASR (Vosk)", ok.map(\.asrSeconds)),
            ("SIM (3 embeddings, prompt/target cached)", ok.compactMap(\.simSeconds)), ("MCD (analysis + DTW)", ok.compactMap(\.mcdSeconds)),
        ]
        for (name, seconds) in stages {
            let total = seconds.reduce(0, +)
            guard seconds.count == ok.count, total > 0 else { print("| \(name) | — (measured for \(seconds.count) of \(ok.count)) | — | — |"); continue }
            print(String(format: "| %@ | %.2f | %.1f | %.1f |", name, total, Double(ok.count) / total, 1000 * total / Double(ok.count)))
        }
        print(String(format: "| whole shard (wall) | %.2f | %.1f | %.1f |", wall, Double(ok.count) / wall, 1000 * wall / Double(ok.count)))
        let mean = { (v: [Double]) in v.isEmpty ? Double.nan : v.reduce(0, +) / Double(v.count) }
        print(String(format: "\nmeans: sim %.3f, floor_sim %.3f, mcd %.2f dB", mean(ok.compactMap(\.sim)), mean(ok.compactMap(\.floorSim)), mean(ok.compactMap(\.mcd))))
    }
}
