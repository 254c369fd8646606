import ClusterAdmin
import Foundation
import Shared
import Testing

/// Issue 7 with real processes: evaluations sharded over workers that transcribe with the real
/// Vosk Korean model, scored once over the whole set at the coordinator.
@Suite("Evaluation (real processes)", .serialized)
struct EvaluationTests {
    static func fixture(_ relative: String) throws -> [String: String] { try FixtureScript.values(relative) }

    static func voskWorkerArgs() throws -> [String] {
        let vosk = try fixture("eval/vosk_env.sh")
        return ["--vosk-library", try #require(vosk["LIBVOSK"]), "--vosk-model", try #require(vosk["MODEL"])]
    }

    /// A test manifest of `good` utterances of the reference dataset, plus one whose audio is
    /// missing and one whose audio is corrupt.
    static func manifest(in dir: URL, good: Int) throws -> String {
        let dataset = try #require(try fixture("torch/torch_env.sh")["DATASET"])
        let lines = try String(contentsOfFile: dataset + "/gpt_pairs_val.jsonl", encoding: .utf8).split(separator: "\n").prefix(good)
        var out: [String] = []
        for line in lines {
            guard case .object(var o) = try JSONCoding.decode(JSONValue.self, from: Array(line.utf8)) else { continue }
            for key in ["target_audio_path", "prompt_audio_path"] {
                if let p = o[key]?.stringValue { o[key] = .string(dataset + "/" + p) }
            }
            out.append(String(decoding: try JSONCoding.encode(o), as: UTF8.self))
        }
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try Data("not audio at all".utf8).write(to: dir.appendingPathComponent("corrupt.wav"))
        out.append(#"{"id": "missing", "target_text": "없는 파일", "target_audio_path": "\#(dir.path)/missing.wav"}"#)
        out.append(#"{"id": "corrupt", "target_text": "깨진 파일", "target_audio_path": "\#(dir.path)/corrupt.wav"}"#)
        let path = dir.appendingPathComponent("test.jsonl").path
        try (out.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("eval over two Vosk workers: CER is computed once over the set, identical across two evaluations; a missing and a corrupt file are per-utterance errors in the report")
    func referenceEvaluation() async throws {
        let vosk = try Self.voskWorkerArgs()
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"])
        try h.startWorker("asr-a", vosk)
        try h.startWorker("asr-b", vosk)
        try await h.waitUntil("both workers take eval shards", timeout: 30) {
            try h.workers().filter { $0.capabilities.contains("shard:eval") }.count == 2
        }
        let manifest = try Self.manifest(in: h.dir.appendingPathComponent("testset"), good: 6)
        var summaries: [EvalSummary] = []
        for k in 0..<2 {
            let r = try h.cli(["eval", "/ckpt/model_step0.pth", "--manifest", manifest + "::ko", "--shards", "2",
                               "--output", h.dir.appendingPathComponent("eval\(k)").path, "--wait", "--json"])
            #expect(r.status == 0, "\(r.err)")
            summaries.append(try JSONCoding.decoder.decode(EvalSummary.self, from: Data(r.out.utf8)))
        }
        let a = summaries[0], b = summaries[1]
        #expect(a.state == "succeeded" && a.utterances == 8 && a.failedUtterances == 2)
        let cer = try #require(a.cer)
        // espeak-ng's robotic Korean through the small Vosk model: recognition is poor but real
        // (VoskRecognizerTests pins its level); here the pipeline must produce a finite score.
        #expect(cer.isFinite && cer > 0 && cer < 1.5, "CER \(cer)")
        #expect(a.cer == b.cer && a.wer == b.wer && a.cerUtteranceMean == b.cerUtteranceMean, "deterministic: \(a) vs \(b)")
        #expect(a.floorCer == a.cer, "with the reference synthesizer the model is the floor")
        #expect(a.normalizer == "ko-v1")
        // Both workers took a shard.
        let evalShards = try h.shards().filter { $0.kind == "eval" }
        #expect(Set(evalShards.compactMap { $0.history.last?.workerName }) == ["asr-a", "asr-b"])
        // The report names each utterance, and the two bad files as errors naming them.
        let report = try JSONCoding.decode(JSONValue.self, from: Array(try Data(contentsOf: h.dir.appendingPathComponent("eval0/report.json"))))
        guard case .object(let doc) = report, case .array(let utts)? = doc["utterances"] else { Issue.record("no utterances in report.json"); return }
        #expect(utts.count == 8)
        let errors = utts.compactMap { u -> (String, String)? in
            guard case .object(let o) = u, let id = o["id"]?.stringValue, let e = o["error"]?.stringValue else { return nil }
            return (id, e)
        }
        #expect(errors.map(\.0).sorted() == ["corrupt", "missing"])
        let heard = utts.filter { u in
            guard case .object(let o) = u, o["error"]?.stringValue == nil else { return false }
            return !(o["hypothesis"]?.stringValue ?? "").isEmpty
        }
        #expect(heard.count == 6, "every good utterance was transcribed to something")
        #expect(errors.first { $0.0 == "missing" }?.1.contains("missing.wav") == true)
        #expect(errors.first { $0.0 == "corrupt" }?.1.contains("corrupt.wav") == true)
        let md = try String(contentsOf: h.dir.appendingPathComponent("eval0/report.md"), encoding: .utf8)
        #expect(md.contains("CER (corpus") && md.contains("CER (utterance mean") && md.contains("ASR floor"))
    }

    @Test("a training job with eval_every evaluates each checkpoint at that cadence, spread over two workers; each result lands in the store and the W&B run at its step, with audio samples")
    func periodicEvaluation() async throws {
        let vosk = try Self.voskWorkerArgs()
        let python = try TrainerVenv.python()
        let h = try ClusterHarness()
        try await h.startCoordinator()
        try h.startWorker("gpu-a", vosk + TrainingRunTests.a6000)
        try h.startWorker("gpu-b", vosk + TrainingRunTests.a6000)
        try await h.waitUntil("both workers are live", timeout: 30) { try h.workers().count == 2 }
        let manifest = try Self.manifest(in: h.dir.appendingPathComponent("testset"), good: 4)
        let spec = TrainingRunTests.spec(h, python: python, name: "ko-eval", maxSteps: 60, stepSeconds: 0.05, checkpointEvery: 20,
                                         extra: """
                                         eval_every: 20
                                         eval: {manifests: ["\(manifest)::ko"], num_samples: 4, shards: 2}
                                         """)
        let file = h.dir.appendingPathComponent("job.yaml").path
        try spec.write(toFile: file, atomically: true, encoding: .utf8)
        let reply = try h.cliJSON(["submit", file], as: SubmitReply.self)
        let runId = try #require(reply.runs.first?.id)
        try await h.waitUntil("the run and its evaluations are done", timeout: 240) {
            try h.cliJSON(["runs"], as: [RunSummary].self).first { $0.id == runId }?.state == "succeeded"
        }
        let evals = try h.cliJSON(["evals"], as: [EvalSummary].self).filter { $0.runId == runId }
        #expect(evals.compactMap(\.step).sorted() == [20, 40, 60], "one evaluation per checkpoint at the cadence")
        #expect(evals.allSatisfy { $0.state == "succeeded" && $0.utterances == 4 && $0.cer != nil })
        let cer = try h.cliJSON(["metrics", runId, "--key", "eval/cer"], as: MetricsReport.self).series ?? []
        #expect(cer.map(\.step) == [20, 40, 60])
        #expect(try h.cliJSON(["metrics", runId, "--key", "eval/cer_utt_mean"], as: MetricsReport.self).series?.count == 3)
        let evalShards = try h.shards().filter { $0.kind == "eval" }
        #expect(evalShards.count == 6 && evalShards.allSatisfy { $0.state == "succeeded" })
        #expect(Set(evalShards.compactMap { $0.history.last?.workerName }) == ["gpu-a", "gpu-b"], "spread over both workers")
        // The W&B offline run: eval values in its history and the audio samples under files/media.
        let wandb = h.dir.appendingPathComponent("wandb")
        let dir = try #require(try FileManager.default.contentsOfDirectory(atPath: wandb.path).first { $0.hasSuffix("-\(runId)") })
        let media = (FileManager.default.enumerator(atPath: wandb.appendingPathComponent(dir).appendingPathComponent("files/media").path)?
            .allObjects as? [String] ?? []).filter { $0.hasSuffix(".wav") }
        #expect(media.count >= 3, "audio samples of the evaluations: \(media)")
        // One per-utterance table per evaluation, as wandb.Table writes it: {"columns":[…],"data":[[…]]}.
        let tables = (FileManager.default.enumerator(atPath: wandb.appendingPathComponent(dir).appendingPathComponent("files/media/table").path)?
            .allObjects as? [String] ?? []).filter { $0.hasSuffix(".table.json") }.sorted()
        #expect(tables.count == 3, "one eval/table per checkpoint: \(tables)")
        for t in tables {
            let doc = try JSONCoding.decode(JSONValue.self, from: Array(try Data(contentsOf: wandb.appendingPathComponent(dir)
                .appendingPathComponent("files/media/table").appendingPathComponent(t))))
            guard case .object(let o) = doc, case .array(let cols)? = o["columns"], case .array(let rows)? = o["data"] else {
                Issue.record("table \(t) is not {columns, data}"); continue
            }
            #expect(cols.first?.stringValue == "id" && cols.contains(.string("cer")) && cols.contains(.string("hypothesis")))
            #expect(rows.count == 4, "every utterance of the subset in \(t)")
        }
        let log = try Data(contentsOf: wandb.appendingPathComponent(dir).appendingPathComponent("run-\(runId).wandb"))
        #expect(log.range(of: Data("eval/cer".utf8)) != nil, "eval/cer is in the W&B run's history")
        #expect(log.range(of: Data("table-file".utf8)) != nil, "eval/table is a table-file value in the W&B run's history")
    }

    @Test("the command ASR backend (a program that prints the transcript): any worker runs it, no Vosk needed; the scores follow exactly from its output")
    func commandASR() async throws {
        let h = try await Self.commandWorker()
        // Real audio files of the dataset, with transcripts of our choosing: the "ASR" reads
        // AUDIO.txt, so the expected CER is known exactly: one substitution in 12 characters.
        let (manifest, dir) = try Self.commandSet(h, "cmd", texts: ["가나다라", "마바사", "아자차카타"], heard: ["가나다라", "마바사", "아자차카파"])
        let r = try h.cli(["eval", "/ckpt/model.pth", "--manifest", manifest, "--asr", "command",
                           "--asr-command", "/bin/sh -c 'cat \"$0.txt\"' {audio}", "--shards", "2",
                           "--output", dir.appendingPathComponent("out").path, "--wait", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let e = try JSONCoding.decoder.decode(EvalSummary.self, from: Data(r.out.utf8))
        #expect(e.state == "succeeded" && e.utterances == 3 && e.failedUtterances == 0)
        #expect(e.cer == 1.0 / 12.0, "one substitution in 12 reference characters: \(String(describing: e.cer))")
        #expect(e.wer == 1.0 / 3.0)
        #expect(try h.shards().allSatisfy { $0.kind == "eval-command" && $0.state == "succeeded" })
    }

    @Test("--asr persistent: one Whisper-example process per shard over the stand-in faster_whisper, the exact CER its transcripts imply")
    func persistentASR() async throws {
        let h = try await Self.commandWorker()
        // Real audio of the dataset; the stand-in "recognizes" AUDIO.txt: one substitution in
        // 12 reference characters, one wrong word of three.
        let (manifest, dir) = try Self.commandSet(h, "persistent-asr", texts: ["가나다라", "마바사", "아자차카타"], heard: ["가나다라", "마바사", "아자차카파"])
        let model = dir.appendingPathComponent("faster-whisper-large-v3")
        try FileManager.default.createDirectory(at: model, withIntermediateDirectories: true)
        for file in ["model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"] {
            try "{}\n".write(to: model.appendingPathComponent(file), atomically: true, encoding: .utf8)
        }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let loads = dir.appendingPathComponent("loads.txt").path
        let command = ["/usr/bin/env", "PYTHONPATH=\(root.path)/Tests/Fixtures/eval/faster_whisper_standin", "STANDIN_LOADS=\(loads)", "python3",
                       root.path + "/examples/asr/whisper_large_v3_asr.py", "--model-dir", model.path, "--device", "cpu", "--compute-type", "int8"]
        let r = try h.cli(["eval", "/ckpt/model.pth", "--manifest", manifest, "--asr", "persistent", "--asr-command", command.joined(separator: " "),
                           "--asr-timeout", "60", "--shards", "2", "--output", dir.appendingPathComponent("out").path, "--wait", "--json"])
        #expect(r.status == 0, "\(r.err)")
        let e = try JSONCoding.decoder.decode(EvalSummary.self, from: Data(r.out.utf8))
        #expect(e.state == "succeeded" && e.utterances == 3 && e.failedUtterances == 0, "\(e)")
        #expect(e.cer == 1.0 / 12.0, "one substitution in 12 reference characters: \(String(describing: e.cer))")
        #expect(e.wer == 1.0 / 3.0)
        #expect(e.floorCer == 1.0 / 12.0, "the reference synthesizer's audio is the floor")
        let shards = try h.shards()
        #expect(shards.count == 2 && shards.allSatisfy { $0.kind == "eval-command" && $0.state == "succeeded" })
        let starts = ((try? String(contentsOfFile: loads, encoding: .utf8)) ?? "").split(separator: "\n")
        #expect(starts.count == 2, "one model load per shard: \(starts)")
    }

    /// A coordinator and one worker without Vosk or torch, which takes `eval-command` shards
    /// (the command and persistent ASR backends).
    private static func commandWorker() async throws -> ClusterHarness {
        let h = try ClusterHarness()
        try await h.startCoordinator(["--no-wandb"])
        try h.startWorker("plain", ["--no-torch"])
        try await h.waitUntil("the worker takes command-ASR eval shards", timeout: 30) {
            try h.workers().first?.capabilities.contains("shard:eval-command") == true
        }
        return h
    }

    /// A manifest over real audio of the dataset (copied as `u<i>.wav`, each also the prompt) with
    /// the transcripts `texts`; the stand-in ASRs read `<audio>.txt`, which holds `heard`
    /// (default: exactly the text) and which the synthesizer commands below copy.
    private static func commandSet(_ h: ClusterHarness, _ name: String, texts: [String], heard: [String]? = nil) throws -> (manifest: String, dir: URL) {
        let dataset = try #require(try Self.fixture("torch/torch_env.sh")["DATASET"])
        let audio = try FileManager.default.contentsOfDirectory(atPath: dataset + "/audio").filter { $0.hasSuffix(".wav") }.sorted().prefix(texts.count).map { dataset + "/audio/" + $0 }
        try #require(audio.count == texts.count)
        let dir = h.dir.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        var lines: [String] = []
        for (i, a) in audio.enumerated() {
            let copy = dir.appendingPathComponent("u\(i).wav").path
            try FileManager.default.copyItem(atPath: a, toPath: copy)
            try ((heard ?? texts)[i] + "\n").write(toFile: copy + ".txt", atomically: true, encoding: .utf8)
            lines.append(#"{"id": "u\#(i)", "target_text": "\#(texts[i])", "target_audio_path": "u\#(i).wav", "prompt_audio_path": "u\#(i).wav"}"#)
        }
        let manifest = dir.appendingPathComponent("test.jsonl").path
        try (lines.joined(separator: "\n") + "\n").write(toFile: manifest, atomically: true, encoding: .utf8)
        return (manifest, dir)
    }

    @Test("a synthesizer that writes silence for every utterance gives a failed evaluation: no CER, no WER, never 0 %")
    func silentSynthesizerFails() async throws {
        let h = try await Self.commandWorker()
        let set = try Self.commandSet(h, "silent", texts: ["가나다라", "마바사", "아자차카타"])
        let r = try h.cli(["eval", "/ckpt/model.pth", "--manifest", set.manifest, "--asr", "command",
                           "--asr-command", "/bin/sh -c 'cat \"$0.txt\"' {audio}",
                           "--synthesizer", "command", "--synth-command", "sox -q -n -r 16000 -c 1 -b 16 {output} trim 0.0 1.0",
                           "--output", set.dir.appendingPathComponent("out").path, "--wait", "--json"])
        let e = try JSONCoding.decoder.decode(EvalSummary.self, from: Data(r.out.utf8))
        #expect(e.state == "failed", "\(e)")
        #expect(e.cer == nil && e.wer == nil && e.cerUtteranceMean == nil)
        #expect(e.failedUtterances == 3)
        #expect(e.message.contains("no utterance could be scored") && e.message.contains("silent"), "\(e.message)")
        let mdPath = set.dir.appendingPathComponent("out/report.md").path
        try await h.waitUntil("the report is written", timeout: 15) { FileManager.default.fileExists(atPath: mdPath) }
        let md = try String(contentsOfFile: mdPath, encoding: .utf8)
        #expect(md.contains("No utterance could be scored"))
        #expect(md.contains("| CER (corpus: errors summed over the set ÷ reference characters) | n/a |"), "\(md)")
        #expect(md.contains("| WER (corpus) | n/a |"))
    }

    @Test("a synthesizer that fails half of the utterances gives a CER that counts them as deletions")
    func halfFailingSynthesizerCountsAsDeletions() async throws {
        let h = try await Self.commandWorker()
        let set = try Self.commandSet(h, "half", texts: ["가나다라", "마바사", "아자차카타", "파하"])
        // u0 and u2 are "spoken" (their audio and transcript copied), u1 and u3 fail.
        let synth = #"/bin/sh -c 'case "$0" in u0|u2) cp "$1" "$2" && cp "$1.txt" "$2.txt";; *) echo "cannot speak $0" >&2; exit 3;; esac' {id} {prompt_audio} {output}"#
        let r = try h.cli(["eval", "/ckpt/model.pth", "--manifest", set.manifest, "--asr", "command",
                           "--asr-command", "/bin/sh -c 'cat \"$0.txt\"' {audio}",
                           "--synthesizer", "command", "--synth-command", synth,
                           "--output", set.dir.appendingPathComponent("out").path, "--wait", "--json"])
        let e = try JSONCoding.decoder.decode(EvalSummary.self, from: Data(r.out.utf8))
        #expect(e.state == "succeeded", "\(e)")
        #expect(e.failedUtterances == 2)
        // Heard perfectly where spoken: the errors are u1's 3 and u3's 2 characters, of 14.
        #expect(e.cer.map { abs($0 - 5.0 / 14.0) < 1e-12 } == true, "\(String(describing: e.cer))")
        #expect(e.wer.map { abs($0 - 2.0 / 4.0) < 1e-12 } == true, "\(String(describing: e.wer))")
        let reportPath = set.dir.appendingPathComponent("out/report.json").path
        try await h.waitUntil("the report is written", timeout: 15) { FileManager.default.fileExists(atPath: reportPath) }
        let report = try String(contentsOfFile: reportPath, encoding: .utf8)
        #expect(report.contains("cannot speak u1") || report.contains("exit"), "the failure's reason is in the report")
        // The shards' notes (this worker has no speaker encoder): in the report, each once.
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(report.utf8)) as? [String: Any])
        let notes = try #require(doc["notes"] as? [String], "report.json has notes")
        #expect(notes.count == 1 && notes[0].hasPrefix("sim not measured: "), "\(notes)")
    }
}
