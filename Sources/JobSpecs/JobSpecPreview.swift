import Foundation

/// What `tts-coordinator submit --dry-run` shows: for every run of a job and every GPU class it
/// may land on, the exact trainer command the cluster would start — on a first start and on a
/// resume — so a user sees every flag before a GPU is spent.
public struct JobSpecPreview: Sendable, Equatable {
    /// One rendered command.
    public struct Command: Sendable, Equatable {
        public var run: String
        /// The preset's name (`default` without presets).
        public var preset: String
        public var batch: BatchSettings
        /// True for the resumed form (`{resume_checkpoint}` filled in).
        public var resumed: Bool
        public var argv: [String]
    }

    public var commands: [Command]
    /// Things a user should know before submitting (not errors).
    public var notes: [String]

    /// Renders `spec` for every run and preset. `outputRoot` stands in for the coordinator's
    /// `--checkpoint-root` (unknown to a dry run) unless the spec sets `output_dir`; the run id is
    /// `RUNID<n>`; the resume form names `<output_dir>/pins/step-<N>.pth`.
    public static func make(_ spec: JobSpec, outputRoot: String = "<checkpoint-root>") throws(CommandTemplateError) -> JobSpecPreview {
        var commands: [Command] = []
        var notes: [String] = []
        let presets = spec.presets.isEmpty ? [GPUPreset(name: "default", match: GPUMatch(), batch: spec.defaultBatch)] : spec.presets
        for (index, run) in spec.runs().enumerated() {
            let runId = "RUNID\(index)"
            let outputDir = spec.outputDir.map {
                $0.replacingOccurrences(of: "{run_id}", with: runId).replacingOccurrences(of: "{run_name}", with: run.name)
                    .replacingOccurrences(of: "{job_name}", with: spec.name)
            } ?? "\(outputRoot)/\(spec.name)/\(run.name)-\(runId)"
            for preset in presets {
                guard spec.runner == .command else { continue }
                let resumeStep = Int64(spec.evalEvery ?? spec.checkpointEvery)
                for resumed in [false, true] {
                    let argv = try spec.renderCommand(run: run, gpu: 0, runId: runId, outputDir: outputDir, batch: preset.batch,
                                                      resumeCheckpoint: resumed ? "\(outputDir)/pins/step-\(resumeStep).pth" : nil,
                                                      preset: preset)
                    commands.append(Command(run: run.name, preset: preset.name, batch: preset.batch, resumed: resumed, argv: argv))
                }
            }
        }
        if spec.runner == .command {
            if !spec.command.placeholders.contains("resume_checkpoint") {
                notes.append("the command has no {resume_checkpoint}: a run that moves to another worker starts over instead of resuming")
            }
            if let e = spec.evalEvery, spec.evaluation != nil, e % 100 != 0 {
                notes.append("eval_every \(e) is not a multiple of 100: train_gpt_v2.py writes latest.pth every 100 steps, so no checkpoint holds those steps")
            }
            if spec.checkpointEvery % 100 != 0 {
                notes.append("checkpoint_every \(spec.checkpointEvery) is not a multiple of 100: train_gpt_v2.py writes latest.pth every 100 steps")
            }
        }
        return JobSpecPreview(commands: commands, notes: notes)
    }

    /// The preview as text, one command per line group (arguments quoted like a shell would need).
    public var text: String {
        var out: [String] = []
        for c in commands {
            out.append("\(c.run) on \(c.preset) (\(c.batch))\(c.resumed ? ", resumed" : ""):")
            out.append("  " + c.argv.map(Self.quote).joined(separator: " "))
        }
        for n in notes { out.append("note: \(n)") }
        return out.joined(separator: "\n")
    }

    /// A word as a POSIX shell would need it to stay one argument.
    static func quote(_ word: String) -> String {
        guard word.isEmpty || word.contains(where: { " \t\n'\"\\$`*?[]{}()<>|&;#~".contains($0) }) else { return word }
        return "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }
}
