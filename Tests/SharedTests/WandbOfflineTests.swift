import Foundation
@testable import Shared
import Testing
@testable import WandB

// Byte vectors below were produced independently with Python's zlib.crc32, hashlib.md5 and the
// protobuf classes of wandb 0.29.0 (`wandb.proto.wandb_internal_pb2`), not with this package.

/// Bytes from a hex string (spaces ignored).
private func hex(_ s: String) -> [UInt8] {
    let digits = Array(s.filter { !$0.isWhitespace })
    return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
}

/// Removes a directory made by `tempDirectory` (or the directory holding a file made by `writeLog`).
private func removeTemp(_ path: String) {
    var dir = path
    while !URL(fileURLWithPath: dir).lastPathComponent.hasPrefix("tts-wandb-"), dir.count > 1 {
        dir = URL(fileURLWithPath: dir).deletingLastPathComponent().path
    }
    if dir.count > 1 { try? FileManager.default.removeItem(atPath: dir) }
}

/// A fresh empty directory under the system temporary directory.
private func tempDirectory(_ label: String) throws -> String {
    let dir = FileManager.default.temporaryDirectory.path + "/tts-wandb-\(label)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

private func fileBytes(_ path: String) throws -> [UInt8] {
    Array(try Data(contentsOf: URL(fileURLWithPath: path)))
}

/// A chunk header: crc (LE32), length (LE16), type.
private func chunkHeader(crc: UInt32, length: Int, type: UInt8) -> [UInt8] {
    [UInt8(crc & 0xFF), UInt8(crc >> 8 & 0xFF), UInt8(crc >> 16 & 0xFF), UInt8(crc >> 24),
     UInt8(length & 0xFF), UInt8(length >> 8), type]
}

/// Writes `payloads` to a new log in a new directory and returns the path.
private func writeLog(_ payloads: [[UInt8]]) throws -> String {
    let path = try tempDirectory("log") + "/run-test.wandb"
    let w = try TransactionLogWriter(path: path)
    for p in payloads { try w.append(p) }
    try w.sync()
    w.close()
    return path
}

@Suite("W&B offline: transaction log bytes")
struct WandbOfflineLogTests {
    @Test("a new log is exactly the 7-byte W&B header")
    func header() throws {
        let path = try writeLog([])
        defer { removeTemp(path) }
        #expect(try fileBytes(path) == hex("3a572642 e1be 00"))
        #expect(TransactionLogFormat.fileHeader == Array(":W&B".utf8) + [0xE1, 0xBE, 0x00])
    }

    @Test("CRC-32 is the zlib IEEE checksum and covers the type byte then the payload")
    func crc() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
        #expect(CRC32.chunk(type: 1, payload: hex("0801920100")) == 0x15DE_037D)
        #expect(CRC32.chunk(type: 2, payload: [UInt8]()) == 0x3C0C_8EA1)
        #expect(CRC32.update(CRC32.checksum(Array("1234".utf8)), Array("56789".utf8)) == 0xCBF4_3926)
    }

    @Test("the eight-bytes-at-a-time CRC-32 equals the bitwise definition at every length and alignment")
    func crcSlicing() {
        func bitwise(_ bytes: ArraySlice<UInt8>) -> UInt32 {
            var c: UInt32 = 0xFFFF_FFFF
            for b in bytes {
                c ^= UInt32(b)
                for _ in 0..<8 { c = (c & 1) != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
            }
            return ~c
        }
        var rng = UInt64(0x9E37_79B9_7F4A_7C15)
        let data: [UInt8] = (0..<300).map { _ in
            rng = rng &* 6364136223846793005 &+ 1442695040888963407
            return UInt8(truncatingIfNeeded: rng >> 56)
        }
        for start in 0..<9 {
            for length in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 200, 291 - start] {
                let slice = data[start..<(start + length)]
                #expect(CRC32.checksum(slice) == bitwise(slice), "offset \(start), length \(length)")
            }
        }
        #expect(CRC32.checksum([UInt8](repeating: 0, count: 32)) == 0x190A_55AD) // zlib.crc32(bytes(32))
    }

    @Test("a small record is one FULL chunk right after the header")
    func fullChunk() throws {
        let record = hex("0801920100")  // Record{num:1, exit{}}
        let path = try writeLog([record])
        defer { removeTemp(path) }
        #expect(try fileBytes(path) == hex("3a572642e1be00") + hex("7d03de15 0500 01") + record)
    }

    @Test("fewer than 7 bytes left in a block are zero-filled and the next record starts the next block")
    func padding() throws {
        let big = [UInt8](repeating: 0x61, count: 32750)  // ends at 7 + 7 + 32750 = 32764: 4 bytes left
        let small = (0..<10).map { UInt8($0) }
        let path = try writeLog([big, small])
        defer { removeTemp(path) }
        let bytes = try fileBytes(path)
        #expect(bytes.count == 32768 + 7 + 10)
        #expect(Array(bytes[7..<14]) == chunkHeader(crc: 0x5884_5B27, length: 32750, type: 1))
        #expect(Array(bytes[32764..<32768]) == [0, 0, 0, 0])
        #expect(Array(bytes[32768..<32775]) == chunkHeader(crc: 0x0CEF_D11C, length: 10, type: 1))
        #expect(Array(bytes[32775...]) == small)
        // Every short remainder (1…6 bytes) is padding, whatever the block.
        for left in 1...6 {
            let framed = TransactionLogFormat.frame(small, at: 3 * 32768 - left)
            #expect(Array(framed.prefix(left)) == [UInt8](repeating: 0, count: left))
            #expect(Array(framed[left..<(left + 7)]) == chunkHeader(crc: 0x0CEF_D11C, length: 10, type: 1))
        }
        #expect(try TransactionLogReader.readAll(path: path) == [big, small])
    }

    @Test("a record larger than two blocks is split FIRST, MIDDLE, LAST over three blocks")
    func threeBlocks() throws {
        let payload = (0..<(32754 + 32761 + 100)).map { UInt8($0 % 251) }
        let path = try writeLog([payload])
        defer { removeTemp(path) }
        let bytes = try fileBytes(path)
        #expect(bytes.count == 65536 + 7 + 100)
        #expect(Array(bytes[7..<14]) == chunkHeader(crc: 0x292E_E37F, length: 32754, type: 2))
        #expect(Array(bytes[14..<32768]) == Array(payload[0..<32754]))
        #expect(Array(bytes[32768..<32775]) == chunkHeader(crc: 0x5340_CA01, length: 32761, type: 3))
        #expect(Array(bytes[32775..<65536]) == Array(payload[32754..<65515]))
        #expect(Array(bytes[65536..<65543]) == chunkHeader(crc: 0x0C6E_E116, length: 100, type: 4))
        #expect(Array(bytes[65543...]) == Array(payload[65515...]))
        #expect(try TransactionLogReader.readAll(path: path) == [payload])
    }

    @Test("with exactly 7 bytes left a record starts with an empty FIRST chunk")
    func emptyFirst() throws {
        let big = [UInt8](repeating: 0x61, count: 32747)  // ends at 32761: 7 bytes left
        let small = (0..<10).map { UInt8($0) }
        let path = try writeLog([big, small])
        defer { removeTemp(path) }
        let bytes = try fileBytes(path)
        #expect(Array(bytes[7..<14]) == chunkHeader(crc: 0x2979_E39C, length: 32747, type: 1))
        #expect(Array(bytes[32761..<32768]) == chunkHeader(crc: 0x3C0C_8EA1, length: 0, type: 2))
        #expect(Array(bytes[32768..<32775]) == chunkHeader(crc: 0x7DB8_7D5E, length: 10, type: 4))
        #expect(bytes.count == 32768 + 17)
        #expect(try TransactionLogReader.readAll(path: path) == [big, small])
    }

    @Test("a record filling its block exactly stays one FULL chunk with no padding after it")
    func exactFit() throws {
        let exact = [UInt8](repeating: 7, count: 32768 - 14)
        let framed = TransactionLogFormat.frame(exact, at: 7)
        #expect(framed.count == 32768 - 7)
        #expect(framed[6] == 1)
        // The next record starts the next block without padding.
        #expect(TransactionLogFormat.frame([1], at: 32768).count == 8)
    }

    @Test("records of many sizes across block boundaries read back identically")
    func roundTrip() throws {
        var payloads: [[UInt8]] = []
        var seed: UInt32 = 12345
        for i in 0..<300 {
            seed = seed &* 1_103_515_245 &+ 12345
            let n = i % 37 == 0 ? Int(seed % 100_000) : Int(seed % 900) + 1
            payloads.append((0..<n).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ i) })
        }
        let path = try writeLog(payloads)
        defer { removeTemp(path) }
        #expect(try TransactionLogReader.readAll(path: path) == payloads)
        let scan = try TransactionLogReader.scan(path: path)
        #expect(scan.recordCount == 300)
        #expect(scan.problem == nil)
        #expect(scan.validEnd == (try fileBytes(path)).count)
    }

    @Test("a torn tail is reported with the end of the last complete record; corruption fails its CRC")
    func damage() throws {
        let a = [UInt8](repeating: 1, count: 100)
        let b = [UInt8](repeating: 2, count: 40000)
        let path = try writeLog([a, b])
        defer { removeTemp(path) }
        let full = try fileBytes(path)
        let aEnd = 7 + 7 + 100
        // Cut inside b's LAST chunk.
        try Data(full[0..<(full.count - 5)]).write(to: URL(fileURLWithPath: path))
        let scan = try TransactionLogReader.scan(path: path)
        #expect(scan.recordCount == 1)
        #expect(scan.validEnd == aEnd)
        #expect(scan.problem == .truncatedRecord(path: path, offset: aEnd))
        #expect(throws: TransactionLogError.truncatedRecord(path: path, offset: aEnd)) { try TransactionLogReader.readAll(path: path) }
        // Flip one payload byte of a.
        var bad = full
        bad[20] ^= 0xFF
        try Data(bad).write(to: URL(fileURLWithPath: path))
        #expect(throws: TransactionLogError.checksumMismatch(path: path, offset: 7)) { try TransactionLogReader.readAll(path: path) }
        // A wrong header.
        var noHeader = full
        noHeader[4] = 0
        try Data(noHeader).write(to: URL(fileURLWithPath: path))
        #expect(throws: TransactionLogError.badHeader(path: path)) { try TransactionLogReader(path: path) }
    }

    @Test("reopening at a durable size drops the torn tail and appends after it")
    func reopenTruncate() throws {
        let path = try writeLog([[1, 2, 3], [4, 5, 6]])
        defer { removeTemp(path) }
        let good = try fileBytes(path).count
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        handle.seekToEndOfFile()
        handle.write(Data(hex("deadbeef 4000 02 0102")))
        handle.closeFile()
        let w = try TransactionLogWriter.open(path: path, truncatingTo: good)
        #expect(w.size == good)
        try w.append([7, 8, 9])
        w.close()
        #expect(try TransactionLogReader.readAll(path: path) == [[1, 2, 3], [4, 5, 6], [7, 8, 9]])
        #expect(throws: TransactionLogError.invalidTruncation(path: path, requested: 3, actual: good + 10)) {
            try TransactionLogWriter.open(path: path, truncatingTo: 3)
        }
        #expect(throws: TransactionLogError.alreadyExists(path: path)) { try TransactionLogWriter(path: path) }
        #expect(throws: TransactionLogError.unusable(path: path, reason: "closed")) { try w.append([1]) }
    }
}

