import Foundation

/// Which checkpoint a resumed training shard starts from.
///
/// The coordinator names the newest checkpoint it has heard of. After a network partition that
/// file may be gone: the cut-off worker's trainer kept training and rotated its checkpoints
/// (trainers keep the last few) into the same shared directory, so newer ones stand beside the
/// name. Then the newest numbered checkpoint there, at or past the named step, is the one to
/// resume from; starting over instead would throw the run's progress away.
public enum ResumeCheckpoint {
    /// The newest `model_step{N}.pth` in `directory` with `N >= step` that can be read.
    public static func newest(in directory: String, atLeast step: Int64?) -> (path: String, step: Int64)? {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return nil }
        var best: (path: String, step: Int64)?
        for name in names {
            guard let (kind, n) = CheckpointScanner.classify(name), kind == .step, let n, n >= (step ?? 0) else { continue }
            let path = directory + "/" + name
            guard FileManager.default.isReadableFile(atPath: path), n > (best?.step ?? -1) else { continue }
            best = (path, n)
        }
        return best
    }
}
