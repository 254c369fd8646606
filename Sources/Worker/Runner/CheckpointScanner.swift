import Foundation
import Shared

/// A complete checkpoint file found in a trainer's output directory.
public struct CheckpointFile: Sendable, Equatable {
    /// What the trainer wrote it as.
    public enum Kind: String, Sendable, Equatable {
        /// `model_step{N}.pth`, every `checkpoint_every` steps (the trainer keeps the last three).
        case step
        /// `latest.pth`, `latest_full.pth`, … (overwritten in place by rename).
        case latest
        /// `best_model.pth` or the sidecar's `best_model_step{N}.pth` (lowest validation text loss).
        case best
    }

    public var path: String
    /// The file name (`model_step2000.pth`).
    public var name: String
    public var kind: Kind
    /// The step from the name (`model_step{N}`, `best_model_step{N}`), else the step the caller
    /// said the trainer had reached when the file appeared, else nil.
    public var step: Int64?
    public var size: Int64
    /// Lower-case hexadecimal SHA-256 of the contents.
    public var sha256: String
    /// Modification time, seconds since the Unix epoch.
    public var modified: Double
    /// The file's inode when it was seen (a rename over the name gives a new one).
    public var inode: UInt64

    public init(path: String, name: String, kind: Kind, step: Int64?, size: Int64, sha256: String, modified: Double, inode: UInt64 = 0) {
        self.path = path
        self.name = name
        self.kind = kind
        self.step = step
        self.size = size
        self.sha256 = sha256
        self.modified = modified
        self.inode = inode
    }
}

/// Finds the checkpoints a trainer writes into its output directory and reports each new or
/// changed one exactly once, with its step, size and SHA-256.
///
/// Recognised names: `model_step{N}.pth`, `latest*.pth`, `best_model.pth` and
/// `best_model_step{N}.pth`. The trainer writes `*.tmp` and then renames, so a file with a
/// recognised name is complete; `*.tmp` files (and anything else) are ignored. A file counts as
/// changed when its size, modification time or inode differ from what was last reported (a rename
/// over `latest.pth` gives a new inode). With `settle`, a file is reported only once two scans in a
/// row saw it unchanged, for trainers that write checkpoints in place.
///
/// A file that changes while it is being hashed is left for the next scan.
public struct CheckpointScanner: Sendable {
    /// The directory scanned (not recursively: the trainer writes checkpoints at its top level).
    public let directory: String
    /// Report a file only after two consecutive scans saw the same size and time.
    public let settle: Bool

    private struct Identity: Equatable {
        var size: Int64
        var modifiedNanos: Int64
        var inode: UInt64
    }
    private var reported: [String: Identity] = [:]
    private var seen: [String: Identity] = [:]

    public init(directory: String, settle: Bool = false) {
        self.directory = directory
        self.settle = settle
    }

    /// What a file name says: its kind and the step in the name, or nil if it is not a checkpoint.
    public static func classify(_ name: String) -> (kind: CheckpointFile.Kind, step: Int64?)? {
        guard name.hasSuffix(".pth") else { return nil }
        let stem = name.dropLast(4)
        if stem.hasPrefix("model_step"), let n = Int64(stem.dropFirst("model_step".count)), n >= 0 {
            return (.step, n)
        }
        if stem == "best_model" { return (.best, nil) }
        if stem.hasPrefix("best_model_step"), let n = Int64(stem.dropFirst("best_model_step".count)), n >= 0 {
            return (.best, n)
        }
        if stem.hasPrefix("latest") { return (.latest, nil) }
        return nil
    }

    /// Scans once and returns the checkpoints that are new or changed since the last scan, ordered
    /// by step (files without one last) and name. `currentStep` is the step the trainer last
    /// reported; it is given to files whose name has none (`latest.pth`, `best_model.pth`).
    /// A missing directory returns nothing (the trainer has not created it yet).
    public mutating func scan(currentStep: Int64? = nil) throws(CheckpointScanError) -> [CheckpointFile] {
        try scan(currentStep: currentStep, hashing: true)
    }