@Suite("W&B offline: protobuf encoding")
struct WandbOfflineProtobufTests {
    private let start = Date(timeIntervalSince1970: 1_767_225_600.25)

    @Test("varints, tags and scalar fields encode as proto3 does")
    func scalars() {
        var w = ProtobufWriter()
        w.writeVarint(1)
        w.writeVarint(300)
        w.writeVarint(UInt64.max)
        #expect(w.bytes == hex("01 ac02 ffffffffffffffffff01"))
        var r = ProtobufWriter()
        r.int64(1, 1)
        #expect(r.bytes == hex("0801"))  // num=1
        var t = ProtobufWriter()
        t.message(17) { _ in }
        #expect(t.bytes == hex("8a01 00"))  // run is field 17: tag 8a 01
        var d = ProtobufWriter()
        d.double(1, 1.5)
        d.int32(2, -1)
        d.bool(3, true)
        d.int64(4, 0)
        d.string(5, "")
        d.repeatedString(6, ["", "x"])
        #expect(d.bytes == hex("09 000000000000f83f 10 ffffffffffffffffff01 1801 3200 3201 78"))
        var ts = ProtobufWriter()
        ts.timestamp(2, Date(timeIntervalSince1970: -0.5))
        #expect(ts.bytes == hex("12 11 08ffffffffffffffffff01 1080cab5ee01"))  // seconds -1, nanos 5e8
    }

