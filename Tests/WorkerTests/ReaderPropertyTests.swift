import Foundation
@testable import Shared
import Testing
import TestSupport
@testable import Worker

/// Properties of the worker's file readers over seeded random contents: `.npy` arrays, TensorBoard
/// event files and pair/test manifests read back exactly what was written, and every truncation
/// is either a clean refusal naming the problem or (for an event file being written) a clean
/// torn tail that the next poll completes. A failure names its seed.
@Suite("Reader properties")
struct ReaderPropertyTests {
    static let seeds: [UInt64] = Array(1...25)

    // MARK: .npy

    /// `.npy` bytes as numpy lays them out, in any of the spellings the reader accepts.
    static func npy(descr: String, shape: [Int], data: [UInt8], version: UInt8, quote: String) -> [UInt8] {
        let dims = shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? "," : "")
        let q = quote
        var header = "{\(q)descr\(q): \(q)\(descr)\(q), \(q)fortran_order\(q): False, \(q)shape\(q): (\(dims)), }"
        let prefix = version == 1 ? 10 : 12
        while (prefix + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let n = header.utf8.count
        var out: [UInt8] = [0x93, 0x4E, 0x55, 0x4D, 0x50, 0x59, version, 0]
        out += version == 1 ? [UInt8(n & 0xFF), UInt8(n >> 8)] : [UInt8(n & 0xFF), UInt8(n >> 8 & 0xFF), 0, 0]
        return out + Array(header.utf8) + data
    }

