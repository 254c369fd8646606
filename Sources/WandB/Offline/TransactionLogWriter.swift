import Foundation
#if canImport(Glibc)
import Glibc
import Shared
#endif

/// The constants and chunking rule of the `.wandb` transaction log: a LevelDB log
/// (`core/pkg/leveldb`) preceded by a 7-byte W&B file header.
///
/// - File header: `":W&B"`, magic 0xBEE1 (uint16 LE), version 0 — in the first 7 bytes of block 0.
/// - Blocks of 32768 bytes aligned to file offset 0; chunks never cross a block boundary.
/// - Chunk: `crc32` (LE32, CRC-32/IEEE over `[type] ++ payload`), `length` (LE16), `type`
///   (1 FULL, 2 FIRST, 3 MIDDLE, 4 LAST), then the payload.
/// - When fewer than 7 bytes are left in a block they are zero-filled; a record that does not fit
///   is split FIRST (the rest of the block, possibly 0 bytes), MIDDLE (whole blocks), LAST.
public enum TransactionLogFormat {
    /// The 7-byte file header: `3A 57 26 42 E1 BE 00`.
    public static let fileHeader: [UInt8] = [0x3A, 0x57, 0x26, 0x42, 0xE1, 0xBE, 0x00]
    public static let blockSize = 32768
    public static let chunkHeaderSize = 7
    /// The largest payload a chunk that starts a block can carry (32761).
    public static let maxChunkPayload = blockSize - chunkHeaderSize

    /// Chunk types.
    public enum ChunkType: UInt8, Sendable {
        case full = 1, first = 2, middle = 3, last = 4
    }

    /// The bytes to append to a log that is `offset` bytes long so that it holds one more record
    /// with `payload`: block padding if needed, then one FULL chunk or FIRST/MIDDLE…/LAST chunks.
    /// Matches Go's `leveldb.Writer` and the 0.29 Python `DataStore._write_data` byte for byte.
    public static func frame(_ payload: [UInt8], at offset: Int) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + chunkHeaderSize * (payload.count / maxChunkPayload + 2))
        frame(payload, at: offset, into: &out)
        return out
    }

    /// ``frame(_:at:)`` appended to `out` (whose bytes are not part of the offset).
    public static func frame(_ payload: [UInt8], at offset: Int, into out: inout [UInt8]) {
        var pos = offset
        var left = blockSize - pos % blockSize
        if left < chunkHeaderSize {
            out.append(contentsOf: repeatElement(0, count: left))
            pos += left
            left = blockSize
        }
        func chunk(_ type: ChunkType, _ range: Range<Int>, _ out: inout [UInt8]) {
            let piece = payload[range]
            let crc = CRC32.chunk(type: type.rawValue, payload: piece)
            out.append(UInt8(truncatingIfNeeded: crc))
            out.append(UInt8(truncatingIfNeeded: crc >> 8))
            out.append(UInt8(truncatingIfNeeded: crc >> 16))
            out.append(UInt8(truncatingIfNeeded: crc >> 24))
            out.append(UInt8(truncatingIfNeeded: piece.count))
            out.append(UInt8(truncatingIfNeeded: piece.count >> 8))
            out.append(type.rawValue)
            out.append(contentsOf: piece)
        }
        if payload.count + chunkHeaderSize <= left {
            chunk(.full, 0..<payload.count, &out)
            return
        }
        var used = left - chunkHeaderSize
        chunk(.first, 0..<used, &out)
        while payload.count - used > maxChunkPayload {
            chunk(.middle, used..<(used + maxChunkPayload), &out)
            used += maxChunkPayload
        }
        chunk(.last, used..<payload.count, &out)
    }
}