    @Test("every record kind matches the bytes of wandb's own protobuf classes")
    func recordVectors() {
        let run = WandbRunInfo(
            runId: "ab12cd34", project: "proj", entity: "ent", displayName: "Run One", group: "g", jobType: "train",
            tags: ["ko", ""], notes: "n", host: "box1",
            config: ["lr": .number(0.0001), "layers": .number(3),
                     "nested": .object(["b": .array([.bool(true), .null]), "a": .number(1)])],
            startTime: start)
        #expect(WandbRecord.run(run).encoded(num: 2) == hex(
            "08028a0188010a0861623132636433341203656e741a0470726f6a22410a0c0a066c6179657273820101330a0d0a026c72820106302e303030310a220a066e65737465648201177b2261223a312c2262223a5b747275652c6e756c6c5d7d3201673a05747261696e420752756e204f6e654a016e52026b6f52006a04626f78318a010b0880f2d6ca061080e59a77"))
        let row = WandbHistoryRow(step: 7, timestamp: 1_767_225_601.5, runtime: 1.5,
                                  values: [("loss", .number(0.5)), ("bad", .number(.nan))])
        #expect(WandbRecord.history(row).encoded(num: 3) == hex(
            "0803125b0a0c0a046c6f7373820103302e350a0b0a036261648201034e614e0a1b0a0a5f74696d657374616d7082010c313736373232353630312e350a100a085f72756e74696d65820103312e350a0b0a055f737465708201013712020807"))
        let row0 = WandbHistoryRow(step: 0, timestamp: 1_767_225_601, runtime: 0, values: [])
        #expect(WandbRecord.history(row0).encoded(num: 4) == hex(
            "0804123a0a190a0a5f74696d657374616d7082010a313736373232353630310a0e0a085f72756e74696d65820101300a0b0a055f73746570820101301200"))
        let stats = WandbStatsSample(timestamp: 1_767_225_602, runtime: 2, values: [("gpu.0.gpu", 42), ("cpu", 2.5)])
        #expect(WandbRecord.stats(stats).encoded(num: 5) == hex(
            "08053a2712060882f2d6ca061a100a096770752e302e67707582010234321a0b0a03637075820103322e35"))
        #expect(WandbRecord.files([WandbFilesItem(path: "media/audio/a.wav")]).encoded(num: 6) == hex(
            "080632150a130a116d656469612f617564696f2f612e776176"))
        #expect(WandbRecord.exit(code: 0, runtimeSeconds: 0).encoded(num: 7) == hex("0807920100"))
        #expect(WandbRecord.exit(code: -1, runtimeSeconds: 5).encoded(num: 300) == hex("08ac0292010d08ffffffffffffffffff011005"))
        #expect(WandbRecord.outputRaw(line: "hello\n", stderr: false, timestamp: Date(timeIntervalSince1970: 1_767_225_603)).encoded(num: 8)
            == hex("08086a12080112060883f2d6ca061a0668656c6c6f0a"))
        #expect(WandbRecord.header(producer: "tts-cluster 0.1.0", minConsumer: "").encoded(num: 1) == hex(
            "0801aa01150a130a117474732d636c757374657220302e312e30"))
        let artifact = WandbArtifactRecord(
            runId: "ab12cd34", project: "proj", entity: "ent", type: "model", name: "model-ab12cd34",
            metadataJSON: #"{"step":100}"#, aliases: ["latest", "best"],
            entries: [.init(path: "gpt.pth", digest: "XUFAKrxLKna5cZ2REBfFkg==", size: 5, localPath: "/tmp/x/gpt.pth")],
            clientId: String(repeating: "a", count: 128), sequenceClientId: String(repeating: "b", count: 128))
        #expect(artifact.digest == "75538e4cd5e8a78aec03fe591b070c37")
        #expect(WandbRecord.artifact(artifact).encoded(num: 9) == hex(
            "080942ed030a086162313263643334120470726f6a1a03656e7422056d6f64656c2a0e6d6f64656c2d616231326364333432203735353338653463643565386137386165633033666535393162303730633337420c7b2273746570223a3130307d5a066c61746573745a046265737462690801121777616e64622d73746f726167652d706f6c6963792d76311a150a0d73746f726167654c61796f757412042256322222350a076770742e7074681218585546414b72784c4b6e6135635a3252454266466b673d3d2005320e2f746d702f782f6770742e70746870017a8001"
            + String(repeating: "61", count: 128) + "82018001" + String(repeating: "62", count: 128) + "a2010c4d414e49464553545f4d4435"))
    }

    @Test("config values become compact JSON with sorted keys and W&B's NaN spelling")
    func configJSON() {
        #expect(WandbRecord.jsonText(.object(["b": .number(2), "a": .string("x\"y"), "c": .array([.null, .bool(false)])]))
            == #"{"a":"x\"y","b":2,"c":[null,false]}"#)
        #expect(WandbRecord.jsonText(.number(.infinity)) == "Infinity")
        #expect(WandbRecord.jsonText(.number(1e-5)) == "1e-05")
    }

    @Test("the schema-less reader decodes what the writer wrote")
    func decode() throws {
        let bytes = WandbRecord.history(WandbHistoryRow(step: 300, timestamp: 1, runtime: 2, values: [("x", .integer(-4))])).encoded(num: 42)
        let record = try ProtobufFields(bytes)
        #expect(record.varint(1) == 42)
        let history = try #require(try record.message(2))
        #expect(try history.message(2)?.varint(1) == 300)
        let items = try history.all(1).map { try ProtobufFields($0) }
        #expect(items.map { $0.string(1) } == ["x", "_timestamp", "_runtime", "_step"])
        #expect(items.map { $0.string(16) } == ["-4", "1", "2", "300"])
        #expect(throws: ProtobufDecodingError.truncated(offset: 2)) { try ProtobufFields(hex("0a05")) }
    }

    @Test("client ids are 128 characters from [a-z0-9]")
    func clientIds() {
        let id = WandbArtifactRecord.newClientId()
        #expect(id.count == 128)
        #expect(id.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) })
        #expect(id != WandbArtifactRecord.newClientId())
    }
}

