import Foundation
@testable import JobSpecs
@testable import Shared
import Testing

@Suite("Job specs")
struct JobSpecTests {
    static let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("examples")

    static let minimal = """
        name: ko
        project: indextts-korean
        command: python train.py --out {output_dir} --bs {batch_size} --ga {grad_accum} --lr {lr}
        hyperparameters: {lr: 1e-5}
        presets:
          a6000: {match: {name: A6000, min_memory_gb: 40}, batch_size: 16, grad_accum: 1}
          "4090": {match: {name: "4090"}, batch_size: 8, grad_accum: 2}
        """

    func error(_ yaml: String) -> JobSpecError? {
        do { _ = try JobSpecParser.parse(yaml: yaml); return nil } catch { return error }
    }

    @Test("defaults: kind train, runner command, checkpoint every 1000, 3 retries")
    func defaults() throws {
        let spec = try JobSpecParser.parse(yaml: Self.minimal)
        #expect(spec.kind == .train && spec.runner == .command)
        #expect(spec.checkpointEvery == 1000 && spec.maxRetries == 3 && spec.evalEvery == nil && spec.maxSteps == nil)
        #expect(spec.hyperparameters == [Hyperparameter(name: "lr", value: ParameterValue("1e-5"))])
        #expect(spec.presets.map(\.name) == ["a6000", "4090"])
        #expect(spec.effectiveBatch == 16)
    }

    @Test("runner: torch takes a model and manifests instead of a command, with its optimizer settings as hyperparameters")
    func torchRunner() throws {
        let spec = try JobSpecParser.parse(yaml: """
            name: ref
            project: p
            runner: torch
            model: /models/reference.pt
            train_manifests: [/data/gpt_pairs_train.jsonl::ko]
            hyperparameters: {lr: 3e-4, warmup: 20, schedule: cosine, weight_decay: 0.01, grad_clip: 1.0, seed: 7}
            max_steps: 200
            presets:
              cpu: {match: {}, batch_size: 8, grad_accum: 1}
            """)
        #expect(spec.runner == .torch && spec.shardKind == "torch")
        #expect(spec.model == "/models/reference.pt")
        #expect(spec.command.parts.isEmpty)
        #expect(spec.hyperparameters.map(\.name) == ["lr", "warmup", "schedule", "weight_decay", "grad_clip", "seed"])
        #expect((try? JobSpecParser.parse(yaml: "name: r\nproject: p\nrunner: torch\ntrain_manifests: [a.jsonl]\n")) == nil, "a model is required")
    }

    @Test("eval: evaluates checkpoints at eval_every with a seeded subset, a synthesizer and an ASR backend")
    func evaluationPlan() throws {
        let base = "name: e\nproject: p\ncommand: [t, \"{eval_every}\"]\neval_every: 500\n"
        let spec = try JobSpecParser.parse(yaml: base + """
            eval:
              manifests: [/d/val.jsonl::ko]
              num_samples: 20
              synthesizer: {command: [python, infer.py, --gpt, "{checkpoint}", --out, "{output}"], timeout_seconds: 60}
              asr: {command: [whisper-cli, "{audio}"]}
              shards: 3
            """)
        let plan = try #require(spec.evaluation)
        #expect(plan.manifests == [ManifestSpec(path: "/d/val.jsonl", language: "ko")])
        #expect(plan.numSamples == 20 && plan.shards == 3)
        #expect(plan.synthesizer == SynthesizerSpec(kind: "command", command: ["python", "infer.py", "--gpt", "{checkpoint}", "--out", "{output}"], timeoutSeconds: 60))
        #expect(plan.asrCommand == ["whisper-cli", "{audio}"])
        let reference = try JobSpecParser.parse(yaml: base + "eval: {manifests: [v.jsonl], synthesizer: reference}\n")
        #expect(reference.evaluation?.synthesizer == .reference && reference.evaluation?.asrCommand == nil)
        func field(_ yaml: String) -> String? {
            do { _ = try JobSpecParser.parse(yaml: yaml); return nil } catch { return error.field }
        }
        #expect(field(base + "eval: {manifests: [v.jsonl], asr: {command: [whisper-cli]}}\n") == "eval.asr.command")
        #expect(field(base + "eval: {num_samples: 3}\n") == "eval.manifests")
        #expect(field("name: e\nproject: p\ncommand: [t]\neval: {manifests: [v.jsonl]}\n") == "eval_every")
        #expect(field(base + "eval: {manifests: [v.jsonl], synthesizer: tts}\n") == "eval.synthesizer")
    }

