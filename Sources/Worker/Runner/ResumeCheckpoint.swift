import Foundation

/// Which checkpoint a resumed training shard starts from when the one the coordinator named is
/// gone.
///
/// The coordinator names the newest checkpoint it has heard of. After a network partition that
/// file may be gone: the cut-off worker's trainer kept training and rotated or overwrote its
/// checkpoints in the same shared directory, so newer ones stand beside the name (and in the pin
/// directory). Then the newest complete checkpoint there, at or past the named step, is the one to
/// resume from; starting over instead would throw the run's progress away.
public enum ResumeCheckpoint {
    /// The newest complete checkpoint in `directories` at or past `step`: numbered files
    /// (`model_step{N}.pth`), the trainer's `latest*.pth` and pins (`step-{N}.pth`). The step is
    /// read from inside the file where it is a PyTorch zip checkpoint, else from the name. With
    /// `fullState`, a checkpoint with optimizer state wins over a newer one without (when the
    /// file's state can be read).
    public static func newest(in directories: [String], atLeast step: Int64?, fullState: Bool = false) -> (path: String, step: Int64)? {
        var candidates: [(path: String, step: Int64, full: Bool)] = []
        for directory in Set(directories) {
            guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { continue }
            for name in names where name.hasSuffix(".pth") && !name.hasPrefix(".") {
                let path = directory + "/" + name
                guard FileManager.default.isReadableFile(atPath: path) else { continue }
                let nameStep = CheckpointScanner.classify(name).flatMap { $0.kind == .best ? nil : $0.step } ?? pinStep(name)
                if let info = try? TorchCheckpointReader.inspect(path: path), let s = info.step ?? nameStep {
                    candidates.append((path, s, info.hasOptimizerState))
                } else if let s = nameStep, !startsLikeZip(path) {
                    // Not a torch zip (another trainer's format): trust the name.
                    candidates.append((path, s, true))
                }
            }
        }
        let eligible = candidates.filter { $0.step >= (step ?? 0) }
        let pool = fullState && eligible.contains(where: \.full) ? eligible.filter(\.full) : eligible
        return pool.max { a, b in (a.step, a.full ? 1 : 0, a.path) < (b.step, b.full ? 1 : 0, b.path) }.map { ($0.path, $0.step) }
    }

    /// True when the file starts with a zip local-file header (`PK\u{3}\u{4}`): a PyTorch
    /// checkpoint, even if cut short.
    static func startsLikeZip(_ path: String) -> Bool {
        guard let h = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? h.close() }
        return (try? h.read(upToCount: 4)) == Data([0x50, 0x4B, 0x03, 0x04])
    }

    /// The step in a pin's name (`step-1000.pth`, `step-1000-model.pth`), or nil.
    static func pinStep(_ name: String) -> Int64? {
        guard name.hasPrefix("step-"), name.hasSuffix(".pth") else { return nil }
        let core = name.dropFirst(5).dropLast(4)
        return Int64(core.hasSuffix("-model") ? core.dropLast(6) : core)
    }
}
