import Foundation

/// One record of a TFRecord file whose length and data checksums both verified.
public struct TFRecord: Sendable, Equatable {
    /// The file offset of the record's header.
    public var offset: Int
    /// The record's payload (for a TensorBoard event file: one encoded `Event`).
    public var data: [UInt8]

    public init(offset: Int, data: [UInt8]) {
        self.offset = offset
        self.data = data
    }
}

/// Something wrong in a TFRecord file that the reader stepped over; reading went on after it.
public struct TFRecordWarning: Sendable, Equatable, CustomStringConvertible {
    /// The file.
    public var path: String
    /// Where the bad bytes start.
    public var offset: Int
    /// What was wrong and what the reader did about it.
    public var message: String

    public init(path: String, offset: Int, message: String) {
        self.path = path
        self.offset = offset
        self.message = message
    }

    public var description: String { "\(path) at byte \(offset): \(message)" }
}

/// What one ``TFRecordReader/poll()`` found.
public struct TFRecordBatch: Sendable, Equatable {
    /// Complete, verified records, in file order.
    public var records: [TFRecord] = []
    /// Corrupt records or regions that were skipped.
    public var warnings: [TFRecordWarning] = []
    /// Bytes at the end of the file that do not yet form a complete record (a writer in the middle
    /// of a record). They are read again by the next poll.
    public var pendingBytes: Int = 0

    public init(records: [TFRecord] = [], warnings: [TFRecordWarning] = [], pendingBytes: Int = 0) {
        self.records = records
        self.warnings = warnings
        self.pendingBytes = pendingBytes
    }
}

/// The file could not be read at all (as opposed to a corrupt record, which is a warning).
public struct TFRecordReadError: Error, Sendable, Equatable, CustomStringConvertible {
    public let path: String
    public let message: String
    public init(path: String, message: String) {
        self.path = path
        self.message = message
    }
    public var description: String { "cannot read TFRecord file \(path): \(message)" }
}

/// Tails a TFRecord file (TensorBoard's event-file framing) while another process appends to it.
///
/// Each record is `uint64 length (LE) · uint32 masked CRC-32C of the length bytes · data ·
/// uint32 masked CRC-32C of data`. Each ``poll()`` reads from the end of the last complete record
/// to the end of the file:
/// - a record cut short by the end of the file is *not yet written*: the reader stops before it and
///   the next poll reads it again, so the offset only ever covers complete records;
/// - a record whose data checksum fails is skipped with a warning (its length was verified, so the
///   next record starts right after it);
/// - a header whose length checksum fails is reported once and the reader scans forward byte by
///   byte for the next header whose length checksum holds (and keeps scanning on later polls,
///   without repeating the warning, if the file ends first).
///
/// A value type: copy it to snapshot the position. Not thread-safe by itself; own it from one task.
public struct TFRecordReader: Sendable {
    /// A length above this is treated as corruption even if its checksum holds (TensorBoard records
    /// are kilobytes; this bounds what a corrupt header can make the reader allocate).
    public static let maximumRecordLength = 256 << 20

    /// The file read.
    public let path: String
    /// The offset just past the last complete record (or skipped region): where the next poll starts.
    public private(set) var offset: Int
    /// True while scanning for the next valid header after a bad length checksum.
    public private(set) var resynchronizing = false
    /// How many bytes each read asks for.
    private let chunkSize: Int
    /// The first bytes of the file as read so far (at most ``fingerprintLength``) and its inode:
    /// another writer that replaces or rewrites the file under the same name (TensorBoard writers
    /// that name files by the second, started twice in one second) changes one or the other, even
    /// when the new file has already grown past ``offset``.
    private var head: [UInt8] = []
    private var inode: UInt64?
    /// How many leading bytes identify a file (a TensorBoard file starts with a `file_version`
    /// event holding the writer's start time to the microsecond).
    static let fingerprintLength = 64

    /// Starts reading `path` at `offset` (0, or an offset a previous reader reported).
    public init(path: String, offset: Int = 0, chunkSize: Int = 4 << 20) {
        self.path = path
        self.offset = offset
        self.chunkSize = max(chunkSize, 64)
    }