    /// Like ``scan(currentStep:)`` without hashing (`sha256` is empty): the caller links the file
    /// to a stable name first and hashes that (a renamed-over file can be replaced at any time).
    /// With ``settleInPlace``, files the trainer writes in place (`best_model.pth`) are reported
    /// only after two scans saw them unchanged, whatever ``settle`` says.
    /// `settleInPlace: false` once the writer has exited (nothing can be mid-write any more; a file
    /// it left cut short is refused by its content).
    public mutating func scanWithoutHashing(currentStep: Int64? = nil, settleInPlace: Bool = true) throws(CheckpointScanError) -> [CheckpointFile] {
        try scan(currentStep: currentStep, hashing: false, settleInPlace: settleInPlace)
    }

    /// Forgets that `name` was reported, so the next scan reports it again if it is still there.
    public mutating func forget(_ name: String) {
        reported[name] = nil
        seen[name] = nil
    }

    /// Files written in place (not by rename): `best_model.pth` (the real trainer torch.saves it
    /// directly, so a kill mid-write leaves it truncated).
    public static func isWrittenInPlace(_ name: String) -> Bool { name == "best_model.pth" }

    private mutating func scan(currentStep: Int64?, hashing: Bool, settleInPlace: Bool = true) throws(CheckpointScanError) -> [CheckpointFile] {
        let names: [String]
        do { names = try FileManager.default.contentsOfDirectory(atPath: directory) } catch {
            if !FileManager.default.fileExists(atPath: directory) { return [] }
            throw CheckpointScanError(path: directory, message: "cannot list the directory: \(error.localizedDescription)")
        }
        var found: [CheckpointFile] = []
        var stillThere: Set<String> = []
        for name in names.sorted() {
            guard let (kind, stepInName) = Self.classify(name) else { continue }
            let path = directory + "/" + name
            guard let before = Self.identity(path) else { continue }
            stillThere.insert(name)
            if reported[name] == before { continue }
            if settle || (!hashing && settleInPlace && Self.isWrittenInPlace(name)) {
                let previous = seen[name]
                seen[name] = before
                if previous != before { continue }
            }
            var digest = ""
            if hashing {
                do { digest = try Self.sha256(path) } catch { continue } // vanished mid-read: next scan
                guard Self.identity(path) == before else { continue } // rewritten while hashed: next scan
            }
            reported[name] = before
            found.append(CheckpointFile(path: path, name: name, kind: kind, step: stepInName ?? currentStep,
                                        size: before.size, sha256: digest,
                                        modified: Double(before.modifiedNanos) / 1e9, inode: before.inode))
        }
        // Forget deleted files, so a later file of the same name is reported again.
        reported = reported.filter { stillThere.contains($0.key) }
        seen = seen.filter { stillThere.contains($0.key) }
        return found.sorted { a, b in
            switch (a.step, b.step) {
            case let (x?, y?) where x != y: return x < y
            case (.some, .none): return true
            case (.none, .some): return false
            default: return a.name < b.name
            }
        }
    }

    private static func identity(_ path: String) -> Identity? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              (attributes[.type] as? FileAttributeType) == .typeRegular,
              let size = (attributes[.size] as? NSNumber)?.int64Value,
              let date = attributes[.modificationDate] as? Date
        else { return nil }
        let inode = (attributes[.systemFileNumber] as? NSNumber)?.uint64Value ?? 0
        return Identity(size: size, modifiedNanos: Int64((date.timeIntervalSince1970 * 1e9).rounded()), inode: inode)
    }

    /// The SHA-256 of a file, read in 4 MiB pieces.
    public static func sha256(_ path: String) throws(CheckpointScanError) -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CheckpointScanError(path: path, message: "cannot open it for reading")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk: Data
            do { chunk = try handle.read(upToCount: 4 << 20) ?? Data() } catch {
                throw CheckpointScanError(path: path, message: "read failed: \(error.localizedDescription)")
            }
            if chunk.isEmpty { break }
            hasher.update(chunk)
        }
        return hasher.finalize().hexString
    }
}

/// A checkpoint directory or file could not be read.
public struct CheckpointScanError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "checkpoint scan of \(path): \(message) (check that the output directory is readable by the worker)" }
}