@Suite("W&B offline: MD5")
struct WandbOfflineMD5Tests {
    @Test("RFC 1321 test suite")
    func rfc1321() {
        let vectors: [(String, String)] = [
            ("", "d41d8cd98f00b204e9800998ecf8427e"),
            ("a", "0cc175b9c0f1b6a831c399e269772661"),
            ("abc", "900150983cd24fb0d6963f7d28e17f72"),
            ("message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
            ("abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b"),
            ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789", "d174ab98d277d9f5a5611c2c9f419d9f"),
            (String(repeating: "1234567890", count: 8), "57edf4a22be3c955ac49da2e2107b67a"),
        ]
        for (input, digest) in vectors { #expect(MD5.hash(Array(input.utf8)).hexString == digest, "md5(\"\(input)\")") }
    }

    @Test("incremental updates, file hashing and base64 digests agree")
    func incrementalAndFile() throws {
        let data = (0..<100_000).map { UInt8($0 % 256) }
        var m = MD5()
        m.update(data[0..<1])
        m.update(data[1..<63])
        m.update(data[63..<64])
        m.update(data[64..<5000])
        m.update(data[5000...])
        #expect(m.finalize().hexString == "7007d9ba10b9a5e64a9f92df87e94a06")
        #expect(MD5.hash(data).hexString == "7007d9ba10b9a5e64a9f92df87e94a06")
        let path = try tempDirectory("md5") + "/blob"
        defer { removeTemp(path) }
        try Data(data).write(to: URL(fileURLWithPath: path))
        let (digest, size) = try MD5.hashFile(path: path)
        #expect(digest.hexString == "7007d9ba10b9a5e64a9f92df87e94a06")
        #expect(size == 100_000)
        #expect(Data(MD5.hash(Array("hello".utf8))).base64EncodedString() == "XUFAKrxLKna5cZ2REBfFkg==")
        #expect(throws: OfflineRunError.self) { try MD5.hashFile(path: path + ".missing") }
    }

    @Test("the file hasher (off the cooperative pool) gives MD5.hashFile's digests and sizes, in order, and its errors")
    func fileHasher() async throws {
        let dir = try tempDirectory("md5-hasher")
        defer { removeTemp(dir) }
        let data = (0..<100_000).map { UInt8($0 % 256) }
        try Data(data).write(to: URL(fileURLWithPath: dir + "/a"))
        try Data("hello".utf8).write(to: URL(fileURLWithPath: dir + "/b"))
        let hashed = try await FileHasher.md5(paths: [dir + "/a", dir + "/b"])
        #expect(hashed.map(\.digest.hexString) == ["7007d9ba10b9a5e64a9f92df87e94a06", MD5.hash(Array("hello".utf8)).hexString])
        #expect(hashed.map(\.size) == [100_000, 5])
        await #expect(throws: OfflineRunError.self) { try await FileHasher.md5(paths: [dir + "/missing"]) }
    }

    @Test("the artifact digest sorts entries by path")
    func manifestDigest() {
        let entries: [WandbArtifactRecord.Entry] = [
            .init(path: "z.pth", digest: "BBBB", size: 1, localPath: "/z"),
            .init(path: "a/b.bin", digest: "AAAA", size: 1, localPath: "/a"),
        ]
        let a = WandbArtifactRecord(runId: "r", project: "p", entity: nil, type: "model", name: "m", metadataJSON: "{}",
                                    aliases: [], entries: entries)
        #expect(a.digest == "26ec81cb67e888e64aceaf9f70d5eb0b")
    }
}

/// The kind (oneof field number) and num of each record in a `.wandb` file.
private func recordKinds(_ path: String) throws -> [(num: Int64, kind: Int, body: ProtobufFields)] {
    try TransactionLogReader.readAll(path: path).map { payload in
        let r = try ProtobufFields(payload)
        let kind = r.fields.first { $0.number != 1 }!.number
        return (Int64(r.varint(1) ?? 0), kind, try r.message(kind)!)
    }
}

@Suite("W&B offline: run writer")
struct WandbOfflineRunWriterTests {
    private func runInfo(_ id: String = WandbRunInfo.newRunId()) -> WandbRunInfo {
        WandbRunInfo(runId: id, project: "tts-ko", entity: "lab", displayName: "gpt ko", tags: ["ko"], host: "box1",
                     config: ["lr": .number(2e-5)], startTime: Date(timeIntervalSince1970: 1_767_225_600))
    }

    private func row(_ step: Int64) -> WandbHistoryRow {
        WandbHistoryRow(step: step, timestamp: 1_767_225_600 + Double(step), runtime: Double(step),
                        values: [("train/loss", .number(1.0 / Double(step + 1)))])
    }

    @Test("the run directory is offline-run-<local start time>-<runid> with files/ and run-<runid>.wandb")
    func layout() throws {
        let root = try tempDirectory("layout")
        defer { removeTemp(root) }
        let info = runInfo("abcd1234")
        let w = try OfflineRunWriter(root: root, run: info)
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone.current
        f.dateFormat = "yyyyMMdd_HHmmss"
        let expected = root + "/wandb/offline-run-\(f.string(from: info.startTime))-abcd1234"
        #expect(w.directory == expected)
        #expect(OfflineRunWriter.directory(root: root + "/", run: info) == expected)
        #expect(w.logPath == expected + "/run-abcd1234.wandb")
        var isDir: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: expected + "/files", isDirectory: &isDir) && isDir.boolValue)
        #expect(throws: TransactionLogError.alreadyExists(path: w.logPath)) { try OfflineRunWriter(root: root, run: info) }
    }

