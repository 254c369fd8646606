import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One member of a ZIP archive, as the archive's central directory describes it.
public struct ZipEntry: Sendable, Equatable {
    /// The member's path inside the archive (`archive/data.pkl`).
    public var name: String
    /// The compression method: 0 is stored (uncompressed), 8 is deflate.
    public var method: UInt16
    /// The general-purpose flags (bit 0: encrypted; bit 3: sizes in a data descriptor).
    public var flags: UInt16
    /// The CRC-32 of the uncompressed data (0 when the writer did not compute one).
    public var crc32: UInt32
    /// Bytes of (possibly compressed) data in the file.
    public var compressedSize: Int64
    /// Bytes of data once decompressed.
    public var uncompressedSize: Int64
    /// Where the member's local header starts in the file.
    public var localHeaderOffset: Int64

    public init(name: String, method: UInt16, flags: UInt16, crc32: UInt32, compressedSize: Int64,
                uncompressedSize: Int64, localHeaderOffset: Int64) {
        self.name = name
        self.method = method
        self.flags = flags
        self.crc32 = crc32
        self.compressedSize = compressedSize
        self.uncompressedSize = uncompressedSize
        self.localHeaderOffset = localHeaderOffset
    }

    /// Whether the data is encrypted (flag bit 0).
    public var isEncrypted: Bool { flags & 1 != 0 }
    /// Whether a data descriptor follows the data (flag bit 3; torch's writer sets it).
    public var hasDataDescriptor: Bool { flags & 8 != 0 }
}

/// A ZIP archive could not be read, or what it says about itself does not fit the file.
public struct ZipArchiveError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: String, Sendable {
        /// The file cannot be opened or read (missing, a directory, no permission, I/O error).
        case unreadable
        /// The file ends before its end-of-central-directory record (or is empty): it was cut short.
        case truncated
        /// The file does not start like a ZIP archive.
        case notZip
        /// The end records or central directory contradict each other or the file's size.
        case inconsistent
    }

    public let code: Code
    public let path: String
    public let message: String

    public init(code: Code, path: String, message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { "ZIP archive \(path) (\(code.rawValue)): \(message)" }
}

/// The central directory of a ZIP archive (including ZIP64), read from the end of the file.
///
/// Reading finds the end-of-central-directory record within the last 65,557 bytes (22 bytes of
/// record plus the longest comment), follows the ZIP64 locator to the ZIP64 end record when there
/// is one (torch's writer always writes one), then reads the directory's entries with their ZIP64
/// extra fields. Only the tail of the file and the directory are read, with positioned reads, so
/// a 7 GB checkpoint costs a few hundred kilobytes of I/O.
///
/// The directory is accepted only when it is consistent with the file: the end record ends exactly
/// at the end of the file (a file with bytes after it, or with none, is not a complete archive),
/// the directory lies before the end records, and every entry's local header, name and data
/// (plus a data descriptor when flagged) end before the directory without overlapping the next
/// entry. Those checks use the directory alone; ``dataRange(of:in:)`` reads an entry's local
/// header for the exact position of its data.
public struct ZipCentralDirectory: Sendable, Equatable {
    /// The farthest back from the end of the file the end record can start (22 + 65,535).
    public static let maximumEndSearch = 65_557
    /// A central directory larger than this is refused as inconsistent (torch's are kilobytes).
    public static let maximumDirectorySize: Int64 = 256 << 20

    /// The size of the file, in bytes.
    public var fileSize: Int64
    /// Where the central directory starts.
    public var directoryOffset: Int64
    /// The central directory's length in bytes.
    public var directorySize: Int64
    /// Whether the archive has a ZIP64 end record.
    public var isZip64: Bool
    /// The members, in directory order.
    public var entries: [ZipEntry]