/// Why a transaction-log operation failed; every case names the file.
public enum TransactionLogError: Error, Equatable, CustomStringConvertible {
    /// A system call failed.
    case io(path: String, operation: String, errno: Int32)
    /// `TransactionLogWriter(path:)` refuses to overwrite an existing log.
    case alreadyExists(path: String)
    /// The first 7 bytes are not `":W&B" E1 BE 00`.
    case badHeader(path: String)
    /// A chunk's checksum does not match its bytes.
    case checksumMismatch(path: String, offset: Int)
    /// A chunk header is inconsistent (unknown type, length past the block, chunk out of sequence,
    /// non-zero block padding).
    case malformedChunk(path: String, offset: Int, reason: String)
    /// The file ends inside a record (a write cut short by a crash).
    case truncatedRecord(path: String, offset: Int)
    /// `open(path:truncatingTo:)` asked for a size the file cannot be cut back to.
    case invalidTruncation(path: String, requested: Int, actual: Int)
    /// The writer was closed, or an earlier failed write could not be rolled back.
    case unusable(path: String, reason: String)

    public var description: String {
        switch self {
        case .io(let path, let op, let e):
            return "\(path): \(op) failed: \(String(cString: strerror(e))) (errno \(e)); check the directory exists, is writable and the disk is not full"
        case .alreadyExists(let path):
            return "\(path): a transaction log already exists; reopen it with TransactionLogWriter.open(path:truncatingTo:) (or OfflineRunWriter.reopen) instead of creating it again"
        case .badHeader(let path):
            return "\(path): not a W&B transaction log (the first 7 bytes are not \":W&B\" E1 BE 00)"
        case .checksumMismatch(let path, let offset):
            return "\(path): chunk at byte \(offset) fails its CRC-32; the file is corrupt from there on (reopen at the last good size to continue)"
        case .malformedChunk(let path, let offset, let reason):
            return "\(path): malformed chunk at byte \(offset): \(reason)"
        case .truncatedRecord(let path, let offset):
            return "\(path): the file ends inside the record that starts at byte \(offset) (an interrupted write; reopen at \(offset) to drop it)"
        case .invalidTruncation(let path, let requested, let actual):
            return "\(path): cannot continue at size \(requested): the file has \(actual) bytes and a log is at least 7 bytes; pass a size recorded after a successful sync()"
        case .unusable(let path, let reason):
            return "\(path): the log writer is unusable (\(reason)); reopen the file with TransactionLogWriter.open(path:truncatingTo:)"
        }
    }
}

/// Appends records to a `.wandb` transaction log with POSIX I/O.
///
/// Not `Sendable`: it owns a file descriptor and a write position, so it must be confined to one
/// actor or thread (the coordinator keeps each run's writer inside one actor).
///
/// Durability: ``append(_:)`` hands each record to the kernel in one `write(2)` (so a `kill -9`
/// loses nothing already appended); ``sync()`` makes it survive power loss. A crash can still
/// leave a torn tail; ``open(path:truncatingTo:)`` cuts it off at a size that was durable.
public final class TransactionLogWriter {
    /// The file written.
    public let path: String
    /// The current length of the file in bytes (header included).
    public private(set) var size: Int
    private var fd: Int32
    private var broken: String?

