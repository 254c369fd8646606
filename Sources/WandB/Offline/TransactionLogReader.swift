import Foundation
#if canImport(Glibc)
import Glibc
import Shared
#endif

/// What ``TransactionLogReader/scan(path:limit:visit:)`` found: how many complete records the log
/// holds and where the last one ends — the size to reopen at after a crash.
public struct TransactionLogScan: Sendable, Equatable {
    /// Complete, checksum-verified records.
    public var recordCount: Int
    /// The byte offset just past the last complete record (7 for a log with only the header).
    public var validEnd: Int
    /// The bytes examined (the file size, or the limit if smaller).
    public var scannedSize: Int
    /// Why the scan stopped before `scannedSize` (a torn tail, corruption), or nil if it read
    /// everything.
    public var problem: TransactionLogError?
}

/// Reads records back from a `.wandb` transaction log: verifies the file header and every chunk's
/// CRC-32, skips block padding (fewer than 7 bytes left, or an all-zero chunk header as the Go
/// reader allows) and reassembles FIRST/MIDDLE…/LAST chunks.
///
/// Not `Sendable`: it owns a file descriptor; use it from one task at a time.
public final class TransactionLogReader {
    /// The file read.
    public let path: String
    /// The offset just past the last record returned by ``next()`` (7 before the first).
    public private(set) var offset: Int
    /// The end of the readable range: the file size, or the `limit` given to `init`.
    public let end: Int
    private var fd: Int32
    private var position: Int
    private var block: [UInt8] = []
    private var blockStart = -1

    /// Opens `path` and checks its header. With `limit`, bytes at and past that offset are
    /// ignored (to check a prefix of the file that was made durable).
    public init(path: String, limit: Int? = nil) throws {
        let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TransactionLogError.io(path: path, operation: "open for reading", errno: errno) }
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            let e = errno
            _ = Glibc.close(fd)
            throw TransactionLogError.io(path: path, operation: "fstat", errno: e)
        }
        self.path = path
        self.fd = fd
        self.end = min(Int(st.st_size), limit ?? Int.max)
        let h = TransactionLogFormat.fileHeader.count
        self.offset = h
        self.position = h
        guard end >= h, try read(at: 0, count: h) == TransactionLogFormat.fileHeader[...] else {
            throw TransactionLogError.badHeader(path: path)
        }
    }

    deinit { _ = Glibc.close(fd) }

    /// The next record's payload, or nil at the end of the file. Throws
    /// ``TransactionLogError/truncatedRecord(path:offset:)`` when the file ends inside a record,
    /// and ``TransactionLogError/checksumMismatch(path:offset:)`` /
    /// ``TransactionLogError/malformedChunk(path:offset:reason:)`` on corruption; ``offset`` then
    /// still tells where the last good record ended.
    public func next() throws -> [UInt8]? {
        let bs = TransactionLogFormat.blockSize
        let hs = TransactionLogFormat.chunkHeaderSize
        var data: [UInt8] = []
        var inRecord = false
        var pos = position
        while true {
            if pos >= end {
                // Padding or zero bytes after the last record are not a record: a clean end.
                if inRecord { throw TransactionLogError.truncatedRecord(path: path, offset: offset) }
                position = end
                return nil
            }
            let left = bs - pos % bs
            if left < hs {
                let pad = try read(at: pos, count: min(left, end - pos))
                guard pad.allSatisfy({ $0 == 0 }) else {
                    throw TransactionLogError.malformedChunk(path: path, offset: pos, reason: "block padding is not zero")
                }
                pos += left
                continue
            }
            guard end - pos >= hs else { throw TransactionLogError.truncatedRecord(path: path, offset: offset) }
            let h = Array(try read(at: pos, count: hs))
            if h.allSatisfy({ $0 == 0 }) && !inRecord {
                // An all-zero chunk header: the rest of the block is padding (Go reader rule).
                pos += left
                continue
            }
            let crc = UInt32(h[0]) | UInt32(h[1]) << 8 | UInt32(h[2]) << 16 | UInt32(h[3]) << 24
            let length = Int(h[4]) | Int(h[5]) << 8
            guard let type = TransactionLogFormat.ChunkType(rawValue: h[6]) else {
                throw TransactionLogError.malformedChunk(path: path, offset: pos, reason: "unknown chunk type \(h[6])")
            }
            guard hs + length <= left else {
                throw TransactionLogError.malformedChunk(path: path, offset: pos, reason: "length \(length) runs past the block")
            }
            guard pos + hs + length <= end else { throw TransactionLogError.truncatedRecord(path: path, offset: offset) }
            let payload = try read(at: pos + hs, count: length)
            guard CRC32.chunk(type: type.rawValue, payload: payload) == crc else {
                throw TransactionLogError.checksumMismatch(path: path, offset: pos)
            }
            switch (type, inRecord) {
            case (.full, false):
                data = Array(payload)
            case (.first, false):
                data = Array(payload)
                inRecord = true
                pos += hs + length
                continue
            case (.middle, true):
                data += payload
                pos += hs + length
                continue
            case (.last, true):
                data += payload
            default:
                throw TransactionLogError.malformedChunk(
                    path: path, offset: pos,
                    reason: inRecord ? "\(type) chunk inside a split record" : "\(type) chunk without a FIRST chunk")
            }
            pos += hs + length
            position = pos
            offset = pos
            return data
        }
    }

    /// Every record of the file at `path`, in order. Throws on any damage, including a torn tail.
    public static func readAll(path: String) throws -> [[UInt8]] {
        let reader = try TransactionLogReader(path: path)
        var out: [[UInt8]] = []
        while let r = try reader.next() { out.append(r) }
        return out
    }

    /// Walks the log (up to `limit`), handing each complete record to `visit`, and reports where
    /// the last complete record ends. Damage after that point is reported in
    /// ``TransactionLogScan/problem`` rather than thrown; only a missing file or a bad header (and
    /// errors thrown by `visit`) throw.
    public static func scan(path: String, limit: Int? = nil, visit: ([UInt8]) throws -> Void = { _ in }) throws -> TransactionLogScan {
        let reader = try TransactionLogReader(path: path, limit: limit)
        var count = 0
        var problem: TransactionLogError?
        while true {
            do {
                guard let r = try reader.next() else { break }
                count += 1
                try visit(r)
            } catch let e as TransactionLogError {
                problem = e
                break
            }
        }
        return TransactionLogScan(recordCount: count, validEnd: reader.offset, scannedSize: reader.end, problem: problem)
    }

    /// `count` bytes at `at`, which must lie within one block and below `end`.
    private func read(at: Int, count: Int) throws -> ArraySlice<UInt8> {
        let bs = TransactionLogFormat.blockSize
        let start = at / bs * bs
        if start != blockStart {
            let want = min(bs, end - start)
            var buf = [UInt8](repeating: 0, count: want)
            var got = 0
            while got < want {
                let n = buf.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + got, want - got, off_t(start + got)) }
                if n < 0 {
                    if errno == EINTR { continue }
                    throw TransactionLogError.io(path: path, operation: "read", errno: errno)
                }
                if n == 0 { break }
                got += n
            }
            block = Array(buf[0..<got])
            blockStart = start
        }
        let lo = at - start
        let hi = min(lo + count, block.count)
        return block[lo..<hi]
    }
}