    public init(fileSize: Int64, directoryOffset: Int64, directorySize: Int64, isZip64: Bool, entries: [ZipEntry]) {
        self.fileSize = fileSize
        self.directoryOffset = directoryOffset
        self.directorySize = directorySize
        self.isZip64 = isZip64
        self.entries = entries
    }

    /// Reads and validates the central directory of the file at `path`.
    public static func read(path: String) throws(ZipArchiveError) -> ZipCentralDirectory {
        try read(try PositionedFile(path: path))
    }

    /// Reads and validates the central directory of an open file.
    static func read(_ file: PositionedFile) throws(ZipArchiveError) -> ZipCentralDirectory {
        let size = file.size
        if size == 0 { throw file.error(.truncated, "the file is empty") }
        try checkSignature(file)

        // The end-of-central-directory record: the last one whose comment ends the file.
        let tailLength = Int(min(size, Int64(maximumEndSearch)))
        let tailStart = size - Int64(tailLength)
        let tail = try file.read(at: tailStart, count: tailLength)
        var endAt: Int?
        var i = tailLength - 22
        while i >= 0 {
            if tail.uint32(at: i) == 0x0605_4B50, i + 22 + Int(tail.uint16(at: i + 20)) == tailLength {
                endAt = i
                break
            }
            i -= 1
        }
        guard let endAt else {
            throw file.error(.truncated, "no end-of-central-directory record in its last \(tailLength) bytes: the file was cut short (\(size) bytes)")
        }
        let endOffset = tailStart + Int64(endAt)
        guard tail.uint16(at: endAt + 4) == 0, tail.uint16(at: endAt + 6) == 0 else {
            throw file.error(.inconsistent, "the end record describes a multi-disk (spanned) archive, which is not supported")
        }
        var entryCount = UInt64(tail.uint16(at: endAt + 10))
        var directorySize = UInt64(tail.uint32(at: endAt + 12))
        var directoryOffset = UInt64(tail.uint32(at: endAt + 16))
        var directoryLimit = endOffset // the directory must end before the end records
        var isZip64 = false

        // The ZIP64 locator sits right before the end record and points at the ZIP64 end record.
        if endOffset >= 20 {
            let locatorOffset = endOffset - 20
            let locator = locatorOffset >= tailStart
                ? Array(tail[Int(locatorOffset - tailStart)..<endAt])
                : try file.read(at: locatorOffset, count: 20)
            if locator.uint32(at: 0) == 0x0706_4B50 {
                let recordOffset = locator.uint64(at: 8)
                guard recordOffset <= UInt64(locatorOffset), UInt64(locatorOffset) - recordOffset >= 56 else {
                    throw file.error(.inconsistent, "the ZIP64 locator points at byte \(recordOffset), which leaves no room for the ZIP64 end record before the locator at byte \(locatorOffset)")
                }
                let record = try file.read(at: Int64(recordOffset), count: 56)
                guard record.uint32(at: 0) == 0x0606_4B50 else {
                    throw file.error(.inconsistent, "no ZIP64 end record at byte \(recordOffset), where the ZIP64 locator points")
                }
                let recordLength = record.uint64(at: 4)
                guard recordLength >= 44, recordLength <= UInt64(locatorOffset) - recordOffset - 12 else {
                    throw file.error(.inconsistent, "the ZIP64 end record at byte \(recordOffset) claims \(recordLength) bytes, which does not fit before the locator")
                }
                guard record.uint32(at: 16) == 0, record.uint32(at: 20) == 0 else {
                    throw file.error(.inconsistent, "the ZIP64 end record describes a multi-disk (spanned) archive, which is not supported")
                }
                entryCount = record.uint64(at: 32)
                directorySize = record.uint64(at: 40)
                directoryOffset = record.uint64(at: 48)
                directoryLimit = Int64(recordOffset)
                isZip64 = true
            }
        }

        guard directoryOffset <= UInt64(directoryLimit), directorySize <= UInt64(directoryLimit) - directoryOffset else {
            throw file.error(.inconsistent, "the central directory (\(directorySize) bytes at byte \(directoryOffset)) does not fit before the end records at byte \(directoryLimit) of this \(size)-byte file")
        }
        guard Int64(directorySize) <= maximumDirectorySize else {
            throw file.error(.inconsistent, "the central directory claims \(directorySize) bytes, more than the \(maximumDirectorySize) accepted")
        }
        guard entryCount <= directorySize / 46 else {
            throw file.error(.inconsistent, "the end record claims \(entryCount) entries, more than a \(directorySize)-byte central directory can hold")
        }
        let directory = try file.read(at: Int64(directoryOffset), count: Int(directorySize))
        var entries: [ZipEntry] = []
        entries.reserveCapacity(Int(entryCount))
        var nameLengths: [Int] = []
        var p = 0
        for index in 0..<Int(entryCount) {
            guard p + 46 <= directory.count, directory.uint32(at: p) == 0x0201_4B50 else {
                throw file.error(.inconsistent, "central directory entry \(index) of \(entryCount) is missing at byte \(Int64(directoryOffset) + Int64(p))")
            }
            let nameLength = Int(directory.uint16(at: p + 28))
            let extraLength = Int(directory.uint16(at: p + 30))
            let commentLength = Int(directory.uint16(at: p + 32))
            let end = p + 46 + nameLength + extraLength + commentLength
            guard end <= directory.count else {
                throw file.error(.inconsistent, "central directory entry \(index) runs past the end of the directory")
            }
            let name = String(decoding: directory[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            var compressed = UInt64(directory.uint32(at: p + 20))
            var uncompressed = UInt64(directory.uint32(at: p + 24))
            var offset = UInt64(directory.uint32(at: p + 42))
            let disk = directory.uint16(at: p + 34)
            // ZIP64 extended information (header id 1): the 64-bit values of the fields saturated
            // at 0xFFFFFFFF (0xFFFF for the disk), in this order.
            var q = p + 46 + nameLength
            let extraEnd = q + extraLength
            while q + 4 <= extraEnd {
                let id = directory.uint16(at: q)
                let length = Int(directory.uint16(at: q + 2))
                let dataStart = q + 4
                guard dataStart + length <= extraEnd else {
                    throw file.error(.inconsistent, "entry '\(name)' has an extra field that runs past its extra data")
                }
                if id == 1 {
                    var r = dataStart
                    func next64(_ what: String) throws(ZipArchiveError) -> UInt64 {
                        guard r + 8 <= dataStart + length else {
                            throw file.error(.inconsistent, "entry '\(name)' has a ZIP64 extra field too short for its \(what)")
                        }
                        defer { r += 8 }
                        return directory.uint64(at: r)
                    }
                    if uncompressed == 0xFFFF_FFFF { uncompressed = try next64("uncompressed size") }
                    if compressed == 0xFFFF_FFFF { compressed = try next64("compressed size") }
                    if offset == 0xFFFF_FFFF { offset = try next64("local header offset") }
                    if disk == 0xFFFF, r + 4 <= dataStart + length, directory.uint32(at: r) != 0 {
                        throw file.error(.inconsistent, "entry '\(name)' starts on another disk of a spanned archive")
                    }
                }
                q = dataStart + length
            }
            if disk != 0 && disk != 0xFFFF {
                throw file.error(.inconsistent, "entry '\(name)' starts on disk \(disk) of a spanned archive")
            }
            guard compressed <= UInt64(Int64.max), uncompressed <= UInt64(Int64.max), offset <= UInt64(Int64.max) else {
                throw file.error(.inconsistent, "entry '\(name)' has a size or offset beyond 2^63")
            }
            entries.append(ZipEntry(name: name, method: directory.uint16(at: p + 10), flags: directory.uint16(at: p + 8),
                                    crc32: directory.uint32(at: p + 16), compressedSize: Int64(compressed),
                                    uncompressedSize: Int64(uncompressed), localHeaderOffset: Int64(offset)))
            nameLengths.append(nameLength)
            p = end
        }

        // Every entry's header, name and data must end before the directory and before the next entry.
        let order = entries.indices.sorted { entries[$0].localHeaderOffset < entries[$1].localHeaderOffset }
        for (rank, index) in order.enumerated() {
            let entry = entries[index]
            let minimumEnd = entry.localHeaderOffset.addingReportingOverflow(
                30 + Int64(nameLengths[index]) + (entry.hasDataDescriptor ? 12 : 0))
            let end = minimumEnd.partialValue.addingReportingOverflow(entry.compressedSize)
            let limit = rank + 1 < order.count ? entries[order[rank + 1]].localHeaderOffset : Int64(directoryOffset)
            let what = rank + 1 < order.count ? "the next entry '\(entries[order[rank + 1]].name)'" : "the central directory"
            guard !minimumEnd.overflow, !end.overflow, end.partialValue <= limit else {
                throw file.error(.inconsistent, "entry '\(entry.name)' (\(entry.compressedSize) bytes, header at byte \(entry.localHeaderOffset)) runs past \(what) at byte \(limit): the file's data is incomplete or the directory is corrupt")
            }
        }
        return ZipCentralDirectory(fileSize: size, directoryOffset: Int64(directoryOffset), directorySize: Int64(directorySize),
                                   isZip64: isZip64, entries: entries)
    }

    /// The file range of an entry's (stored or compressed) data, found through its local header
    /// (whose name and extra field, which torch uses for alignment padding, come before the data).
    func dataRange(of entry: ZipEntry, in file: PositionedFile) throws(ZipArchiveError) -> Range<Int64> {
        let nameBytes = Array(entry.name.utf8)
        let headerLength = 30 + nameBytes.count
        guard entry.localHeaderOffset <= directoryOffset - Int64(headerLength) else {
            throw file.error(.inconsistent, "the local header of '\(entry.name)' at byte \(entry.localHeaderOffset) does not fit before the central directory")
        }
        let header = try file.read(at: entry.localHeaderOffset, count: headerLength)
        guard header.uint32(at: 0) == 0x0403_4B50 else {
            throw file.error(.inconsistent, "no local header for '\(entry.name)' at byte \(entry.localHeaderOffset), where the central directory points")
        }
        guard Int(header.uint16(at: 26)) == nameBytes.count, Array(header[30...]) == nameBytes else {
            throw file.error(.inconsistent, "the local header at byte \(entry.localHeaderOffset) names another file than the directory's '\(entry.name)'")
        }
        let start = entry.localHeaderOffset + Int64(headerLength) + Int64(header.uint16(at: 28))
        guard entry.compressedSize <= directoryOffset - start else {
            throw file.error(.inconsistent, "the data of '\(entry.name)' (\(entry.compressedSize) bytes at byte \(start)) runs past the central directory at byte \(directoryOffset)")
        }
        return start..<(start + entry.compressedSize)
    }

    /// A file that is not a ZIP archive at all is `notZip`; anything that starts like one (even
    /// one to three bytes of `PK\3\4`) and has no end record is `truncated`.
    private static func checkSignature(_ file: PositionedFile) throws(ZipArchiveError) {
        let head = try file.read(at: 0, count: Int(min(file.size, 16)))
        let local: [UInt8] = [0x50, 0x4B, 0x03, 0x04]
        let empty: [UInt8] = [0x50, 0x4B, 0x05, 0x06]
        let prefix = Array(head.prefix(4))
        if local.starts(with: prefix) || empty.starts(with: prefix) { return }
        // torch.save's legacy (pre-1.6, or _use_new_zipfile_serialization=False) format starts
        // with a pickled magic number: PROTO 2, LONG1 10 bytes, 0x1950a86a20f9469cfc6c.
        let legacy: [UInt8] = [0x80, 0x02, 0x8A, 0x0A, 0x6C, 0xFC, 0x9C, 0x46, 0xF9, 0x20, 0x6A, 0xA8, 0x50, 0x19]
        if head.starts(with: legacy) {
            throw file.error(.notZip, "it is in torch's legacy (non-zip) serialization format, not a ZIP archive")
        }
        let shown = prefix.map { String(format: "%02x", $0) }.joined(separator: " ")
        throw file.error(.notZip, "it starts with bytes \(shown), not a ZIP local header (50 4b 03 04)")
    }

    /// The CRC-32 (ISO-HDLC, as in ZIP and zlib) of `bytes`.
    public static func crc32(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        let table = crcTable
        for byte in bytes {
            crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
        }
        return crc ^ 0xFFFF_FFFF
    }

    private static let crcTable: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }
}

/// A file opened for positioned reads (`pread`), never read as a whole. Counts the bytes it read,
/// so tests can check that only the tail and the wanted entries were touched. Internal to the
/// checkpoint readers; one owner at a time.
final class PositionedFile {
    let path: String
    /// The file's size when it was opened.
    let size: Int64
    /// Bytes read so far.
    private(set) var bytesRead: Int64 = 0
    private let fd: Int32

