import Foundation
import Shared
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// The worker's local durable spool for metrics and events: an append-only log in the state
/// directory, fsync'd in batches, read back in order by the sender, and trimmed only after the
/// coordinator acknowledges. A worker restarted on the same state directory re-sends what was not
/// acknowledged, under the same sequences.
///
/// Record format (little-endian): `u32 length`, `u32 CRC-32 of the payload`, payload =
/// ``SpoolEntry`` wire encoding. A torn or corrupt tail (a crash mid-write) is cut off at recovery.
/// Files are segments `spool-<first sequence, 20 digits>.log`; the acknowledged high-water mark
/// lives in `acked` (written to a temporary file and renamed).
public final class MetricSpool: Sendable {
    public let directory: String
    private let segmentLimit: Int
    /// The trainer's side: sequence numbers and entries not yet written. Held for microseconds.
    private let memory: Mutex<Memory>
    /// The disk's side: segment files and the open descriptor. Held while writing and fsyncing.
    private let disk: Mutex<Disk>

    struct Segment: Sendable {
        var firstSequence: UInt64
        var lastSequence: UInt64
        var path: String
        var size: Int
    }

    struct Memory: Sendable {
        var buffer: [SpoolEntry] = []
        var nextSequence: UInt64 = 1
        var durableSequence: UInt64 = 0
        var ackedSequence: UInt64 = 0
    }

    struct Disk: Sendable {
        var segments: [Segment] = []
        var fd: Int32 = -1
        /// Where the last `entries(after:)` stopped, so the next call continues there instead
        /// of re-reading the segment from its start.
        var readPosition: ReadPosition?
    }

    struct ReadPosition: Sendable {
        var path: String
        var offset: Int
        var lastSequence: UInt64
    }