    @Test("records are numbered from 1: header, run, then summary and history per step, exit last")
    func sequence() throws {
        let root = try tempDirectory("seq")
        defer { removeTemp(root) }
        let w = try OfflineRunWriter(root: root, run: runInfo())
        for s in 0..<3 { try w.log(row(Int64(s))) }
        try w.summary(["val/best_text_loss": .number(0.25)])
        try w.stats(WandbStatsSample(timestamp: 1_767_225_610, runtime: 10, values: [("gpu.0.gpu", 97)]))
        try w.output(lines: ["epoch 1 done"])
        let end = try w.finish(exitCode: 0, runtime: 12.4)
        #expect(end.records == 12)
        #expect(end.size == w.size)
        let records = try recordKinds(w.logPath)
        #expect(records.map(\.num) == Array(1...12))
        #expect(records.map(\.kind) == [21, 17, 3, 2, 3, 2, 3, 2, 3, 7, 13, 18])
        // The summary before each history record carries the same items.
        for i in [2, 4, 6] {
            #expect(records[i].body.all(1) == records[i + 1].body.all(1))
        }
        #expect(try records[8].body.message(1)?.string(1) == "val/best_text_loss")
        #expect(records[10].body.string(3) == "epoch 1 done\n")
        #expect(records[11].body.varint(2) == 12)  // runtime seconds; exit code 0 is not written
        #expect(throws: OfflineRunError.finished(path: w.logPath)) { try w.log(row(3)) }
    }