    /// Reads whatever complete records were appended since the last poll. A missing file is an
    /// empty batch (the writer may not have created it yet). A file that was replaced or rewritten
    /// (shorter than the offset, another inode, or other leading bytes) is read again from the
    /// beginning, with a warning.
    public mutating func poll() throws(TFRecordReadError) -> TFRecordBatch {
        var batch = TFRecordBatch()
        guard FileManager.default.fileExists(atPath: path) else { return batch }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw TFRecordReadError(path: path, message: "open failed (check the file's permissions)")
        }
        defer { try? handle.close() }
        let size: Int
        do { size = Int(try handle.seekToEnd()) } catch {
            throw TFRecordReadError(path: path, message: "cannot find its size: \(error)")
        }
        let currentInode = (try? FileManager.default.attributesOfItem(atPath: path)[.systemFileNumber] as? NSNumber)?.uint64Value
        let replacement: String?
        if size < offset {
            replacement = "file shrank to \(size) bytes (replaced or truncated)"
        } else if let inode, let currentInode, inode != currentInode {
            replacement = "file was replaced (another inode)"
        } else if !head.isEmpty, try readBytes(handle, at: 0, count: head.count) != head {
            replacement = "file was rewritten (its first bytes changed)"
        } else {
            replacement = nil
        }
        if let replacement {
            batch.warnings.append(TFRecordWarning(path: path, offset: offset,
                message: "\(replacement); reading it again from the start"))
            offset = 0
            resynchronizing = false
            head = []
        }
        inode = currentInode ?? inode
        defer {
            if head.count < Self.fingerprintLength, offset > head.count,
               let bytes = try? readBytes(handle, at: 0, count: min(offset, Self.fingerprintLength)) {
                head = bytes
            }
        }
        var buffer: [UInt8] = []
        var bufferStart = offset // file offset of buffer[0]
        var readEnd = offset
        while readEnd < size {
            let chunk: Data
            do {
                try handle.seek(toOffset: UInt64(readEnd))
                chunk = try handle.read(upToCount: min(chunkSize, size - readEnd)) ?? Data()
            } catch {
                throw TFRecordReadError(path: path, message: "read at byte \(readEnd) failed: \(error)")
            }
            if chunk.isEmpty { break }
            buffer.append(contentsOf: chunk)
            readEnd += chunk.count
            let consumed = parse(buffer, base: bufferStart, into: &batch)
            if consumed > 0 {
                buffer.removeFirst(consumed)
                bufferStart += consumed
            }
            offset = bufferStart
        }
        batch.pendingBytes = size - offset
        return batch
    }

    private func readBytes(_ handle: FileHandle, at position: Int, count: Int) throws(TFRecordReadError) -> [UInt8] {
        do {
            try handle.seek(toOffset: UInt64(position))
            return Array(try handle.read(upToCount: count) ?? Data())
        } catch {
            throw TFRecordReadError(path: path, message: "read at byte \(position) failed: \(error)")
        }
    }

    /// Parses as many records as `buffer` holds; returns the bytes consumed (records and skipped
    /// regions). A record the buffer ends inside is left for the next read.
    private mutating func parse(_ buffer: [UInt8], base: Int, into batch: inout TFRecordBatch) -> Int {
        var pos = 0
        while true {
            let remaining = buffer.count - pos
            if resynchronizing {
                // Look for a header whose length checksum holds; a header needs 12 bytes.
                guard remaining >= 12 else { return pos }
                if Self.headerLength(buffer, at: pos) != nil {
                    resynchronizing = false
                    batch.warnings.append(TFRecordWarning(path: path, offset: base + pos,
                        message: "found a valid record header again; resuming"))
                } else {
                    pos += 1
                    continue
                }
            }
            guard remaining >= 12 else { return pos }
            guard let length = Self.headerLength(buffer, at: pos) else {
                batch.warnings.append(TFRecordWarning(path: path, offset: base + pos,
                    message: "record length checksum mismatch (corrupt header); scanning forward for the next record"))
                resynchronizing = true
                pos += 1
                continue
            }
            let total = 12 + length + 4
            guard remaining >= total else { return pos } // torn: not yet written
            let data = buffer[(pos + 12)..<(pos + 12 + length)]
            let stored = Self.uint32(buffer, at: pos + 12 + length)
            if CRC32C.maskedChecksum(data) == stored {
                batch.records.append(TFRecord(offset: base + pos, data: Array(data)))
            } else {
                batch.warnings.append(TFRecordWarning(path: path, offset: base + pos,
                    message: "record data checksum mismatch; skipped this \(length)-byte record"))
            }
            pos += total
        }
    }

    /// The record length of a header at `pos` whose length checksum verifies, or nil.
    private static func headerLength(_ b: [UInt8], at pos: Int) -> Int? {
        var length: UInt64 = 0
        for i in 0..<8 { length |= UInt64(b[pos + i]) << (8 * UInt64(i)) }
        guard CRC32C.maskedChecksum(b[pos..<(pos + 8)]) == uint32(b, at: pos + 8) else { return nil }
        guard length <= UInt64(maximumRecordLength) else { return nil }
        return Int(length)
    }

    private static func uint32(_ b: [UInt8], at pos: Int) -> UInt32 {
        UInt32(b[pos]) | UInt32(b[pos + 1]) << 8 | UInt32(b[pos + 2]) << 16 | UInt32(b[pos + 3]) << 24
    }

    /// Frames `data` as one TFRecord (for tests and tools that write event files).
    public static func frame(_ data: [UInt8]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(data.count + 16)
        let length = UInt64(data.count)
        let lengthBytes = (0..<8).map { UInt8(truncatingIfNeeded: length >> (8 * UInt64($0))) }
        out += lengthBytes
        let lc = CRC32C.maskedChecksum(lengthBytes)
        out += (0..<4).map { UInt8(truncatingIfNeeded: lc >> (8 * UInt32($0))) }
        out += data
        let dc = CRC32C.maskedChecksum(data)
        out += (0..<4).map { UInt8(truncatingIfNeeded: dc >> (8 * UInt32($0))) }
        return out
    }
}