    init(path: String) throws(ZipArchiveError) {
        self.path = path
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            let reason = String(cString: strerror(errno))
            throw ZipArchiveError(code: .unreadable, path: path, message: "cannot open it: \(reason)")
        }
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw ZipArchiveError(code: .unreadable, path: path, message: "cannot stat it: \(reason)")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw ZipArchiveError(code: .unreadable, path: path, message: "it is not a regular file")
        }
        self.fd = fd
        self.size = Int64(status.st_size)
    }

    deinit { close(fd) }

    /// `count` bytes at `offset`; a range past the end of the file (it shrank, or the caller's
    /// arithmetic came from a corrupt header) is `truncated`.
    func read(at offset: Int64, count: Int) throws(ZipArchiveError) -> [UInt8] {
        guard offset >= 0, count >= 0, Int64(count) <= size - offset else {
            throw error(.truncated, "a read of \(count) bytes at byte \(offset) goes past the end of this \(size)-byte file")
        }
        if count == 0 { return [] }
        var bytes = [UInt8](repeating: 0, count: count)
        var failure: Int32 = 0
        let got = bytes.withUnsafeMutableBytes { buffer -> Int in
            var done = 0
            while done < count {
                let n = pread(fd, buffer.baseAddress! + done, count - done, off_t(offset + Int64(done)))
                if n > 0 { done += n; continue }
                if n < 0 && errno == EINTR { continue }
                if n < 0 { failure = errno }
                break
            }
            return done
        }
        bytesRead += Int64(got)
        if failure != 0 {
            throw error(.unreadable, "read at byte \(offset + Int64(got)) failed: \(String(cString: strerror(failure)))")
        }
        guard got == count else {
            throw error(.truncated, "the file ended at byte \(offset + Int64(got)) while reading \(count) bytes at byte \(offset) (it shrank while being read)")
        }
        return bytes
    }

    func error(_ code: ZipArchiveError.Code, _ message: String) -> ZipArchiveError {
        ZipArchiveError(code: code, path: path, message: message)
    }
}

extension [UInt8] {
    /// Little-endian integers at a byte offset; the caller has checked the bounds.
    fileprivate func uint16(at i: Int) -> UInt16 { UInt16(self[i]) | UInt16(self[i + 1]) << 8 }
    fileprivate func uint32(at i: Int) -> UInt32 {
        UInt32(self[i]) | UInt32(self[i + 1]) << 8 | UInt32(self[i + 2]) << 16 | UInt32(self[i + 3]) << 24
    }
    fileprivate func uint64(at i: Int) -> UInt64 { UInt64(uint32(at: i)) | UInt64(uint32(at: i + 4)) << 32 }
}