    @Test("each card gets its class's preset and the same effective batch")
    func presetResolution() throws {
        let spec = try JobSpecParser.parse(yaml: Self.minimal)
        guard case .matched(let a) = spec.resolvePreset(deviceName: "NVIDIA RTX A6000", memoryGB: 51.5) else {
            Issue.record("the A6000 matched no preset"); return
        }
        guard case .matched(let b) = spec.resolvePreset(deviceName: "NVIDIA GeForce RTX 4090", memoryGB: 25.4) else {
            Issue.record("the 4090 matched no preset"); return
        }
        #expect(a.name == "a6000" && a.batch == BatchSettings(batchSize: 16, gradAccum: 1))
        #expect(b.name == "4090" && b.batch == BatchSettings(batchSize: 8, gradAccum: 2))
        #expect(a.batch.effectiveBatch == b.batch.effectiveBatch)
        guard case .noMatch(let reason) = spec.resolvePreset(deviceName: "NVIDIA RTX A6000", memoryGB: 24) else {
            Issue.record("an A6000 with 24 GB must not match min_memory_gb 40"); return
        }
        #expect(reason.contains("a6000 needs name contains 'A6000' and ≥ 40 GB"))
        if case .matched = spec.resolvePreset(deviceName: "NVIDIA GeForce RTX 3090", memoryGB: 24) {
            Issue.record("a 3090 must wait: no preset names it")
        }
    }

    @Test("presets with different effective batches are refused, naming the field and line")
    func unequalEffectiveBatch() throws {
        let e = try #require(error(Self.minimal.replacingOccurrences(of: "batch_size: 8, grad_accum: 2", with: "batch_size: 8, grad_accum: 1")))
        #expect(e.field == "presets" && e.line == 6)
        #expect(e.message.contains("a6000: 16 × 1 = 16") && e.message.contains("4090: 8 × 1 = 8"))
    }

    @Test("world: gpus, or nodes × gpus_per_node; a rank's batch keeps the effective batch (accumulation adjusts, the micro-batch never grows)")
    func world() throws {
        #expect(try JobSpecParser.parse(yaml: Self.minimal).world == .single)
        let two = try JobSpecParser.parse(yaml: Self.minimal + "\nworld: {gpus: 2}")
        #expect(two.world == WorldSpec(gpus: 2) && two.world.isGang)
        let grid = try JobSpecParser.parse(yaml: Self.minimal + "\nworld: {nodes: 2, gpus_per_node: 2}")
        #expect(grid.world == WorldSpec(gpus: 4, nodes: 2, gpusPerNode: 2))
        // The guide's presets: A6000 16 × 1, 4090 8 × 2 (effective 16).
        #expect(WorldSpec(gpus: 2).rankBatch(BatchSettings(batchSize: 16, gradAccum: 1)) == BatchSettings(batchSize: 8, gradAccum: 1))
        #expect(WorldSpec(gpus: 2).rankBatch(BatchSettings(batchSize: 8, gradAccum: 2)) == BatchSettings(batchSize: 8, gradAccum: 1))
        #expect(WorldSpec(gpus: 4).rankBatch(BatchSettings(batchSize: 8, gradAccum: 2)) == BatchSettings(batchSize: 4, gradAccum: 1))
        #expect(WorldSpec(gpus: 2).rankBatch(BatchSettings(batchSize: 4, gradAccum: 8)) == BatchSettings(batchSize: 4, gradAccum: 4))
        #expect(WorldSpec(gpus: 2).rankBatch(BatchSettings(batchSize: 6, gradAccum: 3)) == BatchSettings(batchSize: 3, gradAccum: 3), "9 per rank: micro 6 does not divide it, 3 does")
        #expect(WorldSpec(gpus: 3).rankBatch(BatchSettings(batchSize: 8, gradAccum: 2)) == nil)
        for gpus in 1...8 {
            for b in [BatchSettings(batchSize: 16, gradAccum: 1), BatchSettings(batchSize: 8, gradAccum: 2), BatchSettings(batchSize: 3, gradAccum: 8)] {
                guard let r = WorldSpec(gpus: gpus).rankBatch(b) else { continue }
                #expect(r.effectiveBatch * gpus == b.effectiveBatch && r.batchSize <= b.batchSize, "\(b) over \(gpus)")
            }
        }
    }