    /// Opens (and recovers) the spool in `directory`.
    /// - Throws: ``SpoolError`` naming the path when the directory cannot be used.
    public init(directory: String, segmentLimit: Int = 64 << 20) throws(SpoolError) {
        self.directory = directory
        self.segmentLimit = segmentLimit
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw SpoolError("cannot create the spool directory \(directory): \(error.localizedDescription)")
        }
        var m = Memory()
        var d = Disk()
        m.ackedSequence = Self.readAcked(directory)
        let names = ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [])
            .filter { $0.hasPrefix("spool-") && $0.hasSuffix(".log") }.sorted()
        for name in names {
            let path = directory + "/" + name
            let scan = try Self.scan(path: path, truncateTornTail: true)
            guard let first = scan.entries.first?.sequence, let last = scan.entries.last?.sequence else {
                unlink(path)
                continue
            }
            d.segments.append(Segment(firstSequence: first, lastSequence: last, path: path, size: scan.validSize))
            m.nextSequence = max(m.nextSequence, last + 1)
        }
        m.nextSequence = max(m.nextSequence, m.ackedSequence + 1)
        m.durableSequence = m.nextSequence - 1
        memory = Mutex(m)
        disk = Mutex(d)
        trim()
    }

    deinit {
        disk.withLock { d in
            if d.fd >= 0 { close(d.fd) }
        }
    }

    // MARK: appending (the trainer's hot path: memory only)

    /// Appends a batch of points (and events) and returns its sequence. Costs a lock and an array
    /// append: the bytes reach disk at the next ``flush()``.
    @discardableResult
    public func append(points: [MetricPoint], events: [EventRequest] = []) -> UInt64 {
        memory.withLock { m in
            let seq = m.nextSequence
            m.nextSequence += 1
            m.buffer.append(SpoolEntry(sequence: seq, points: points, events: events))
            return seq
        }
    }

    /// Writes buffered entries and fsyncs them (appends continue meanwhile). Returns the durable
    /// high-water mark. On failure the entries stay buffered and the next flush retries them.
    @discardableResult
    public func flush() throws(SpoolError) -> UInt64 {
        try disk.withLock { (d) throws(SpoolError) -> UInt64 in
            let batch = memory.withLock { m -> [SpoolEntry] in m.buffer }
            guard let first = batch.first?.sequence, let last = batch.last?.sequence else { return durableSequence }
            var bytes: [UInt8] = []
            for e in batch { Self.frame(e, into: &bytes) }
            if d.fd < 0 || (d.segments.last?.size ?? Int.max) >= segmentLimit {
                if d.fd >= 0 { close(d.fd) }
                d.fd = -1
                let path = directory + "/" + String(format: "spool-%020llu.log", first)
                let fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
                guard fd >= 0 else { throw SpoolError("cannot open \(path): \(String(cString: strerror(errno)))") }
                d.fd = fd
                if d.segments.last?.path != path {
                    d.segments.append(Segment(firstSequence: first, lastSequence: first, path: path, size: 0))
                }
                Self.syncDirectory(directory)
            }
            var written = 0
            while written < bytes.count {
                let n = bytes.withUnsafeBytes { write(d.fd, $0.baseAddress! + written, $0.count - written) }
                if n < 0 {
                    if errno == EINTR { continue }
                    let why = String(cString: strerror(errno))
                    // Roll back a partial write so the file stays a sequence of whole records.
                    if let size = d.segments.last?.size { _ = ftruncate(d.fd, off_t(size)) }
                    throw SpoolError("cannot write the spool \(d.segments.last?.path ?? directory): \(why) (is the disk full?)")
                }
                written += n
            }
            guard fsync(d.fd) == 0 else {
                throw SpoolError("cannot fsync the spool \(d.segments.last?.path ?? directory): \(String(cString: strerror(errno)))")
            }
            d.segments[d.segments.count - 1].size += bytes.count
            d.segments[d.segments.count - 1].lastSequence = last
            memory.withLock { m in
                m.buffer.removeFirst(batch.count)
                m.durableSequence = last
            }
            return last
        }
    }

    // MARK: sending

    /// One durable spool record as it is on disk: its sequence, its number of points and the
    /// entry's wire encoding (checksum verified), ready to be sent without decoding.
    public struct Record: Sendable, Equatable {
        public var sequence: UInt64
        public var pointCount: Int
        public var bytes: ArraySlice<UInt8>
    }

    /// Durable entries after `sequence`, in order, up to about `maxPoints` points (at least one
    /// entry). Continues from where the previous call stopped when `sequence` is where it
    /// stopped (the usual case: the previous batch was acknowledged); otherwise re-reads.
    public func entries(after sequence: UInt64, maxPoints: Int = 20_000) throws(SpoolError) -> [SpoolEntry] {
        try records(after: sequence, maxPoints: maxPoints).compactMap { try? SpoolEntry.decode(Array($0.bytes)) }
    }

    /// ``entries(after:maxPoints:)`` as raw records: what the sender puts on the wire.
    public func records(after sequence: UInt64, maxPoints: Int = 20_000) throws(SpoolError) -> [Record] {
        let (segments, position) = disk.withLock { ($0.segments, $0.readPosition) }
        let durable = durableSequence
        var out: [Record] = []
        var points = 0
        var newPosition: ReadPosition?
        outer: for seg in segments where seg.lastSequence > sequence && seg.firstSequence <= durable {
            var offset = 0
            if let p = position, p.path == seg.path, p.lastSequence == sequence, p.offset <= seg.size { offset = p.offset }
            // Read in windows: a large backlog is never read whole to take one batch from it.
            var window = Self.readWindow
            while offset < seg.size {
                let chunk = try Self.read(path: seg.path, from: offset, to: min(seg.size, offset + window))
                var pos = 0
                while let (r, length) = Self.rawRecord(chunk, at: pos) {
                    if r.sequence > durable { break outer }
                    if r.sequence > sequence {
                        if !out.isEmpty && points + r.pointCount > maxPoints { break outer }
                        out.append(r)
                        points += r.pointCount
                        newPosition = ReadPosition(path: seg.path, offset: offset + pos + length, lastSequence: r.sequence)
                    }
                    pos += length
                }
                if pos == 0 {
                    // A record larger than the window (or a torn tail): widen, or stop at the end.
                    if offset + window >= seg.size { break }
                    window *= 2
                    continue
                }
                offset += pos
            }
        }
        if let newPosition { disk.withLock { $0.readPosition = newPosition } }
        return out
    }

    /// Records that the coordinator durably stored everything up to `sequence`; whole segments
    /// below it are deleted.
    public func acknowledge(upTo sequence: UInt64) throws(SpoolError) {
        let acked = memory.withLock { m -> UInt64? in
            guard sequence > m.ackedSequence else { return nil }
            m.ackedSequence = min(sequence, m.durableSequence)
            return m.ackedSequence
        }
        guard let acked else { return }
        try writeAcked(acked)
        trim()
    }

    private func writeAcked(_ acked: UInt64) throws(SpoolError) {
        let tmp = directory + "/acked.tmp"
        do {
            try Data("\(acked)\n".utf8).write(to: URL(fileURLWithPath: tmp))
        } catch {
            throw SpoolError("cannot record the acknowledged sequence in \(directory): \(error.localizedDescription)")
        }
        guard rename(tmp, directory + "/acked") == 0 else {
            throw SpoolError("cannot record the acknowledged sequence in \(directory): \(String(cString: strerror(errno)))")
        }
    }

    /// Makes an empty spool number its next entry after `highWater` (the coordinator's mark for
    /// this worker identity), so a spool that lost its directory cannot have its entries taken
    /// for duplicates. Returns false when the spool holds unacknowledged entries at or below the
    /// mark: they conflict with what the coordinator stored (a restored or copied state
    /// directory) and would be dropped.
    @discardableResult
    public func fastForward(past highWater: UInt64) throws(SpoolError) -> Bool {
        let changed = memory.withLock { m -> Bool? in
            guard m.nextSequence <= highWater else { return false }
            guard m.buffer.isEmpty, m.durableSequence == m.ackedSequence else { return nil }
            m.nextSequence = highWater + 1
            m.durableSequence = highWater
            m.ackedSequence = highWater
            return true
        }
        switch changed {
        case .none: return false
        case .some(false): return true
        case .some(true):
            try writeAcked(highWater)
            disk.withLock { $0.readPosition = nil }
            return true
        }
    }

    public var ackedSequence: UInt64 { memory.withLock { $0.ackedSequence } }
    public var durableSequence: UInt64 { memory.withLock { $0.durableSequence } }
    public var lastAppendedSequence: UInt64 { memory.withLock { $0.nextSequence - 1 } }
    /// Entries appended but not yet acknowledged.
    public var backlog: UInt64 { memory.withLock { ($0.nextSequence - 1) - $0.ackedSequence } }

    private func trim() {
        let acked = ackedSequence
        let doomed = disk.withLock { d -> [String] in
            var out: [String] = []
            // Keep the segment being written even when fully acknowledged.
            while d.segments.count > 1, d.segments[0].lastSequence <= acked {
                out.append(d.segments.removeFirst().path)
            }
            return out
        }
        for p in doomed { unlink(p) }
    }

    // MARK: format

    static func frame(_ e: SpoolEntry, into bytes: inout [UInt8]) {
        let payload = e.wireBytes()
        let crc = CRC32.checksum(payload)
        for v in [UInt32(payload.count), crc] {
            bytes.append(UInt8(truncatingIfNeeded: v))
            bytes.append(UInt8(truncatingIfNeeded: v >> 8))
            bytes.append(UInt8(truncatingIfNeeded: v >> 16))
            bytes.append(UInt8(truncatingIfNeeded: v >> 24))
        }
        bytes.append(contentsOf: payload)
    }

    /// How much of a segment one read takes (grown for a record larger than this).
    static let readWindow = 1 << 20

    /// Bytes `[from, to)` of a file.
    static func read(path: String, from: Int, to: Int) throws(SpoolError) -> [UInt8] {
        guard to > from else { return [] }
        guard let h = FileHandle(forReadingAtPath: path) else { throw SpoolError("cannot read the spool file \(path)") }
        defer { try? h.close() }
        do {
            try h.seek(toOffset: UInt64(from))
            return [UInt8](try h.read(upToCount: to - from) ?? Data())
        } catch {
            throw SpoolError("cannot read the spool file \(path): \(error.localizedDescription)")
        }
    }

    /// The record starting at `pos`, checksum verified but not decoded, and its framed length;
    /// nil at a torn or corrupt record (or one whose header does not parse).
    static func rawRecord(_ bytes: [UInt8], at pos: Int) -> (Record, Int)? {
        guard pos + 8 <= bytes.count else { return nil }
        func u32(_ at: Int) -> UInt32 {
            UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        let len = Int(u32(pos))
        guard pos + 8 + len <= bytes.count else { return nil }
        let payload = bytes[(pos + 8)..<(pos + 8 + len)]
        guard CRC32.checksum(payload) == u32(pos + 4) else { return nil }
        // A SpoolEntry starts with its sequence and its point count.
        var r = WireReader(bytes, offset: pos + 8)
        guard let seq = try? r.readVarint("spool.sequence"), let n = try? r.readVarint("spool.points"), n <= UInt64(len) else { return nil }
        return (Record(sequence: seq, pointCount: Int(n), bytes: payload), 8 + len)
    }

    /// The record starting at `pos` and its framed length; nil at a torn or corrupt record.
    static func decodeRecord(_ bytes: [UInt8], at pos: Int) -> (SpoolEntry, Int)? {
        guard pos + 8 <= bytes.count else { return nil }
        func u32(_ at: Int) -> UInt32 {
            UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        }
        let len = Int(u32(pos))
        guard pos + 8 + len <= bytes.count else { return nil }
        let payload = bytes[(pos + 8)..<(pos + 8 + len)]
        guard CRC32.checksum(payload) == u32(pos + 4), let e = try? SpoolEntry.decode(Array(payload)) else { return nil }
        return (e, 8 + len)
    }

    struct Scan {
        var entries: [SpoolEntry]
        var validSize: Int
    }

    /// Reads whole records; stops at the first torn or corrupt one (and cuts it off when asked).
    static func scan(path: String, truncateTornTail: Bool) throws(SpoolError) -> Scan {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw SpoolError("cannot read the spool file \(path)")
        }
        let bytes = [UInt8](data)
        var entries: [SpoolEntry] = []
        var pos = 0
        while let (e, length) = decodeRecord(bytes, at: pos) {
            entries.append(e)
            pos += length
        }
        if truncateTornTail && pos < bytes.count {
            _ = truncate(path, off_t(pos))
        }
        return Scan(entries: entries, validSize: pos)
    }

    static func readAcked(_ directory: String) -> UInt64 {
        guard let d = FileManager.default.contents(atPath: directory + "/acked") else { return 0 }
        return UInt64(String(decoding: d, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    static func syncDirectory(_ path: String) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 {
            _ = fsync(fd)
            close(fd)
        }
    }
}

/// A spool that cannot be written or read, naming the path and the likely cause.
public struct SpoolError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
