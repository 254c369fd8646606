import Foundation
import Shared

/// The worker's durable identity: a random id created once and kept in the state directory,
/// so a restarted worker registers into the same identity.
public enum WorkerIdentity {
    /// Loads the id from `directory/worker-id`, creating the directory and the id if needed.
    /// - Throws: ``ConfigurationError`` naming the directory when it cannot be used.
    public static func load(directory: String) throws(ConfigurationError) -> String {
        let fm = FileManager.default
        let file = directory + "/worker-id"
        if let data = fm.contents(atPath: file) {
            let id = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            if !id.isEmpty && id.utf8.count <= 128 { return id }
        }
        do {
            try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
            let id = "w-" + SecureRandom.bytes(8).hexString
            let tmp = file + ".tmp"
            try Data((id + "\n").utf8).write(to: URL(fileURLWithPath: tmp))
            _ = rename(tmp, file)
            return id
        } catch {
            throw ConfigurationError("cannot create the worker state directory \(directory): \(error.localizedDescription). Pass --state-dir with a writable path.")
        }
    }
}