    @Test("alerts: the run's own rule settings, kept as JSON (plain numbers and booleans typed, quoted text kept), and a rule that is not a mapping is refused")
    func alertSettings() throws {
        #expect(try JobSpecParser.parse(yaml: Self.minimal).alerts == nil)
        let spec = try JobSpecParser.parse(yaml: Self.minimal + """

            alerts:
              stalled: {floor_seconds: 120, enabled: true}
              loss_spike: {keys: [train/loss], threshold: "2"}
            """)
        #expect(spec.alerts == ["stalled": .object(["floor_seconds": .number(120), "enabled": .bool(true)]),
                                "loss_spike": .object(["keys": .array([.string("train/loss")]), "threshold": .string("2")])])
        let flat = try #require(error(Self.minimal + "\nalerts: {stalled: 120}"))
        #expect(flat.field == "alerts.stalled" && flat.message.contains("expected a mapping of the rule's settings"), "\(flat)")
        let list = try #require(error(Self.minimal + "\nalerts: [stalled]"))
        #expect(list.field == "alerts", "\(list)")
    }

    @Test("a world the effective batch cannot be shared by and a malformed world are refused with what to write")
    func worldErrors() throws {
        let three = try #require(error(Self.minimal + "\nworld: {gpus: 3}"))
        #expect(three.field == "world" && three.message.contains("effective batch 16") && three.message.contains("multiple of 3"))
        let mixed = try #require(error(Self.minimal + "\nworld: {gpus: 3, nodes: 2, gpus_per_node: 2}"))
        #expect(mixed.message.contains("gpus disagrees with nodes × gpus_per_node"))
        let half = try #require(error(Self.minimal + "\nworld: {nodes: 2}"))
        #expect(half.message.contains("both nodes and gpus_per_node"))
        let typo = try #require(error(Self.minimal + "\nworld: {gpu: 2}"))
        #expect(typo.field == "world.gpu" && typo.message.contains("unknown key"))
        let zero = try #require(error(Self.minimal + "\nworld: {gpus: 0}"))
        #expect(zero.field == "world.gpus")
    }

    @Test("a rank's command gets its placement: rank, world size, local rank, nodes, node rank, the rendezvous address and port; the effective batch is the run's")
    func rankPlaceholders() throws {
        let spec = try JobSpecParser.parse(yaml: """
            name: ddp
            project: p
            command: torchrun --nnodes {nnodes} --node_rank {node_rank} --nproc_per_node 1 --master_addr {master_addr} --master_port {master_port} train.py --rank {rank} --world {world_size} --local {local_rank} --bs {batch_size} --ga {grad_accum} --eff {effective_batch}
            batch_size: 8
            grad_accum: 2
            world: {gpus: 2}
            """)
        let placement = RankPlacement(rank: 1, worldSize: 2, localRank: 0, localWorldSize: 1, nodes: 2, nodeRank: 1, masterAddress: "10.0.0.5", masterPort: 41_234)
        let argv = try spec.renderCommand(run: spec.runs()[0], gpu: 0, runId: "r1", outputDir: "/o", batch: try #require(spec.world.rankBatch(spec.defaultBatch)),
                                          resumeCheckpoint: nil, placement: placement)
        #expect(argv.joined(separator: " ") == "torchrun --nnodes 2 --node_rank 1 --nproc_per_node 1 --master_addr 10.0.0.5 --master_port 41234 train.py --rank 1 --world 2 --local 0 --bs 8 --ga 1 --eff 16")
        #expect(placement.environment == ["MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "41234", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "0",
                                          "LOCAL_WORLD_SIZE": "1", "GROUP_RANK": "1", "NODE_RANK": "1"])
    }

    @Test("OOM downshift halves the micro-batch and doubles accumulation down to the floor")
    func downshift() {
        let start = BatchSettings(batchSize: 16, gradAccum: 1)
        #expect(start.downshifted() == BatchSettings(batchSize: 8, gradAccum: 2))
        #expect(start.downshifted()?.downshifted()?.downshifted()?.downshifted() == BatchSettings(batchSize: 1, gradAccum: 16))
        #expect(BatchSettings(batchSize: 1, gradAccum: 16).downshifted() == nil)
        #expect(BatchSettings(batchSize: 4, gradAccum: 4).downshifted(floor: 4) == nil)
        #expect(BatchSettings(batchSize: 6, gradAccum: 1).downshifted() == BatchSettings(batchSize: 3, gradAccum: 2))
        #expect(BatchSettings(batchSize: 3, gradAccum: 2).downshifted() == nil, "an odd batch cannot halve without changing the effective batch")
    }

    @Test("errors name the field and its line", arguments: [
        ("name: ko\nproject: p\ncommand: x\nmax_step: 10\n", "max_step", 4),
        ("name: ko\nproject: p\ncommand: x\ncheckpoint_every: 0\n", "checkpoint_every", 4),
        ("name: ko\nproject: p\ncommand: x\neval_every: soon\n", "eval_every", 4),
        ("name: ko\nproject: p\ncommand: x --lr {lr}\n", "command", 3),
        ("name: ko\nproject: p\ncommand: x\nrunner: jax\n", "runner", 4),
        ("name: ko\nproject: p\ncommand: x\nrunner: torch\n", "command", 3),
        ("name: ko\nproject: p\nrunner: torch\nmodel: m.pt\ntrain_manifests: [a.jsonl]\nhyperparameters: {momentum: 0.9}\n", "hyperparameters.momentum", 6),
        ("name: ko\nproject: p\nrunner: torch\nmodel: m.pt\ntrain_manifests: [a.jsonl]\nhyperparameters: {schedule: step}\n", "hyperparameters.schedule", 6),
        ("name: ko\nproject: p\ncommand: x\nkind: eval\n", "kind", 4),
        ("name: ko\nproject: p\ncommand: x\npresets:\n  a: {match: {name: A}, grad_accum: 2}\n", "presets.a.batch_size", 5),
        ("name: ko\nproject: p\ncommand: x\npresets:\n  a: {match: {gpu: A}, batch_size: 2}\n", "presets.a.match.gpu", 5),
        ("name: ko\nproject: p\ncommand: x\nsweep: {grid: {lr: []}}\n", "sweep.grid.lr", 4),
        ("name: ko\nproject: p\ncommand: x\nhyperparameters: {batch_size: 4}\n", "hyperparameters.batch_size", 4),
        ("name: ko\nproject: p\ncommand: 'x\n", "", 4), // libyaml reports the end of the stream
        ("name: ko/x\nproject: p\ncommand: x\n", "name", 1),
        ("project: p\ncommand: x\n", "name", 1),
    ])
    func located(yaml: String, field: String, line: Int) throws {
        let e = try #require(error(yaml), "expected \(field) to be refused")
        #expect(e.field == field, "\(e)")
        #expect(e.line == line, "\(e)")
        #expect(e.description.contains("line \(line)"))
    }

    @Test("a 2 × 2 sweep makes four runs named after their values in one group")
    func sweep() throws {
        let spec = try JobSpecParser.parse(yaml: Self.minimal + "\nsweep: {grid: {lr: [1e-5, 2e-5], warmup: [1000, 30000]}}\n")
        let runs = spec.runs()
        #expect(runs.map(\.name) == ["lr1e-5_warmup1k", "lr1e-5_warmup30k", "lr2e-5_warmup1k", "lr2e-5_warmup30k"])
        #expect(runs.allSatisfy { $0.group == "ko" })
        #expect(runs[1]["lr"]?.text == "1e-5" && runs[1]["warmup"]?.text == "30000")
        #expect(runs[1].sweepValues.map(\.name) == ["lr", "warmup"])
        #expect(try JobSpecParser.parse(yaml: Self.minimal).runs().map(\.name) == ["ko"])
    }

    @Test("run-name labels: thousands as k, millions as M, other values as written")
    func labels() {
        #expect(SweepGrid.label(ParameterValue("30000")) == "30k")
        #expect(SweepGrid.label(ParameterValue("2000000")) == "2M")
        #expect(SweepGrid.label(ParameterValue("1500")) == "1500")
        #expect(SweepGrid.label(ParameterValue("1e-5")) == "1e-5")
        #expect(SweepGrid.label(ParameterValue("adam w")) == "adam-w")
    }

    @Test("manifest specs split off the language hint")
    func manifests() {
        #expect(ManifestSpec(parsing: "/d/gpt_pairs_train.jsonl::ko") == ManifestSpec(path: "/d/gpt_pairs_train.jsonl", language: "ko"))
        #expect(ManifestSpec(parsing: "/d/a.jsonl@KO").language == "ko")
        #expect(ManifestSpec(parsing: "/d/a.jsonl") == ManifestSpec(path: "/d/a.jsonl"))
        #expect(ManifestSpec(path: "/d/a.jsonl", language: "ko").description == "/d/a.jsonl::ko")
    }

    @Test("a command line is split like a shell, and values stay single arguments")
    func commandLine() throws {
        #expect(try CommandTemplate.split(#"python "my script.py" --name 'a b' --x=\"q\" c\ d"#)
                == ["python", "my script.py", "--name", "a b", "--x=\"q\"", "c d"])
        #expect(throws: CommandTemplateError.self) { try CommandTemplate.split("python 'unterminated") }
        let t = try CommandTemplate(commandLine: "train --out {output_dir} --tag run-{run_id} --json '{\"a\": 1}' {{literal}}")
        #expect(t.placeholders == ["output_dir", "run_id"])
        let argv = try t.render(["output_dir": "/ckpt/with space; rm -rf /", "run_id": "r1"])
        #expect(argv == ["train", "--out", "/ckpt/with space; rm -rf /", "--tag", "run-r1", "--json", "{\"a\": 1}", "{literal}"])
        #expect(throws: CommandTemplateError.self) { try t.render(["output_dir": "x"]) }
    }

    @Test("the example specs parse, and render the real trainer's command with the guide's preset for each card")
    func examples() throws {
        let file = Self.examples.appendingPathComponent("ko-finetune-a6000-4090.yaml").path
        let spec = try JobSpecParser.parse(contentsOf: file)
        #expect(spec.presets.map(\.batch) == [BatchSettings(batchSize: 16, gradAccum: 1), BatchSettings(batchSize: 8, gradAccum: 1)])
        #expect(!spec.sameEffectiveBatch)
        #expect(spec.trainManifests == [ManifestSpec(path: "/data/ko/KO_preprocessed/gpt_pairs_train.jsonl", language: "ko")])
        #expect(spec.environment["PYTHONUNBUFFERED"] == "1")
        #expect(spec.python == "/srv/index-tts/.venv/bin/python" && spec.resume == .full && spec.stopGrace == .seconds(1200))
        #expect(spec.retention == RetentionPolicy(last: 3, best: 2, measure: "eval/cer"))
        let run = try #require(spec.runs().first)
        let rtx4090 = spec.presets[1]
        let fresh = try spec.renderCommand(run: run, gpu: 1, runId: "r-7", outputDir: "/shared/ckpt/r-7",
                                           batch: rtx4090.batch, resumeCheckpoint: nil, preset: rtx4090)
        #expect(!fresh.contains("--resume"), "the optional resume group is left out on a first start")
        #expect(!fresh.contains(""), "no empty argument")
        #expect(fresh.contains("--train-manifest") && fresh.contains("/data/ko/KO_preprocessed/gpt_pairs_train.jsonl::ko"))
        let i = try #require(fresh.firstIndex(of: "--batch-size"))
        #expect(Array(fresh[i...(i + 9)]) == ["--batch-size", "8", "--grad-accumulation", "1", "--learning-rate", "2e-5",
                                              "--warmup-steps", "1000", "--grad-clip", "1.0"], "the 4090 preset's own LR, warm-up and clip")
        let w = try #require(fresh.firstIndex(of: "--num-workers"))
        #expect(Int(fresh[w + 1]).map { $0 >= 1 } == true, "--num-workers 0 (the trainer's default) crashes on torch >= 2")
        let a6000 = spec.presets[0]
        let onA6000 = try spec.renderCommand(run: run, gpu: 0, runId: "r-7", outputDir: "/o", batch: a6000.batch, resumeCheckpoint: nil, preset: a6000)
        #expect(onA6000[onA6000.firstIndex(of: "--learning-rate")! + 1] == "1e-5" && onA6000[onA6000.firstIndex(of: "--warmup-steps")! + 1] == "30000")
        let resumed = try spec.renderCommand(run: run, gpu: 1, runId: "r-7", outputDir: "/shared/ckpt/r-7",
                                             batch: rtx4090.batch, resumeCheckpoint: "/shared/ckpt/r-7/pins/step-3000.pth", preset: rtx4090)
        #expect(Array(resumed.suffix(2)) == ["--resume", "/shared/ckpt/r-7/pins/step-3000.pth"])

        let sweep = try JobSpecParser.parse(contentsOf: Self.examples.appendingPathComponent("sweep-lr-warmup.yaml").path)
        #expect(sweep.runs().map(\.name) == ["lr1e-5_warmup1k", "lr1e-5_warmup30k", "lr2e-5_warmup1k", "lr2e-5_warmup30k"])
        #expect(Set(sweep.runs().map(\.group)) == ["ko-lr-warmup"])
        let argv = try sweep.renderCommand(run: sweep.runs()[3], gpu: 0, runId: "r", outputDir: "/o",
                                           batch: BatchSettings(batchSize: 16, gradAccum: 1), resumeCheckpoint: nil)
        #expect(argv.contains("2e-5") && argv.contains("30000"))
        #expect(!argv.contains("--resume") && !argv.contains(""), "a flag followed by an empty placeholder is left out in the string form too")
    }

    @Test("a flag followed by a placeholder with no value is dropped, never rendered as an empty argument")
    func implicitOptionalGroups() throws {
        let t = try CommandTemplate(commandLine: "train --val-interval {eval_every} --max-steps {max_steps} --tag x{run_id} --resume {resume_checkpoint}")
        #expect(try t.render(["eval_every": "", "max_steps": "200", "run_id": "", "resume_checkpoint": ""])
                == ["train", "--max-steps", "200", "--tag", "x"], "only a word that is the placeholder alone makes the pair optional")
        #expect(try t.render(["eval_every": "100", "max_steps": "", "run_id": "7", "resume_checkpoint": "/c.pth"])
                == ["train", "--val-interval", "100", "--tag", "x7", "--resume", "/c.pth"])
        let spec = try JobSpecParser.parse(yaml: """
            name: n
            project: p
            command: [t, --val-interval, "{eval_every}", --max-steps, "{max_steps}"]
            """)
        let argv = try spec.renderCommand(run: spec.runs()[0], gpu: 0, runId: "r", outputDir: "/o", batch: spec.defaultBatch, resumeCheckpoint: nil)
        #expect(argv == ["t"], "unset eval_every and max_steps leave no `--val-interval \"\"` for argparse to refuse")
    }

    @Test("presets may override hyperparameters per card; the effective-batch rule holds unless the spec turns it off")
    func presetHyperparameters() throws {
        let base = """
            name: n
            project: p
            command: [t, --lr, "{lr}", --bs, "{batch_size}"]
            hyperparameters: {lr: 1e-5}

            """
        let spec = try JobSpecParser.parse(yaml: base + """
            same_effective_batch: false
            presets:
              a6000: {match: {name: A6000}, batch_size: 16}
              "4090": {match: {name: "4090"}, batch_size: 8, hyperparameters: {lr: 2e-5}}
            """)
        let run = spec.runs()[0]
        let argv = try spec.renderCommand(run: run, gpu: 0, runId: "r", outputDir: "/o", batch: spec.presets[1].batch, resumeCheckpoint: nil, preset: spec.presets[1])
        #expect(argv == ["t", "--lr", "2e-5", "--bs", "8"])
        let refused = error(base + """
            presets:
              a6000: {match: {name: A6000}, batch_size: 16}
              "4090": {match: {name: "4090"}, batch_size: 8}
            """)
        #expect(refused?.field == "presets" && refused?.message.contains("same_effective_batch: false") == true)
        let unknown = error(base + "presets:\n  a: {batch_size: 8, hyperparameters: {warmup: 10}}\n")
        #expect(unknown?.field == "presets.a.hyperparameters.warmup")
    }

    @Test("python, resume, stop_grace and keep are read and checked")
    func checkpointSettings() throws {
        let base = "name: n\nproject: p\ncommand: [t]\n"
        let spec = try JobSpecParser.parse(yaml: base + "python: /venv/bin/python\nresume: newest\nstop_grace: 1h30m\nkeep: {last: 2, best: 1, by: val/text_loss}\n")
        #expect(spec.python == "/venv/bin/python" && spec.resume == .newest && spec.stopGrace == .seconds(5400))
        #expect(spec.retention == RetentionPolicy(last: 2, best: 1, measure: "val/text_loss"))
        let defaults = try JobSpecParser.parse(yaml: base)
        #expect(defaults.resume == .full && defaults.stopGrace == .seconds(1200) && defaults.retention == nil && defaults.python == nil)
        #expect(try JobSpecParser.parse(yaml: base + "stop_grace: 90\n").stopGrace == .seconds(90))
        #expect(error(base + "resume: oldest\n")?.field == "resume")
        #expect(error(base + "stop_grace: soon\n")?.field == "stop_grace")
        #expect(error(base + "keep: {best: 2}\n")?.field == "keep.by", "best needs a measure")
        #expect(error(base + "keep: {}\n")?.field == "keep")
        #expect(error(base + "keep: {last: 0}\n")?.field == "keep.last")
    }

    @Test("durations read as users write them")
    func durations() {
        #expect(Duration.parseSpec("20m") == .seconds(1200))
        #expect(Duration.parseSpec("1h30m") == .seconds(5400))
        #expect(Duration.parseSpec("45s") == .seconds(45))
        #expect(Duration.parseSpec("2.5") == .milliseconds(2500))
        #expect(Duration.parseSpec("m") == nil && Duration.parseSpec("10x") == nil && Duration.parseSpec("") == nil && Duration.parseSpec("-5") == nil)
    }

    @Test("the dry-run preview shows every run's command on every card, first start and resumed")
    func preview() throws {
        let spec = try JobSpecParser.parse(contentsOf: Self.examples.appendingPathComponent("ko-finetune-a6000-4090.yaml").path)
        let preview = try JobSpecPreview.make(spec)
        #expect(preview.commands.count == 4)
        #expect(preview.commands.map(\.preset) == ["a6000", "a6000", "4090", "4090"])
        #expect(preview.commands.filter(\.resumed).allSatisfy { $0.argv.contains("--resume") })
        #expect(preview.notes.isEmpty, "\(preview.notes)")
        #expect(preview.text.contains("--num-workers 4"))
    }

    @Test("every file in examples/ parses")
    func allExamplesParse() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.examples.path).filter { $0.hasSuffix(".yaml") }
        #expect(names.count >= 2)
        for n in names { _ = try JobSpecParser.parse(contentsOf: Self.examples.appendingPathComponent(n).path) }
    }
}