    @Test("history steps must increase")
    func stepOrder() throws {
        let root = try tempDirectory("order")
        defer { removeTemp(root) }
        let w = try OfflineRunWriter(root: root, run: runInfo())
        try w.log(row(5))
        #expect(throws: OfflineRunError.stepOutOfOrder(path: w.logPath, step: 5, lastStep: 5)) { try w.log(row(5)) }
        #expect(throws: OfflineRunError.stepOutOfOrder(path: w.logPath, step: 4, lastStep: 5)) { try w.log(row(4)) }
        try w.log(row(6))
        #expect(w.lastStep == 6)
    }

    @Test("media is copied under files/ and announced by a FilesRecord")
    func media() throws {
        let tmp = try tempDirectory("media")
        defer { removeTemp(tmp) }
        let source = tmp + "/clip.wav"
        try Data([1, 2, 3, 4]).write(to: URL(fileURLWithPath: source))
        let w = try OfflineRunWriter(root: tmp, run: runInfo())
        try w.addMedia(WandbRunFile(runPath: "media/audio/sample_10_0123.wav", localPath: source))
        #expect(try fileBytes(w.filesDirectory + "/media/audio/sample_10_0123.wav") == [1, 2, 3, 4])
        let last = try #require(try recordKinds(w.logPath).last)
        #expect(last.kind == 6)
        #expect(try last.body.message(1)?.string(1) == "media/audio/sample_10_0123.wav")
        #expect(throws: OfflineRunError.self) { try w.addMedia(WandbRunFile(runPath: "../escape.wav", localPath: source)) }
        #expect(throws: OfflineRunError.self) { try w.addMedia(WandbRunFile(runPath: "/abs.wav", localPath: source)) }
        #expect(throws: OfflineRunError.self) { try w.addMedia(WandbRunFile(runPath: "x.wav", localPath: tmp + "/none")) }
    }

