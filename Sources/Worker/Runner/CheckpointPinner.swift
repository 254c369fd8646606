import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Why a run keeps a pinned checkpoint.
public enum PinRole: String, Sendable, Equatable, Hashable, CaseIterable, Comparable {
    /// Its step is a multiple of `eval_every`: it is evaluated.
    case eval
    /// Its step is a multiple of `checkpoint_every`.
    case checkpoint
    /// The run's last checkpoint (at `max_steps`, or the trainer's final save).
    case final
    /// It holds optimizer state: a resume point.
    case resume

    public static func < (a: PinRole, b: PinRole) -> Bool { a.rawValue < b.rawValue }
}

/// A checkpoint the worker pinned: a hard link (or, for files the trainer writes in place, a
/// copy) under a stable name that the trainer never overwrites.
public struct PinnedCheckpoint: Sendable, Equatable {
    /// The pin's path (`<pin dir>/step-1000.pth`, `step-1000-model.pth` for a light checkpoint).
    public var path: String
    /// The trainer's file it was taken from (`latest_full.pth`).
    public var source: String
    /// The step inside the file.
    public var step: Int64
    /// True when it holds optimizer state (a full-state resume point).
    public var fullState: Bool
    public var roles: [PinRole]
    public var size: Int64
    /// Lower-case hexadecimal SHA-256 of the pin.
    public var sha256: String
    /// True when the pin is a copy (the source is written in place), false for a hard link.
    public var copied: Bool
}

/// A checkpoint could not be pinned.
public struct CheckpointPinError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The checkpoint volume has too little free space for the pin.
        case diskFull
        /// The pin directory or the link/copy could not be made.
        case io
    }
    public let code: Code
    public let path: String
    public let message: String
    public var description: String { "pinning \(path): \(message)" }
}

/// Keeps the checkpoints a run needs by pinning them.
///
/// The real trainer (edu-ide/index-tts `train_gpt_v2.py`) overwrites `latest.pth` every 100 steps
/// and `latest_full.pth` every 1000 by renaming a `.tmp` over them, and writes `best_model.pth`
/// in place. A checkpoint the cluster needs later — for an evaluation at an `eval_every` step, a
/// `checkpoint_every` step, the end of the run, or a resume — is therefore hard-linked under a
/// stable name in the pin directory the moment it appears: a rename over the trainer's name then
/// leaves the pinned inode alone. A file written in place is copied instead (a link would be
/// truncated by the trainer's next `torch.save`). Before it is kept, a pin is checked to be a
/// complete PyTorch checkpoint and its step is read from inside it
/// (``TorchCheckpointReader``), never from a log line.
///
/// Pure policy plus file operations; not thread-safe (the training monitor calls it from its I/O
/// queue only).
public struct CheckpointPinner: Sendable {
    /// What the run asks to keep.
    public struct Policy: Sendable, Equatable {
        public var evalEvery: Int64?
        public var checkpointEvery: Int64?
        /// The step the run trains to (a checkpoint at or past it is the final one).
        public var maxSteps: Int64
        /// Where pins go.
        public var directory: String

        public init(evalEvery: Int64?, checkpointEvery: Int64?, maxSteps: Int64, directory: String) {
            self.evalEvery = evalEvery
            self.checkpointEvery = checkpointEvery
            self.maxSteps = maxSteps
            self.directory = directory
        }
    }

    public let policy: Policy
    /// The pins made or found, by path.
    public private(set) var pins: [String: PinnedCheckpoint] = [:]
    /// Free bytes of the volume holding a directory (statvfs; tests give a stand-in).
    let freeSpace: @Sendable (String) -> Int64?

    public init(policy: Policy, freeSpace: @escaping @Sendable (String) -> Int64? = CheckpointPinner.statvfsFreeBytes) {
        self.policy = policy
        self.freeSpace = freeSpace
    }

    /// Why a checkpoint at `step` must be kept (empty: it need not be pinned).
    public static func roles(step: Int64, fullState: Bool, final: Bool, policy: Policy) -> [PinRole] {
        var roles: [PinRole] = []
        guard step > 0 else { return roles }
        if let e = policy.evalEvery, e > 0, step % e == 0 { roles.append(.eval) }
        if let c = policy.checkpointEvery, c > 0, step % c == 0 { roles.append(.checkpoint) }
        if final || step >= policy.maxSteps { roles.append(.final) }
        if fullState { roles.append(.resume) }
        return roles
    }

    /// The stable name of a pin: `step-<N>.pth` with optimizer state, `step-<N>-model.pth` without.
    public static func pinName(step: Int64, fullState: Bool) -> String {
        fullState ? "step-\(step).pth" : "step-\(step)-model.pth"
    }

    /// The name a file gets while it is being checked (`.incoming-latest.pth-<inode>`): dot-named,
    /// so nothing takes it for a checkpoint.
    static func incomingName(for source: String, inode: UInt64) -> String {
        ".incoming-\((source as NSString).lastPathComponent)-\(inode)"
    }

    /// Takes hold of `source` at once under a temporary name in the pin directory: a hard link
    /// (the inode the trainer renamed into place stays whatever it renames next), or a copy for
    /// files written in place and where links are impossible (another filesystem). Returns the
    /// temporary path; the caller inspects it and then ``keep(_:as:)``s or ``discard(_:)``s it.
    public func hold(_ source: String, inode: UInt64, inPlace: Bool) throws(CheckpointPinError) -> (path: String, copied: Bool) {
        try makeDirectory()
        let temporary = policy.directory + "/" + Self.incomingName(for: source, inode: inode)
        unlink(temporary)
        if !inPlace, link(source, temporary) == 0 { return (temporary, false) }
        do {
            try Self.copy(source, to: temporary)
        } catch {
            unlink(temporary)
            throw error
        }
        return (temporary, true)
    }

