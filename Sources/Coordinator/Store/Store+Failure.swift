import Foundation
import GRDB

extension Store {
    /// Whether `error` says the database's volume is full (SQLite's `SQLITE_FULL`: the disk, or a
    /// quota, has no room for the journal or the database to grow).
    public static func isVolumeFull(_ error: any Error) -> Bool {
        guard let e = error as? DatabaseError else { return false }
        return e.resultCode == .SQLITE_FULL
    }

    /// What a failed write means for the operator: for a full volume, which directory, how much
    /// room is left and what happens meanwhile; otherwise the error itself.
    public func explain(_ error: any Error) -> String {
        guard Self.isVolumeFull(error) else { return "\(error)" }
        let dir = (path as NSString).deletingLastPathComponent
        return "the coordinator's database volume is full (\(dir.isEmpty ? "." : dir): \(Self.freeSpace(dir).map { "\($0 >> 10) KiB" } ?? "no") free): free space there; until then nothing new is stored or acknowledged, and workers keep their metrics and results in their spools and retry"
    }

    /// Bytes available to this process on the volume holding `directory`.
    static func freeSpace(_ directory: String) -> UInt64? {
        var s = statvfs()
        guard statvfs(directory.isEmpty ? "." : directory, &s) == 0 else { return nil }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }
}
