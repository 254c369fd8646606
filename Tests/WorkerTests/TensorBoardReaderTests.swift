import Foundation
import Testing
@testable import Shared
@testable import Worker

@Suite("TensorBoard event files")
struct TensorBoardReaderTests {
    // MARK: CRC-32C

    @Test("CRC-32C matches the standard check value and TFRecord's masking")
    func crc32c() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
        #expect(CRC32C.checksum([UInt8]()) == 0)
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA) // RFC 3720 B.4
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        let crc: UInt32 = 0xE306_9283
        #expect(CRC32C.mask(crc) == ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8)
        #expect(CRC32C.unmask(CRC32C.mask(crc)) == crc)
        #expect(CRC32C.update(CRC32C.update(0, Array("1234".utf8)), Array("56789".utf8)) == 0xE306_9283)
    }

    @Test("a framed record is length, masked length CRC, data, masked data CRC")
    func framing() {
        let framed = TFRecordReader.frame(Array("abc".utf8))
        #expect(framed.count == 8 + 4 + 3 + 4)
        #expect(Array(framed[0..<8]) == [3, 0, 0, 0, 0, 0, 0, 0])
        let lengthCRC = UInt32(framed[8]) | UInt32(framed[9]) << 8 | UInt32(framed[10]) << 16 | UInt32(framed[11]) << 24
        #expect(lengthCRC == CRC32C.mask(CRC32C.checksum(framed[0..<8])))
        #expect(Array(framed[12..<15]) == Array("abc".utf8))
    }

    // MARK: Files written by the real SummaryWriter

    /// Runs the fixture trainer and returns (event file, stdout lines).
    func writeRun(_ extra: [String] = [], steps: Int = 30) throws -> (file: String, dir: String, stdout: [Substring]) {
        let out = TrainerFixture.temporaryDirectory("tb")
        let logs = out + "/logs/run_test"
        let r = try TrainerFixture.train(["--output-dir", out, "--log-dir", logs, "--max-steps", String(steps),
                                          "--checkpoint-every", "10"] + extra)
        try #require(r.status == 0, "fake_trainer.py failed: \(r.stderr)")
        let files = TensorBoardScalarReader.eventFiles(under: logs)
        try #require(files.count == 1, "expected one event file in \(logs), found \(files)")
        return (files[0], logs, r.stdout.split(separator: "\n"))
    }

    /// The metrics the stdout lines state, keyed by (key, step).
    func stdoutMetrics(_ lines: [Substring]) -> [String: Double] {
        var m: [String: Double] = [:]
        for l in lines { if let p = TrainerLogParser.parse(l) { for (k, v) in p.values { m["\(k)@\(p.step)"] = v } } }
        return m
    }

    @Test("every scalar the real writer wrote is read, with the step and value stdout printed",
          arguments: ["simple", "tensor"])
    func readsRealWriter(style: String) throws {
        let run = try writeRun(["--tb-style", style])
        var reader = TensorBoardScalarReader(directory: run.dir)
        let poll = reader.poll()
        #expect(poll.warnings.isEmpty)
        // 30 steps × 5 train scalars + 3 validations × 3 val scalars.
        #expect(poll.scalars.count == 30 * 5 + 3 * 3)
        #expect(Set(poll.scalars.map(\.tag)) == ["train/text_loss", "train/mel_loss", "train/mel_top1", "train/lr",
                                                 "train/samples_per_sec", "val/text_loss", "val/mel_loss", "val/mel_top1"])
        let printed = stdoutMetrics(run.stdout)
        var compared = 0
        for s in poll.scalars {
            guard let v = printed["\(s.tag)@\(s.step)"] else { continue }
            let tolerance = s.tag == "train/lr" ? abs(v) * 0.01 : 0.00051 // printed with %.2e / %.4f
            #expect(abs(s.value - v) <= tolerance, "\(s.tag) at step \(s.step): TensorBoard \(s.value), stdout \(v)")
            #expect(s.wallTime > 1_600_000_000)
            compared += 1
        }
        #expect(compared == 30 * 4 + 3 * 3)
        #expect(reader.poll().scalars.isEmpty, "a second poll of an unchanged file finds nothing new")
    }

    @Test("a NaN the trainer logs is carried")
    func nanCarried() throws {
        let run = try writeRun(["--nan-at-step", "3"], steps: 5)
        var reader = TensorBoardScalarReader(directory: run.dir)
        let mel = reader.poll().scalars.filter { $0.tag == "train/mel_loss" && $0.step == 3 }
        #expect(mel.count == 1)
        #expect(mel.first?.value.isNaN == true)
    }

    @Test("a torn last record is 'not yet': left for the next poll, then read once complete")
    func tornTail() throws {
        let run = try writeRun(steps: 12)
        let bytes = try Array(Data(contentsOf: URL(fileURLWithPath: run.file)))
        var full = TFRecordReader(path: run.file)
        let all = try full.poll().records
        try #require(all.count > 3)

        let copy = TrainerFixture.temporaryDirectory("torn") + "/events.out.tfevents.copy"
        for cut in [1, 5, 13, 20] { // inside the data CRC, inside the data, right after the header, inside the header
            try Data(bytes.dropLast(cut)).write(to: URL(fileURLWithPath: copy))
            var reader = TFRecordReader(path: copy)
            let first = try reader.poll()
            #expect(first.warnings.isEmpty, "a torn record is not corruption (cut \(cut))")
            let lastStart = all.last!.offset
            let complete = all.filter { $0.offset + 16 + $0.data.count <= bytes.count - cut }
            #expect(first.records == complete, "cut \(cut)")
            #expect(reader.offset == complete.last.map { $0.offset + 16 + $0.data.count })
            #expect(first.pendingBytes == bytes.count - cut - reader.offset)
            // The writer finishes the record.
            try Data(bytes).write(to: URL(fileURLWithPath: copy))
            let second = try reader.poll()
            #expect(second.warnings.isEmpty)
            #expect(second.records == all.filter { !complete.contains($0) }, "the rest arrives exactly once (cut \(cut))")
            #expect(second.records.last?.offset == lastStart)
            #expect(second.pendingBytes == 0)
        }
    }

    @Test("a record with a corrupt data byte is skipped with a warning and the rest is read")
    func corruptData() throws {
        let run = try writeRun(steps: 12)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: run.file)))
        var full = TFRecordReader(path: run.file)
        let all = try full.poll().records
        let victim = all[all.count / 2]
        bytes[victim.offset + 12 + victim.data.count / 2] ^= 0x5A
        let copy = TrainerFixture.temporaryDirectory("corrupt") + "/events.out.tfevents.copy"
        try Data(bytes).write(to: URL(fileURLWithPath: copy))

        var reader = TFRecordReader(path: copy)
        let batch = try reader.poll()
        #expect(batch.records == all.filter { $0 != victim })
        #expect(batch.warnings.count == 1)
        #expect(batch.warnings.first?.offset == victim.offset)
        #expect(batch.warnings.first?.message.contains("data checksum") == true)
        #expect(batch.pendingBytes == 0)
    }

    @Test("a record with a corrupt length is reported, and reading resumes at the next valid header")
    func corruptLength() throws {
        let run = try writeRun(steps: 12)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: run.file)))
        var full = TFRecordReader(path: run.file)
        let all = try full.poll().records
        let victim = all[all.count / 2]
        bytes[victim.offset + 1] ^= 0x01 // the length now claims 256 more bytes than the record has
        let copy = TrainerFixture.temporaryDirectory("corrupt-len") + "/events.out.tfevents.copy"
        try Data(bytes).write(to: URL(fileURLWithPath: copy))

        var reader = TFRecordReader(path: copy)
        let batch = try reader.poll()
        #expect(batch.records == all.filter { $0 != victim })
        #expect(batch.warnings.first?.offset == victim.offset)
        #expect(batch.warnings.first?.message.contains("length checksum") == true)
        #expect(reader.resynchronizing == false)
    }

    @Test("the directory reader decodes scalars of a corrupt file except the damaged event, with a warning")
    func directoryReaderWarns() throws {
        let run = try writeRun(steps: 12)
        var bytes = try Array(Data(contentsOf: URL(fileURLWithPath: run.file)))
        var full = TensorBoardScalarReader(directory: run.dir)
        let expected = full.poll().scalars
        var recordReader = TFRecordReader(path: run.file)
        let all = try recordReader.poll().records
        let victim = all[all.count / 2]
        let lost = try TensorBoardEvent(decoding: victim.data)
        bytes[victim.offset + 12] ^= 0xFF
        try Data(bytes).write(to: URL(fileURLWithPath: run.file))

        var reader = TensorBoardScalarReader(directory: run.dir)
        let poll = reader.poll()
        #expect(poll.warnings.count == 1)
        #expect(poll.scalars.count == expected.count - lost.scalars.count)
    }

    // MARK: Hand-made events

    @Test("scalars written as a tensor (float_val, double_val, tensor_content) are read")
    func tensorForms() throws {
        func event(_ tensor: [UInt8]) -> [UInt8] {
            var value = ProtoBytes()
            value.bytes(1, Array("t".utf8))
            value.bytes(8, tensor)
            var summary = ProtoBytes()
            summary.bytes(1, value.out)
            var e = ProtoBytes()
            e.fixed64(1, (1.5).bitPattern)
            e.varint(2, 42)
            e.bytes(5, summary.out)
            return e.out
        }
        var floatVal = ProtoBytes(); floatVal.varint(1, 1); floatVal.bytes(5, le((0.25 as Float).bitPattern))
        var doubleVal = ProtoBytes(); doubleVal.varint(1, 2); doubleVal.bytes(6, le64((0.125).bitPattern))
        var content = ProtoBytes(); content.varint(1, 2); content.bytes(4, le64((-2.5).bitPattern))
        var many = ProtoBytes(); many.varint(1, 1); many.bytes(5, le((1 as Float).bitPattern) + le((2 as Float).bitPattern))
        #expect(try TensorBoardEvent(decoding: event(floatVal.out)).scalars == [.init(tag: "t", value: 0.25)])
        #expect(try TensorBoardEvent(decoding: event(doubleVal.out)).scalars == [.init(tag: "t", value: 0.125)])
        #expect(try TensorBoardEvent(decoding: event(content.out)).scalars == [.init(tag: "t", value: -2.5)])
        #expect(try TensorBoardEvent(decoding: event(many.out)).scalars.isEmpty, "a tensor of two values is not a scalar")
        let e = try TensorBoardEvent(decoding: event(floatVal.out))
        #expect(e.step == 42 && e.wallTime == 1.5)
        #expect(throws: ProtobufDecodeError.self) { try TensorBoardEvent(decoding: [0x2A, 0x05, 1]) }
    }

    @Test("the directory reader picks up event files that appear later")
    func newFiles() throws {
        let dir = TrainerFixture.temporaryDirectory("tb-new")
        var reader = TensorBoardScalarReader(directory: dir + "/logs")
        #expect(reader.poll() == TensorBoardPoll(), "a missing directory is simply empty")
        try FileManager.default.createDirectory(atPath: dir + "/logs/run_1", withIntermediateDirectories: true)
        var value = ProtoBytes(); value.bytes(1, Array("train/lr".utf8)); value.fixed32(2, (0.5 as Float).bitPattern)
        var summary = ProtoBytes(); summary.bytes(1, value.out)
        var e = ProtoBytes(); e.fixed64(1, (10.0).bitPattern); e.varint(2, 7); e.bytes(5, summary.out)
        try Data(TFRecordReader.frame(e.out)).write(to: URL(fileURLWithPath: dir + "/logs/run_1/events.out.tfevents.1.host"))
        #expect(reader.poll().scalars == [TensorBoardScalar(tag: "train/lr", step: 7, value: 0.5, wallTime: 10)])
    }
}

