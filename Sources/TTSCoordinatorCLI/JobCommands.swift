import ArgumentParser
import ClusterAdmin
import Foundation
import JobSpecs
import Shared

struct Submit: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Submit a training job spec (YAML); prints the run ids (one per sweep combination).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "The job spec file (see examples/).")
    var file: String
    @Flag(help: "Check the spec and print the runs it would make, without submitting.")
    var dryRun = false
    @Flag(name: .shortAndLong, help: "Then follow the runs (step, losses, ETA, evaluations) until they and their evaluations are done; exit 1 if any failed.")
    var follow = false

    func run() async throws {
        let text: String
        do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
            FileHandle.standardError.write(Data("error: cannot read the job spec \(file): \(error.localizedDescription)\n".utf8))
            throw ExitCode(1)
        }
        // Checked here first, so a mistake is reported with its line before anything is sent.
        let spec: JobSpec
        do { spec = try JobSpecParser.parse(yaml: text) } catch {
            FileHandle.standardError.write(Data("error: \(file): \(error)\n".utf8))
            throw ExitCode(1)
        }
        if dryRun {
            for r in spec.runs() {
                print("\(r.name)\(r.group.map { "  group \($0)" } ?? "")  " + r.hyperparameters.map { "\($0.name)=\($0.value.text)" }.joined(separator: " "))
            }
            do {
                let preview = try JobSpecPreview.make(spec)
                if !preview.commands.isEmpty || !preview.notes.isEmpty { print(preview.text) }
            } catch {
                FileHandle.standardError.write(Data("error: \(file): the command cannot be rendered: \(error)\n".utf8))
                throw ExitCode(1)
            }
            return
        }
        try await runClient {
            let reply = try await options.client().submit(SubmitRequest(spec: text, source: file))
            if options.json { return try printJSON(reply) }
            print("job \(reply.jobId): \(reply.runs.count) run(s)")
            Table.print(header: ["RUN", "NAME", "GROUP", "VALUES"], rows: reply.runs.map {
                [$0.id, $0.name, $0.group ?? "-", $0.sweepValues.isEmpty ? "-" : $0.sweepValues.joined(separator: " ")]
            })
            if follow { try await Self.follow(runs: reply.runs.map(\.id), client: try options.client()) }
        }
    }

    static let finished: Set<RunSummary.State> = [.succeeded, .failed, .cancelled]

    /// Prints the runs' progress until every run and every evaluation of them is over.
    static func follow(runs ids: [String], client: any ClusterClient) async throws {
        let progress = ProgressLine()
        var last: [RunSummary] = []
        while true {
            let runs = try await client.runs().filter { ids.contains($0.id) }
            let evals = try await client.evals().filter { $0.runId.map(ids.contains) == true }
            last = runs
            let parts = runs.map { r -> String in
                let step = r.step.map { s in r.maxSteps.map { "\(s)/\($0)" } ?? "\(s)" } ?? "-"
                let loss = r.losses["train/loss"] ?? r.losses["train/text_loss"]
                return "\(r.name) \(r.state) step \(step)" + (loss.map { String(format: " loss %.4f", $0) } ?? "")
                    + (r.stepsPerSecond.map { String(format: " %.1f steps/s", $0) } ?? "") + (r.etaSeconds.map { " ETA " + Table.duration($0) } ?? "")
            }
            let done = evals.filter { $0.state != .running }.count
            let cer = evals.filter { $0.state == .succeeded }.max { ($0.step ?? 0) < ($1.step ?? 0) }?.cer
            progress.update(parts.joined(separator: " | ") + (evals.isEmpty ? "" : " | evals \(done)/\(evals.count)" + (cer.map { String(format: ", CER %.1f %%", $0 * 100) } ?? "")))
            if runs.count == ids.count, runs.allSatisfy({ finished.contains($0.state) }), evals.allSatisfy({ $0.state != .running }) { break }
            try await Task.sleep(for: .seconds(1))
        }
        progress.finish()
        for r in last { print("\(r.id) \(r.name): \(r.state)" + (r.step.map { " at step \($0)" } ?? "")) }
        if last.contains(where: { $0.state != .succeeded }) { throw ExitCode(1) }
    }
}

struct Runs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Training runs: state, worker, GPU class, step, losses, steps/s, ETA.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient {
            let runs = try await options.client().runs()
            if options.json { return try printJSON(runs) }
            Table.print(header: ["RUN", "NAME", "STATE", "WORKER", "GPU CLASS", "BATCH", "STEP", "TEXT LOSS", "MEL LOSS", "STEPS/S", "ETA", "NOTE"],
                        rows: runs.map(Self.row))
        }
    }

    static func row(_ r: RunSummary) -> [String] {
        let batch = r.batchSize.map { "\($0)×\(r.gradAccum ?? 1)" } ?? "-"
        let step = r.step.map { s in r.maxSteps.map { "\(s)/\($0)" } ?? "\(s)" } ?? "-"
        let loss = { (k: String) in r.losses[k].map { String(format: "%.4f", $0) } ?? "-" }
        var note = r.waitReason.map { "waiting: \($0)" } ?? ""
        if r.downshifts > 0 { note += (note.isEmpty ? "" : "; ") + "\(r.downshifts) OOM downshift(s)" }
        return [r.id, r.name, r.state.rawValue, r.worker ?? "-", r.preset ?? "-", batch, step, loss("train/text_loss"), loss("train/mel_loss"),
                r.stepsPerSecond.map { String(format: "%.2f", $0) } ?? "-", r.etaSeconds.map(Table.duration) ?? "-", note]
    }
}

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A run's trainer output (stdout and stderr) and the cluster's notes about it.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Run id.")
    var run: String
    @Flag(name: .shortAndLong, help: "Keep printing new lines until the run ends.")
    var follow = false
    @Option(help: "Only the last N lines to start with.")
    var tail: Int?

    func run() async throws {
        try await runClient {
            let client = try options.client()
            var after: Int64 = 0
            var first = true
            while true {
                let page = try await client.logs(LogsRequest(run: run, after: after, limit: 1_000, tail: first ? tail : nil))
                first = false
                for line in page.lines {
                    if options.json { try printJSON(line) } else { print(line.stream == "stderr" ? "! \(line.text)" : line.text) }
                }
                after = page.lines.last?.id ?? after
                let finished = page.runState.isFinished
                if !follow || (finished && page.lines.isEmpty) { return }
                if page.lines.count < 1_000 { try await Task.sleep(for: .milliseconds(500)) }
            }
        }
    }
}

struct Cancel: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Cancel a run: its trainer's whole process group is stopped (SIGTERM, then SIGKILL).")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Run id.")
    var run: String

    func run() async throws {
        try await runClient {
            let reply = try await options.client().cancel(run: run)
            if options.json { return try printJSON(reply) }
            print("run \(reply.run): \(reply.cancelledQueued) queued shard(s) cancelled, \(reply.stopping) running shard(s) told to stop")
        }
    }
}
