import Foundation
import GRDB
import Shared

/// A store operation that failed: what kind of failure (``Code``, for callers that react to it)
/// and a message that says what happened and what to do (for the operator).
///
/// Every public store operation throws either a `StoreError` or a ``Shared/ProtocolError`` (a
/// request the store refuses, such as an unknown session); SQLite's own errors are classified
/// here, in one place, instead of being passed on raw.
public struct StoreError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable, Equatable {
        /// The database file cannot be opened or migrated.
        case cannotOpen = "cannot_open"
        /// The database's volume is full (`SQLITE_FULL`): nothing new can be stored until there
        /// is room; callers acknowledge nothing meanwhile.
        case volumeFull = "volume_full"
        /// Another process holds the database past the busy timeout (`SQLITE_BUSY`/`LOCKED`).
        case busy
        /// The database or one of its rows is damaged (`SQLITE_CORRUPT`, a row that does not decode).
        case damaged
        /// A row was written by a newer coordinator in a format this one does not read.
        case newerFormat = "newer_format"
        /// The database cannot be written (`SQLITE_READONLY`, permissions).
        case readOnly = "read_only"
        /// An input the store cannot take (a constraint it would break).
        case invalidInput = "invalid_input"
        /// Any other database or I/O failure.
        case failed
    }

    public let code: Code
    /// What happened and what to do.
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { message }

    /// Classifies an error from a database operation on the store at `path`.
    public init(classifying error: any Error, databasePath path: String) {
        if let e = error as? StoreError {
            self = e
            return
        }
        guard let e = error as? DatabaseError else {
            self.init(.failed, "\(error)")
            return
        }
        let dir = (path as NSString).deletingLastPathComponent
        switch e.resultCode {
        case .SQLITE_FULL:
            let free = Self.freeSpace(dir).map { "\($0 >> 10) KiB" } ?? "no"
            self.init(.volumeFull, "the coordinator's database volume is full (\(dir.isEmpty ? "." : dir): \(free) free): free space there; until then nothing new is stored or acknowledged, and workers keep their metrics and results in their spools and retry")
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            self.init(.busy, "the coordinator database \(path) stayed locked by another process past the timeout (\(e.message ?? "busy")); is a second coordinator or a backup tool using it?")
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            self.init(.damaged, "the coordinator database \(path) is damaged (\(e.message ?? "corrupt")); stop the coordinator and restore it from a backup")
        case .SQLITE_READONLY, .SQLITE_PERM, .SQLITE_CANTOPEN:
            self.init(.readOnly, "the coordinator database \(path) cannot be written (\(e.message ?? "read-only")); check the permissions of the file and of \(dir.isEmpty ? "." : dir)")
        case .SQLITE_CONSTRAINT:
            self.init(.invalidInput, "the store refused a write that would break its rules: \(e.message ?? "\(e)")")
        default:
            self.init(.failed, "database error on \(path): \(e.message ?? "\(e)") (SQLite code \(e.resultCode.rawValue))")
        }
    }

    /// Bytes available to this process on the volume holding `directory`.
    static func freeSpace(_ directory: String) -> UInt64? {
        var s = statvfs()
        guard statvfs(directory.isEmpty ? "." : directory, &s) == 0 else { return nil }
        return UInt64(s.f_bavail) * UInt64(s.f_frsize)
    }
}

extension Store {
    /// Runs `body` in a write transaction; database failures become a ``StoreError``.
    func write<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.write(body) } catch { throw Self.classify(error, path) }
    }

    /// Runs `body` in a read of a consistent snapshot; database failures become a ``StoreError``.
    func read<T>(_ body: (Database) throws -> T) throws -> T {
        do { return try pool.read(body) } catch { throw Self.classify(error, path) }
    }

    /// Runs blocking store work (a write that waits for its fsync) on the store's own thread
    /// instead of Swift's cooperative pool, which has as many threads as cores (two here): a
    /// request handler awaits it without holding a pool thread.
    public func offloaded<T: Sendable>(_ body: @escaping @Sendable (Store) throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<T, any Error>) in
            io.async { c.resume(with: Result { try body(self) }) }
        }
    }

    /// Domain refusals (``ProtocolError``) pass unchanged; everything else is classified.
    static func classify(_ error: any Error, _ path: String) -> any Error {
        if error is ProtocolError || error is StoreError { return error }
        return StoreError(classifying: error, databasePath: path)
    }

    /// Whether `error` says the database's volume is full.
    public static func isVolumeFull(_ error: any Error) -> Bool {
        (error as? StoreError)?.code == .volumeFull || (error as? DatabaseError)?.resultCode == .SQLITE_FULL
    }
}