    @Test("random int32/int64/float32 arrays of any shape read back equal; every truncation is refused", arguments: seeds)
    func npyRoundTrip(seed: UInt64) throws {
        var g = PropertyRandom(seed: seed)
        for _ in 0..<20 {
            let dtype = [NpyArray.DType.int32, .int64, .float32].randomElement(using: &g)!
            let shape = (0..<Int.random(in: 0...4, using: &g)).map { _ in Int.random(in: 0...5, using: &g) }
            let count = shape.reduce(1, *)
            var data: [UInt8] = []
            var integers: [Int64] = []
            var floatBits: [UInt32] = []
            for _ in 0..<count {
                switch dtype {
                case .int32:
                    let v = Int32(truncatingIfNeeded: g.next())
                    integers.append(Int64(v))
                    withUnsafeBytes(of: v.littleEndian) { data += $0 }
                case .int64:
                    let v = Int64(bitPattern: g.next())
                    integers.append(v)
                    withUnsafeBytes(of: v.littleEndian) { data += $0 }
                case .float32:
                    let bits = g.chance(0.2) ? [Float.nan, .infinity, -0.0].randomElement(using: &g)!.bitPattern : UInt32(truncatingIfNeeded: g.next())
                    floatBits.append(bits)
                    withUnsafeBytes(of: bits.littleEndian) { data += $0 }
                }
            }
            let descr = g.chance(0.3) ? dtype.rawValue.replacingOccurrences(of: "<", with: "=") : dtype.rawValue
            let bytes = Self.npy(descr: descr, shape: shape, data: data, version: UInt8.random(in: 1...3, using: &g),
                                 quote: g.chance(0.5) ? "'" : "\"")
            let array = try NpyArray.parse(bytes)
            #expect(array.dtype == dtype && array.shape == shape && array.count == count, "seed \(seed): \(shape) \(dtype)")
            #expect(array.integers == integers, "seed \(seed): integers of \(shape) \(dtype)")
            #expect(array.floats.map(\.bitPattern) == floatBits, "seed \(seed): floats of \(shape) \(dtype)")
            for k in 0..<bytes.count {
                #expect(throws: NpyError.self, "seed \(seed): \(shape) \(dtype) cut to \(k) of \(bytes.count) bytes") {
                    try NpyArray.parse(Array(bytes.prefix(k)))
                }
            }
        }
    }

    // MARK: TensorBoard

    struct Written: Equatable {
        let tag: String, step: Int64, value: UInt64, wallTime: UInt64
        init(_ s: TensorBoardScalar) {
            tag = s.tag
            step = s.step
            value = s.value.bitPattern
            wallTime = s.wallTime.bitPattern
        }
    }

    /// Random events of random scalars (as `simple_value` floats or `double_val` tensors), framed.
    static func eventFile(_ g: inout PropertyRandom) -> (records: [[UInt8]], scalars: [TensorBoardScalar]) {
        var records: [[UInt8]] = []
        var scalars: [TensorBoardScalar] = []
        for _ in 0..<Int.random(in: 1...12, using: &g) {
            let step = Int64(bitPattern: g.next() >> UInt64.random(in: 0...63, using: &g))
            let wallTime = g.chance(0.1) ? Double.nan : Double(bitPattern: g.next())
            var summary = ProtoBytes()
            for _ in 0..<Int.random(in: 0...3, using: &g) {
                let tag = g.string()
                var value = ProtoBytes()
                value.bytes(1, Array(tag.utf8))
                let v: Double
                if g.chance(0.5) {
                    let f = Float(bitPattern: UInt32(truncatingIfNeeded: g.next()))
                    value.fixed32(2, f.bitPattern)
                    v = Double(f)
                } else {
                    v = g.chance(0.2) ? -.infinity : Double(bitPattern: g.next())
                    var tensor = ProtoBytes()
                    tensor.varint(1, 2) // DT_DOUBLE
                    tensor.bytes(6, le64(v.bitPattern))
                    value.bytes(8, tensor.out)
                }
                summary.bytes(1, value.out)
                scalars.append(TensorBoardScalar(tag: tag, step: step, value: v, wallTime: wallTime))
            }
            var e = ProtoBytes()
            e.fixed64(1, wallTime.bitPattern)
            e.varint(2, UInt64(bitPattern: step))
            if !summary.out.isEmpty { e.bytes(5, summary.out) }
            records.append(TFRecordReader.frame(e.out))
        }
        return (records, scalars)
    }

    @Test("random scalar events written as TFRecords read back exactly, bit for bit", arguments: seeds)
    func tensorBoardRoundTrip(seed: UInt64) throws {
        var g = PropertyRandom(seed: seed)
        let dir = TrainerFixture.temporaryDirectory("tb-prop")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (records, scalars) = Self.eventFile(&g)
        try Data(records.joined()).write(to: URL(fileURLWithPath: dir + "/events.out.tfevents.1.prop"))
        var reader = TensorBoardScalarReader(directory: dir)
        let poll = reader.poll()
        #expect(poll.warnings.isEmpty, "seed \(seed): \(poll.warnings)")
        #expect(poll.scalars.map(Written.init) == scalars.map(Written.init), "seed \(seed)")
        #expect(reader.poll().scalars.isEmpty, "seed \(seed): a second poll found scalars again")
    }

    @Test("any truncation of an event file is a clean torn tail: the complete records, no warning, the rest on the next poll",
          arguments: seeds)
    func tensorBoardTornTail(seed: UInt64) throws {
        var g = PropertyRandom(seed: seed)
        let dir = TrainerFixture.temporaryDirectory("tb-torn")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/events.out.tfevents.1.torn"
        let (records, _) = Self.eventFile(&g)
        let file = Array(records.joined())
        var ends: [Int] = []
        for r in records { ends.append((ends.last ?? 0) + r.count) }
        var cuts = Set((0..<30).map { _ in Int.random(in: 0...file.count, using: &g) })
        for e in ends { cuts.formUnion([e - 1, e, e + 1].filter { $0 >= 0 && $0 <= file.count }) }
        for k in cuts.sorted() {
            try Data(file.prefix(k)).write(to: URL(fileURLWithPath: path))
            var reader = TFRecordReader(path: path, chunkSize: Int.random(in: 64...300, using: &g))
            let first = try reader.poll()
            let complete = ends.filter { $0 <= k }.count
            let boundary = complete == 0 ? 0 : ends[complete - 1]
            #expect(first.warnings.isEmpty, "seed \(seed), cut at \(k): \(first.warnings)")
            #expect(first.records.count == complete && reader.offset == boundary && first.pendingBytes == k - boundary,
                    "seed \(seed), cut at \(k): \(first.records.count) records, offset \(reader.offset), pending \(first.pendingBytes)")
            // The writer finishes the file: the next poll reads the rest, once.
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
            try handle.seekToEnd()
            try handle.write(contentsOf: Data(file.dropFirst(k)))
            try handle.close()
            let second = try reader.poll()
            #expect(second.warnings.isEmpty && second.pendingBytes == 0, "seed \(seed), cut at \(k): \(second.warnings)")
            #expect((first.records + second.records).map(\.data) == records.map { Array($0.dropFirst(12).dropLast(4)) },
                    "seed \(seed), cut at \(k): the two polls did not read every record once")
        }
    }

    // MARK: Manifests

    /// `s` as a JSON string literal.
    static func json(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    @Test("random pair and test manifests read back their records; every truncation is the complete lines or a refusal of the cut line",
          arguments: seeds)
    func manifests(seed: UInt64) throws {
        var g = PropertyRandom(seed: seed)
        let spec = ManifestSpec(path: "/d/m/pairs.jsonl", language: "ko")
        var lines: [String] = []
        var expected: [TrainingPair] = []
        for i in 0..<Int.random(in: 1...8, using: &g) {
            let id = "u\(i)_" + g.string(maxLength: 6)
            let text = g.string()
            let name = "f\(g.next() % 1000)"
            let absolute = g.chance(0.3)
            let textIds = absolute ? "/abs/\(name)_t.npy" : "features/\(name)_t.npy"
            let codes = absolute ? "/abs/\(name)_c.npy" : "./features/sub/../\(name)_c.npy"
            let textLength = g.chance(0.5) ? Int.random(in: 0...500, using: &g) : nil
            var fields = ["\"id\": \(Self.json(id))", "\"target_text\": \(Self.json(text))",
                          "\"target_text_ids_path\": \(Self.json(textIds))", "\"target_codes_path\": \(Self.json(codes))",
                          "\"target_audio_path\": \(Self.json("wavs/\(name).wav"))"]
            if let textLength { fields.append("\"target_text_len\": \(textLength)") }
            lines.append("{" + fields.shuffled(using: &g).joined(separator: ", ") + "}")
            expected.append(TrainingPair(
                id: id, text: text, textIdsPath: absolute ? textIds : "/d/m/\(textIds)",
                codesPath: absolute ? codes : "/d/m/features/\(name)_c.npy", textLength: textLength, codeLength: nil, language: "ko"))
        }
        let file = Array((lines.joined(separator: "\n") + "\n").utf8)
        #expect(try PairManifest.parse(file, spec: spec) == expected, "seed \(seed)")
        let utterances = try EvalManifest.parse(file, spec: spec)
        #expect(utterances.map(\.id) == expected.map(\.id) && utterances.map(\.text) == expected.map(\.text), "seed \(seed)")
        #expect(utterances.allSatisfy { $0.referenceAudio?.hasPrefix("/d/m/wavs/") == true }, "seed \(seed)")

        // Line i spans [starts[i], starts[i] + length); a cut inside it leaves invalid JSON there.
        var starts: [Int] = []
        var offset = 0
        for l in lines {
            starts.append(offset)
            offset += l.utf8.count + 1
        }
        for k in 0..<file.count {
            let prefix = Array(file.prefix(k))
            let i = starts.lastIndex { $0 <= k }!
            let length = lines[i].utf8.count
            let completeLines = k == starts[i] ? i : (k >= starts[i] + length ? i + 1 : nil)
            do {
                let pairs = try PairManifest.parse(prefix, spec: spec)
                #expect(completeLines.map { pairs == Array(expected.prefix($0)) } == true, "seed \(seed), cut at \(k): accepted \(pairs.count) pairs")
            } catch {
                if let n = completeLines {
                    #expect(n == 0 && error.line == nil, "seed \(seed), cut at \(k): \(error)")
                } else {
                    #expect(error.line == i + 1 && error.path == spec.path, "seed \(seed), cut at \(k) in line \(i + 1): \(error)")
                }
            }
        }
    }
}