extension TensorBoardReaderTests {
    /// An event file as a writer started at `startTime` writes it: `file_version`, then one
    /// `train/lr` scalar per step.
    static func eventFile(startTime: Double, steps: ClosedRange<Int64>) -> [UInt8] {
        var version = ProtoBytes(); version.fixed64(1, startTime.bitPattern); version.bytes(3, Array("brain.Event:2".utf8))
        var out = TFRecordReader.frame(version.out)
        for step in steps {
            var value = ProtoBytes(); value.bytes(1, Array("train/lr".utf8)); value.fixed32(2, (Float(step) / 100).bitPattern)
            var summary = ProtoBytes(); summary.bytes(1, value.out)
            var e = ProtoBytes(); e.fixed64(1, (startTime + Double(step)).bitPattern); e.varint(2, UInt64(step)); e.bytes(5, summary.out)
            out += TFRecordReader.frame(e.out)
        }
        return out
    }

    // Seen in CI: the fixture's writer names its file by the second, so a resumed trainer started in
    // the same second as the attempt before it rewrote that attempt's file, and had grown it past the
    // reader's offset by the next poll; the reader went on from the old offset and lost steps.
    @Test("a file rewritten under the same name is read again from the start, even once it has grown past the old offset",
          arguments: [false, true])
    func rewrittenFile(byRename: Bool) throws {
        let dir = TrainerFixture.temporaryDirectory("tb-rewrite")
        let path = dir + "/events.out.tfevents.1796637972.vm"
        try Data(Self.eventFile(startTime: 1_796_637_972.25, steps: 1...20)).write(to: URL(fileURLWithPath: path))
        var reader = TensorBoardScalarReader(directory: dir)
        #expect(reader.poll().scalars.map(\.step) == Array(1...20))

        // The second writer (resumed at step 10) starts over under the same name and writes more.
        let second = Self.eventFile(startTime: 1_796_637_972.75, steps: 11...30)
        if byRename {
            try Data(second).write(to: URL(fileURLWithPath: dir + "/tmp"))
            try FileManager.default.removeItem(atPath: path)
            try FileManager.default.moveItem(atPath: dir + "/tmp", toPath: path)
        } else {
            let handle = try #require(FileHandle(forWritingAtPath: path)) // same inode, truncated
            try handle.truncate(atOffset: 0)
            try handle.write(contentsOf: Data(second))
            try handle.close()
        }
        let poll = reader.poll()
        #expect(poll.scalars.map(\.step) == Array(11...30), "every step of the new file, none of the old")
        #expect(poll.scalars.first?.wallTime == 1_796_637_972.75 + 11)
        #expect(poll.warnings.count == 1)
        #expect(poll.warnings.first?.contains("reading it again from the start") == true)
        #expect(reader.poll() == TensorBoardPoll(), "then nothing twice")
    }
}

/// A tiny protobuf writer for hand-made test events.
struct ProtoBytes {
    var out: [UInt8] = []
    mutating func raw(_ v: UInt64) {
        var v = v
        while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
        out.append(UInt8(v))
    }
    mutating func varint(_ field: UInt64, _ v: UInt64) { raw(field << 3); raw(v) }
    mutating func fixed64(_ field: UInt64, _ v: UInt64) { raw(field << 3 | 1); out += le64(v) }
    mutating func fixed32(_ field: UInt64, _ v: UInt32) { raw(field << 3 | 5); out += le(v) }
    mutating func bytes(_ field: UInt64, _ b: [UInt8]) { raw(field << 3 | 2); raw(UInt64(b.count)); out += b }
}

func le(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (8 * $0)) } }
func le64(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (8 * UInt64($0))) } }
