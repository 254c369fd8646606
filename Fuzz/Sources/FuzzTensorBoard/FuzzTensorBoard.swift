import FuzzSupport
import Worker

/// The scratch folder standing for a trainer's log directory, and its one event file.
let logDirectory = ScratchDirectory.path("tensorboard")
let eventFile = logDirectory + "/events.out.tfevents.fuzz"

/// Fuzzes the TensorBoard reader. The first byte chooses what the rest is:
/// - even: one encoded `Event` for ``TensorBoardEvent/init(decoding:)``;
/// - odd: an event file, tailed by ``TFRecordReader`` (in chunks of 64 + the byte's upper bits, so
///   that records straddle reads) and by ``TensorBoardScalarReader``.
///
/// Beyond "does not crash": every record the reader returns is the exact framing of its data at
/// its offset, in order; the offset never passes the end and `pendingBytes` is what lies beyond
/// it; a second poll of the unchanged file finds nothing new; a file with no warnings is the
/// concatenation of its records; the scalar reader returns exactly the scalars of the decodable
/// records' events.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
    let bytes = FuzzInput.bytes(start, count)
    guard let mode = bytes.first else { return 0 }
    let rest = Array(bytes.dropFirst())
    if mode & 1 == 0 {
        checkEvent(rest)
    } else {
        checkFile(rest, chunkSize: 64 + Int(mode >> 1))
    }
    return 0
}

/// Decodes one event; a refusal must say what is malformed.
@discardableResult
func checkEvent(_ bytes: [UInt8]) -> TensorBoardEvent? {
    do {
        return try TensorBoardEvent(decoding: bytes)
    } catch {
        FuzzCheck.require(error.message.hasPrefix("malformed "), "a decode error that does not say what is malformed: \(error)")
        return nil
    }
}

func checkFile(_ bytes: [UInt8], chunkSize: Int) {
    ScratchDirectory.write(bytes, to: eventFile)
    var reader = TFRecordReader(path: eventFile, chunkSize: chunkSize)
    let batch: TFRecordBatch
    do { batch = try reader.poll() } catch {
        FuzzCheck.require(false, "the scratch file could not be read: \(error)")
        return
    }
    FuzzCheck.require(reader.offset >= 0 && reader.offset <= bytes.count, "offset \(reader.offset) of \(bytes.count) bytes")
    FuzzCheck.require(batch.pendingBytes == bytes.count - reader.offset, "pendingBytes \(batch.pendingBytes)")
    var previousEnd = 0
    for record in batch.records {
        let framed = TFRecordReader.frame(record.data)
        FuzzCheck.require(record.offset >= previousEnd && record.offset + framed.count <= reader.offset,
                          "record at \(record.offset) overlaps or passes the offset")
        FuzzCheck.require(Array(bytes[record.offset..<(record.offset + framed.count)]) == framed,
                          "record at \(record.offset) is not the framing of its data")
        previousEnd = record.offset + framed.count
    }
    if batch.warnings.isEmpty {
        FuzzCheck.require(batch.records.reduce([UInt8]()) { $0 + TFRecordReader.frame($1.data) } == Array(bytes[..<reader.offset]),
                          "a clean file is not the concatenation of its records")
    }
    do {
        let again = try reader.poll()
        FuzzCheck.require(again.records.isEmpty, "a second poll of an unchanged file found \(again.records.count) records")
        FuzzCheck.require(again.pendingBytes == batch.pendingBytes, "a second poll moved the pending bytes")
    } catch {
        FuzzCheck.require(false, "second poll failed: \(error)")
    }

    let expected = batch.records.compactMap { checkEvent($0.data) }.flatMap { e in
        e.scalars.map { TensorBoardScalar(tag: $0.tag, step: e.step, value: $0.value, wallTime: e.wallTime) }
    }
    var scalars = TensorBoardScalarReader(directory: logDirectory)
    let poll = scalars.poll()
    FuzzCheck.require(poll.scalars.map(Bits.init) == expected.map(Bits.init), "the scalar reader read \(poll.scalars.count) scalars, the records hold \(expected.count)")
}

/// A scalar compared bit for bit (a NaN wall time or value equals itself).
struct Bits: Equatable {
    let tag: String, step: Int64, value: UInt64, wallTime: UInt64
    init(_ s: TensorBoardScalar) {
        tag = s.tag
        step = s.step
        value = s.value.bitPattern
        wallTime = s.wallTime.bitPattern
    }
}

/// The executable's entry point (SwiftPM links `FuzzTensorBoard_main` as `main`): runs libFuzzer on ``fuzz(_:_:)``.
@_cdecl("FuzzTensorBoard_main")
public func entry(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    FuzzDriver.run(argc, argv) { data, size in data.map { fuzz(UnsafeRawPointer($0), size) } ?? 0 }
}
