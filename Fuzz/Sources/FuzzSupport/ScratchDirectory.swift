import Foundation

/// A per-process scratch directory for targets whose reader takes a file rather than bytes.
///
/// libFuzzer runs inputs one after another on one thread, so the directory is reused from input to
/// input; the process id keeps parallel fuzzers (`-jobs`/`-workers`) apart.
public enum ScratchDirectory {
    /// `$TMPDIR/tts-fuzz-<name>-<pid>`, created on first use.
    public static func path(_ name: String) -> String {
        let base = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        let dir = "\(base)/tts-fuzz-\(name)-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    /// Replaces the file at `path` with `bytes`.
    public static func write(_ bytes: [UInt8], to path: String) {
        let ok = FileManager.default.createFile(atPath: path, contents: Data(bytes))
        FuzzCheck.require(ok, "cannot write the scratch file \(path)")
    }
}
