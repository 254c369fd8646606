import Testing
@testable import Shared
@testable import Worker

@Suite("Trainer stdout lines and OOM")
struct TrainerLogParserTests {
    @Test("a [Train] line gives train/ metrics at its step")
    func trainLine() throws {
        let line = "[Train] epoch=3 step=14500 text_loss=0.9648 mel_loss=3.6120 mel_top1=0.1712 lr=1.00e-05 | 41.2 steps/min ETA:12.30h | grad_norm=0.873 GPU=21.40GB"
        let p = try #require(TrainerLogParser.parse(line))
        #expect(p.phase == .train && p.epoch == 3 && p.step == 14500)
        #expect(p.values.map(\.key) == ["train/text_loss", "train/mel_loss", "train/mel_top1", "train/lr",
                                        "train/steps_per_min", "train/eta_hours", "train/grad_norm", "train/gpu_memory_allocated_gb"])
        #expect(p.values.map(\.value) == [0.9648, 3.6120, 0.1712, 1e-5, 41.2, 12.3, 0.873, 21.4])
        let points = p.metricPoints(runId: "r1", wallTime: 5)
        #expect(points.first == MetricPoint(runId: "r1", step: 14500, key: "train/text_loss", value: 0.9648, wallTime: 5))
    }

    @Test("the real trainer's [Train] line gives every number it prints (train_gpt_v2.py at 7de3cca, no space before the units)")
    func realTrainLine() throws {
        let line = "[Train] epoch=1 step=3 text_loss=5.4703 mel_loss=9.2068 mel_top1=0.0037 lr=9.62e-06 | 374.2steps/min 24.9samples/s 0.16s/step ETA:0.0h | grad_norm=4.08 (clipped 0.50) lr_eff=9.619e-06 GPU=0.0GB data=3.7%"
        let p = try #require(TrainerLogParser.parse(line))
        #expect(p.phase == .train && p.epoch == 1 && p.step == 3)
        let values = Dictionary(uniqueKeysWithValues: p.values.map { ($0.key, $0.value) })
        #expect(values == [
            "train/text_loss": 5.4703, "train/mel_loss": 9.2068, "train/mel_top1": 0.0037, "train/lr": 9.62e-06,
            "train/steps_per_min": 374.2, "train/samples_per_sec": 24.9, "train/time_per_step": 0.16, "train/eta_hours": 0.0,
            "train/grad_norm": 4.08, "train/gradient_norm_clipped": 0.50, "train/lr_effective": 9.619e-06,
            "train/gpu_memory_allocated_gb": 0.0, "train/data_wait_pct": 3.7,
        ])
        #expect(p.values.count == 13, "each number once")
    }

    @Test("the real trainer's [Info] lines become notices: resumed (with its step), new best, complete")
    func notices() {
        #expect(TrainerNotice.parse("[Info] Resumed from /out/latest_full.pth at epoch 0, step 1000.")
                == .resumed(checkpoint: "/out/latest_full.pth", epoch: 0, step: 1000))
        #expect(TrainerNotice.parse("[Info] Resumed from /runs/a at epoch 3/pins/step-20.pth at epoch 2, step 20.")
                == .resumed(checkpoint: "/runs/a at epoch 3/pins/step-20.pth", epoch: 2, step: 20), "a path may hold the same words")
        #expect(TrainerNotice.parse("[Info] New best validation text_loss: 5.5996. Saving best_model.pth...") == .newBest(textLoss: 5.5996))
        #expect(TrainerNotice.parse("[Info] Triggering CPU inference for sample: /o/best_val_5.5996.wav") == .sampleInference(output: "/o/best_val_5.5996.wav"))
        #expect(TrainerNotice.parse("Training complete.") == .complete)
        #expect(TrainerNotice.parse("[Info] Loading checkpoint from /x ...") == nil)
        #expect(TrainerNotice.parse("[Info] Resumed from /x at epoch a, step 3.") == nil)
    }

    @Test("a [Val] line gives val/ metrics and val/time_minutes")
    func valLine() throws {
        let p = try #require(TrainerLogParser.parse("[Val] epoch=1 step=1000 text_loss=6.9400 mel_loss=4.7700 mel_top1=0.1700 | val_time=1.25min"))
        #expect(p.phase == .val && p.step == 1000)
        #expect(p.values.map(\.key) == ["val/text_loss", "val/mel_loss", "val/mel_top1", "val/time_minutes"])
        #expect(p.values.map(\.value) == [6.94, 4.77, 0.17, 1.25])
    }

    @Test("the line as the real trainer prints it (no tail) and with a logger prefix")
    func plainAndPrefixed() throws {
        let p = try #require(TrainerLogParser.parse("2025-11-02 10:00:01 INFO [Val] epoch=2 step=2000 text_loss=0.9358 mel_loss=3.5000 mel_top1=0.2000"))
        #expect(p.step == 2000 && p.values.count == 3)
        #expect(TrainerLogParser.parse("[Train] epoch=1 step=5/100 text_loss=1.0")?.step == 5)
    }

    @Test("nan and inf are carried, not dropped")
    func nonFinite() throws {
        let p = try #require(TrainerLogParser.parse("[Train] epoch=1 step=7 text_loss=nan mel_loss=inf mel_top1=-inf lr=1.00e-05"))
        #expect(p.values[0].value.isNaN)
        #expect(p.values[1].value == .infinity)
        #expect(p.values[2].value == -.infinity)
    }

    @Test("other lines are not metrics", arguments: [
        "[Info] Parsing manifest /data/ko.jsonl ...",
        "[Train] epoch=1 text_loss=1.0",          // no step
        "Train epoch=1 step=3 text_loss=1.0",     // no marker
        "",
        "[Warning] aim not installed. Run: pip install aim",
    ])
    func notMetrics(line: String) {
        #expect(TrainerLogParser.parse(line) == nil)
    }

    @Test("a token that is not a number is skipped, the rest kept")
    func junkToken() throws {
        let p = try #require(TrainerLogParser.parse("[Train] epoch=1 step=3 text_loss=abc mel_loss=2.5 note=x"))
        #expect(p.values.map(\.key) == ["train/mel_loss"])
    }

    @Test("CUDA OOM is recognised in all of PyTorch's spellings", arguments: [
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
        "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 23.65 GiB total capacity)",
        "RuntimeError: CUDA out of memory. Tried to allocate 1.50 GiB",
        "RuntimeError: CUDA error: out of memory",
        "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
    ])
    func oom(line: String) {
        #expect(OutOfMemoryText.matches(line))
    }

    @Test("errors that are not OOM are not OOM", arguments: [
        "Exception: manifest not found",
        "RuntimeError: Expected all tensors to be on the same device",
        "[Info] ZOOM level 3",
        "ValueError: OOM-like text but not from CUDA",
    ])
    func notOOM(line: String) {
        #expect(!OutOfMemoryText.matches(line))
    }

    @Test("the OOM line is found in a stderr tail")
    func oomInTail() {
        let tail = "Traceback (most recent call last):\n  File \"x.py\", line 1\ntorch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
        #expect(OutOfMemoryText.firstLine(in: tail)?.hasPrefix("torch.OutOfMemoryError") == true)
        #expect(OutOfMemoryText.firstLine(in: "Exception: boom\n") == nil)
    }

    @Test("the fixture trainer's OOM exits 1 with a line the detector recognises")
    func fixtureOOM() throws {
        let out = TrainerFixture.temporaryDirectory("oom")
        let r = try TrainerFixture.train(["--output-dir", out, "--batch-size", "16", "--oom-at-batch", "16"])
        #expect(r.status == 1)
        #expect(OutOfMemoryText.firstLine(in: r.stderr) != nil, "stderr: \(r.stderr)")
        let ok = try TrainerFixture.train(["--output-dir", out, "--batch-size", "8", "--oom-at-batch", "16", "--max-steps", "2"])
        #expect(ok.status == 0 && OutOfMemoryText.firstLine(in: ok.stderr) == nil)
    }

    // MARK: De-duplication

    func point(_ key: String, _ step: Int64, _ value: Double = 1) -> MetricPoint {
        MetricPoint(runId: "r", step: step, key: key, value: value, wallTime: 0)
    }

    @Test("a metric reported by stdout and TensorBoard passes once; TensorBoard-only keys pass")
    func dedupBothSources() {
        var d = MetricDeduplicator()
        #expect(d.admit([point("train/mel_loss", 1, 3.5)], from: .stdout).count == 1)
        #expect(d.admit([point("train/mel_loss", 1, 3.4999), point("train/samples_per_sec", 1)], from: .tensorboard)
                == [point("train/samples_per_sec", 1)])
        #expect(d.admit([point("train/mel_loss", 1)], from: .stdout).isEmpty, "a repeat of the same source is dropped too")
    }

    @Test("every metric the fixture writes passes exactly once when both sources are merged")
    func dedupFixture() throws {
        let out = TrainerFixture.temporaryDirectory("dedup")
        let r = try TrainerFixture.train(["--output-dir", out, "--max-steps", "25", "--checkpoint-every", "10"])
        try #require(r.status == 0, "\(r.stderr)")
        var tb = TensorBoardScalarReader(directory: out + "/logs")
        let tbPoints = tb.poll().scalars.map { $0.metricPoint(runId: "r") }
        let stdoutPoints = r.stdout.split(separator: "\n").compactMap { TrainerLogParser.parse($0) }.flatMap { $0.metricPoints(runId: "r", wallTime: 0) }
        var d = MetricDeduplicator()
        var admitted: [MetricPoint] = []
        // Interleave the sources in small batches, as the runner would.
        var i = 0, j = 0
        while i < stdoutPoints.count || j < tbPoints.count {
            admitted += d.admit(Array(stdoutPoints[i..<min(i + 7, stdoutPoints.count)]), from: .stdout)
            admitted += d.admit(Array(tbPoints[j..<min(j + 5, tbPoints.count)]), from: .tensorboard)
            i = min(i + 7, stdoutPoints.count)
            j = min(j + 5, tbPoints.count)
        }
        let keys = admitted.map { "\($0.key)@\($0.step)" }
        #expect(Set(keys).count == keys.count, "nothing twice")
        let expected = Set((stdoutPoints + tbPoints).map { "\($0.key)@\($0.step)" })
        #expect(Set(keys) == expected, "nothing lost")
        #expect(d.rememberedCount < 40, "memory stays bounded: \(d.rememberedCount)")
    }

    @Test("a resumed run drops the steps it already delivered")
    func dedupResume() {
        var d = MetricDeduplicator(floor: 1500, deliveredThrough: ["val/text_loss": 2000])
        let admitted = d.admit([point("train/mel_loss", 1200), point("train/mel_loss", 1501),
                                point("val/text_loss", 2000), point("val/text_loss", 3000)], from: .stdout)
        #expect(admitted == [point("train/mel_loss", 1501), point("val/text_loss", 3000)])
    }
}