    @Test("a checkpoint artifact is staged, hashed and recorded with latest and best aliases")
    func artifact() throws {
        let tmp = try tempDirectory("artifact")
        defer { removeTemp(tmp) }
        let ckpt = tmp + "/gpt.pth"
        try Data("hello".utf8).write(to: URL(fileURLWithPath: ckpt))
        let info = runInfo()
        let w = try OfflineRunWriter(root: tmp, run: info)
        try w.log(row(0))
        let rec = try w.artifact(WandbArtifactUpload(
            name: "model-\(info.runId)", type: "model", aliases: ["best"], metadata: ["step": .number(0)],
            files: [WandbRunFile(runPath: "gpt.pth", localPath: ckpt)], historyStep: 0))
        #expect(rec.aliases == ["latest", "best"])
        #expect(rec.entity == "lab")
        #expect(rec.entries.count == 1)
        #expect(rec.entries[0].digest == "XUFAKrxLKna5cZ2REBfFkg==")
        #expect(rec.entries[0].size == 5)
        #expect(rec.entries[0].localPath.hasPrefix(w.directory + "/artifacts/"))
        #expect(try fileBytes(rec.entries[0].localPath) == Array("hello".utf8))
        #expect(rec.digest == "75538e4cd5e8a78aec03fe591b070c37")
        let last = try #require(try recordKinds(w.logPath).last)
        #expect(last.kind == 8)
        #expect(last.body.string(4) == "model")
        #expect(last.body.string(6) == rec.digest)
        #expect(last.body.varint(14) == 1)  // finalize
        #expect(last.body.string(8) == #"{"step":0}"#)
    }