    /// Creates a new log at `path` (the file must not exist) and writes the 7-byte header.
    public init(path: String) throws {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            let e = errno
            if e == EEXIST { throw TransactionLogError.alreadyExists(path: path) }
            throw TransactionLogError.io(path: path, operation: "create", errno: e)
        }
        self.path = path
        self.fd = fd
        self.size = 0
        do {
            try writeAll(TransactionLogFormat.fileHeader)
        } catch {
            _ = Glibc.close(fd)
            self.fd = -1
            _ = Glibc.unlink(path)
            throw error
        }
        size = TransactionLogFormat.fileHeader.count
    }

    private init(path: String, fd: Int32, size: Int) {
        self.path = path
        self.fd = fd
        self.size = size
    }

    /// Re-opens an existing log for appending after cutting it back to `size` bytes — a size
    /// recorded after an earlier ``sync()`` (or the end of the last complete record, as told by
    /// ``TransactionLogReader/scan(path:limit:)``). Bytes past it (a torn record) are discarded.
    /// The header is verified; `size` must lie between 7 and the current file length.
    public static func open(path: String, truncatingTo size: Int) throws -> TransactionLogWriter {
        let fd = Glibc.open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw TransactionLogError.io(path: path, operation: "open for append", errno: errno) }
        var ok = false
        defer { if !ok { _ = Glibc.close(fd) } }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw TransactionLogError.io(path: path, operation: "fstat", errno: errno) }
        let actual = Int(st.st_size)
        guard size >= TransactionLogFormat.fileHeader.count, size <= actual else {
            throw TransactionLogError.invalidTruncation(path: path, requested: size, actual: actual)
        }
        var header = [UInt8](repeating: 0, count: TransactionLogFormat.fileHeader.count)
        let n = header.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n == header.count, header == TransactionLogFormat.fileHeader else { throw TransactionLogError.badHeader(path: path) }
        if size < actual {
            guard ftruncate(fd, off_t(size)) == 0 else { throw TransactionLogError.io(path: path, operation: "ftruncate", errno: errno) }
            guard fsync(fd) == 0 else { throw TransactionLogError.io(path: path, operation: "fsync", errno: errno) }
        }
        guard lseek(fd, off_t(size), SEEK_SET) >= 0 else { throw TransactionLogError.io(path: path, operation: "lseek", errno: errno) }
        ok = true
        return TransactionLogWriter(path: path, fd: fd, size: size)
    }

    deinit {
        if fd >= 0 { _ = Glibc.close(fd) }
    }

    /// Appends one record (a serialized `wandb_internal.Record`). On failure the file is cut back
    /// to its previous size so that it stays a valid log; if even that fails the writer refuses
    /// further appends (``TransactionLogError/unusable(path:reason:)``).
    public func append(_ payload: [UInt8]) throws {
        try checkUsable()
        let bytes = TransactionLogFormat.frame(payload, at: size)
        do {
            try writeAll(bytes)
        } catch {
            if ftruncate(fd, off_t(size)) != 0 || lseek(fd, off_t(size), SEEK_SET) < 0 {
                broken = "a failed write could not be rolled back: \(error)"
            }
            throw error
        }
        size += bytes.count
    }

    /// Appends several records with one `write(2)`: the same bytes as appending them one by one.
    /// On failure the file is cut back to its size before the call.
    public func append(contentsOf payloads: [[UInt8]]) throws {
        try checkUsable()
        guard !payloads.isEmpty else { return }
        var bytes: [UInt8] = []
        var end = size
        for p in payloads {
            TransactionLogFormat.frame(p, at: end, into: &bytes)
            end = size + bytes.count
        }
        do {
            try writeAll(bytes)
        } catch {
            if ftruncate(fd, off_t(size)) != 0 || lseek(fd, off_t(size), SEEK_SET) < 0 {
                broken = "a failed write could not be rolled back: \(error)"
            }
            throw error
        }
        size += bytes.count
    }

    /// Flushes the file to stable storage (`fsync`).
    public func sync() throws {
        try checkUsable()
        while fsync(fd) != 0 {
            if errno == EINTR { continue }
            throw TransactionLogError.io(path: path, operation: "fsync", errno: errno)
        }
    }

    /// Closes the file; later calls throw ``TransactionLogError/unusable(path:reason:)``. Does not
    /// sync: call ``sync()`` first when the data must be durable.
    public func close() {
        if fd >= 0 { _ = Glibc.close(fd) }
        fd = -1
        broken = broken ?? "closed"
    }

    private func checkUsable() throws {
        if let broken { throw TransactionLogError.unusable(path: path, reason: broken) }
    }

    private func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + done, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw TransactionLogError.io(path: path, operation: "write", errno: errno)
                }
                done += n
            }
        }
    }
}
