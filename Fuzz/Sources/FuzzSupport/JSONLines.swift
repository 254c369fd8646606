/// Line arithmetic of JSON Lines manifests, computed independently of the readers under test.
public enum JSONLines {
    /// Lines the readers parse: split at `\n`, skipping those of only spaces, tabs and `\r`.
    public static func recordLines(_ bytes: [UInt8]) -> Int {
        bytes.split(separator: 0x0A, omittingEmptySubsequences: false)
            .filter { !$0.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }.count
    }

    /// Lines in the file, counting a last line without a newline.
    public static func lineCount(_ bytes: [UInt8]) -> Int {
        bytes.reduce(1) { $0 + ($1 == 0x0A ? 1 : 0) }
    }

    /// True when `path` is absolute and has no empty, `.` or `..` component (what
    /// `URL.standardizedFileURL.path` produces).
    public static func isStandardAbsolute(_ path: String) -> Bool {
        guard path.hasPrefix("/") else { return false }
        if path == "/" { return true }
        let parts = path.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        return !parts.contains { $0.isEmpty || $0 == "." || $0 == ".." }
    }
}