    @Test("reopening at a durable point after a crash keeps record numbers and steps continuous")
    func reopen() throws {
        let root = try tempDirectory("reopen")
        defer { removeTemp(root) }
        let w = try OfflineRunWriter(root: root, run: runInfo())
        for s in 0..<3 { try w.log(row(Int64(s))) }
        let point = try w.sync()
        #expect(point == OfflineRunWriter.DurablePoint(records: 8, size: w.size))
        // Work after the durable point that the coordinator will replay, then a torn write.
        try w.log(row(3))
        try w.log(row(4))
        w.close()
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: w.logPath))
        handle.seekToEndOfFile()
        handle.write(Data([0x11, 0x22, 0x33, 0x44, 0xFF, 0x00, 0x01, 0x08]))
        handle.closeFile()

        let r = try OfflineRunWriter.reopen(directory: w.directory, validSize: point.size)
        #expect(r.recordCount == 8)
        #expect(r.lastStep == 2)
        #expect(r.runId == w.runId && r.project == "tts-ko" && r.entity == "lab")
        #expect(r.size == point.size)
        try r.log(row(3))
        try r.finish(exitCode: 0, runtime: 3)
        let records = try recordKinds(w.logPath)
        #expect(records.map(\.num) == Array(1...11))
        let steps = try records.filter { $0.kind == 2 }.map { try $0.body.message(2)?.varint(1) ?? 0 }
        #expect(steps == [0, 1, 2, 3])
        #expect(records.last?.kind == 18)
    }

    @Test("reopening without a durable point resumes after the last complete record; a mid-record size is refused")
    func reopenScan() throws {
        let root = try tempDirectory("reopen2")
        defer { removeTemp(root) }
        let w = try OfflineRunWriter(root: root, run: runInfo())
        try w.log(row(0))
        let end = w.size
        try w.log(row(1))
        w.close()
        // Cut the last record (history of step 1) in half.
        let bytes = try fileBytes(w.logPath)
        try Data(bytes[0..<(bytes.count - 10)]).write(to: URL(fileURLWithPath: w.logPath))
        #expect(throws: OfflineRunError.self) { try OfflineRunWriter.reopen(directory: w.directory, validSize: end + 3) }
        let r = try OfflineRunWriter.reopen(directory: w.directory)
        #expect(r.recordCount == 5)  // header, run, summary 0, history 0, summary 1
        #expect(r.lastStep == 0)
        try r.log(row(1))
        #expect(try recordKinds(w.logPath).map(\.num) == Array(1...7))
        #expect(throws: OfflineRunError.self) { try OfflineRunWriter.reopen(directory: w.directory + "/files") }
    }
}