    /// Deletes a held file that is not kept.
    public func discard(_ held: String) {
        unlink(held)
    }

    /// Keeps a held, checked file as the pin for `step`: renamed to its stable name and hashed.
    /// When a pin of that name already exists it is kept (the same checkpoint was pinned before,
    /// by an earlier scan or attempt) and the held file is discarded; its roles are merged.
    public mutating func keep(_ held: (path: String, copied: Bool), source: String, step: Int64, fullState: Bool,
                              roles: [PinRole], size: Int64) throws(CheckpointPinError) -> PinnedCheckpoint {
        let path = policy.directory + "/" + Self.pinName(step: step, fullState: fullState)
        if var existing = pins[path] {
            unlink(held.path)
            existing.roles = Array(Set(existing.roles + roles)).sorted()
            pins[path] = existing
            return existing
        }
        if FileManager.default.fileExists(atPath: path), TorchCheckpointReader.isComplete(path: path) {
            unlink(held.path)
        } else if rename(held.path, path) != 0 {
            let why = String(cString: strerror(errno))
            unlink(held.path)
            throw CheckpointPinError(code: .io, path: path, message: "cannot rename the held checkpoint into place: \(why)")
        }
        let digest: String
        do { digest = try CheckpointScanner.sha256(path) } catch {
            throw CheckpointPinError(code: .io, path: path, message: error.message)
        }
        let actualSize = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? size
        let pin = PinnedCheckpoint(path: path, source: source, step: step, fullState: fullState, roles: roles.sorted(),
                                   size: actualSize, sha256: digest, copied: held.copied)
        pins[path] = pin
        return pin
    }

    /// The pin of `step` when it already exists (made by this attempt, or complete on disk from an
    /// earlier one): its roles are merged and no new link or copy is needed. Nil when there is none.
    public mutating func adopt(step: Int64, fullState: Bool, roles: [PinRole], source: String) -> PinnedCheckpoint? {
        let path = policy.directory + "/" + Self.pinName(step: step, fullState: fullState)
        if var existing = pins[path] {
            existing.roles = Array(Set(existing.roles + roles)).sorted()
            pins[path] = existing
            return existing
        }
        guard FileManager.default.fileExists(atPath: path), TorchCheckpointReader.isComplete(path: path),
              (try? TorchCheckpointReader.inspect(path: path))?.step == step,
              let digest = try? CheckpointScanner.sha256(path) else { return nil }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? NSNumber)?.int64Value ?? 0
        let pin = PinnedCheckpoint(path: path, source: source, step: step, fullState: fullState, roles: roles.sorted(),
                                   size: size, sha256: digest, copied: false)
        pins[path] = pin
        return pin
    }

    /// Free bytes on the pin directory's volume (nil when it cannot be read).
    public func freeBytes() -> Int64? {
        let dir = FileManager.default.fileExists(atPath: policy.directory) ? policy.directory : (policy.directory as NSString).deletingLastPathComponent
        return freeSpace(dir)
    }

    /// Free bytes for unprivileged writers on the volume of `directory` (`statvfs`).
    public static func statvfsFreeBytes(_ directory: String) -> Int64? {
        var s = statvfs()
        guard statvfs(directory, &s) == 0 else { return nil }
        return Int64(s.f_bavail) * Int64(s.f_frsize)
    }

    private func makeDirectory() throws(CheckpointPinError) {
        do { try FileManager.default.createDirectory(atPath: policy.directory, withIntermediateDirectories: true) } catch {
            throw CheckpointPinError(code: .io, path: policy.directory, message: "cannot create the pin directory: \(error.localizedDescription)")
        }
    }

    /// Copies `source` to `target` (fsynced), in 8 MiB pieces.
    static func copy(_ source: String, to target: String) throws(CheckpointPinError) {
        let input = open(source, O_RDONLY | O_CLOEXEC)
        guard input >= 0 else {
            throw CheckpointPinError(code: .io, path: source, message: "cannot open it: \(String(cString: strerror(errno)))")
        }
        defer { close(input) }
        let output = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard output >= 0 else {
            throw CheckpointPinError(code: .io, path: target, message: "cannot create it: \(String(cString: strerror(errno)))")
        }
        defer { close(output) }
        var buffer = [UInt8](repeating: 0, count: 8 << 20)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(input, $0.baseAddress, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw CheckpointPinError(code: .io, path: source, message: "read failed: \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            var written = 0
            while written < n {
                let w = buffer.withUnsafeBytes { write(output, $0.baseAddress! + written, n - written) }
                if w < 0 {
                    if errno == EINTR { continue }
                    let code: CheckpointPinError.Code = errno == ENOSPC ? .diskFull : .io
                    throw CheckpointPinError(code: code, path: target, message: "write failed: \(String(cString: strerror(errno)))")
                }
                written += w
            }
        }
        guard fsync(output) == 0 else {
            throw CheckpointPinError(code: .io, path: target, message: "fsync failed: \(String(cString: strerror(errno)))")
        }
    }
}
