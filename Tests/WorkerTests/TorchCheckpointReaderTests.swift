import Foundation
import Testing
import TestSupport
@testable import Worker

/// Real `torch.save` checkpoints, written by Tests/Fixtures/torch/make_checkpoints.py with Debian's
/// python3-torch. When torch is not importable, Tests/Fixtures/torch/torch_env.sh installs it; if
/// that fails the tests fail with its reason, never skip.
enum TorchCheckpointFixture {
    /// What the generator says the reader must report for a file (from the objects it saved).
    struct Expected: Decodable, Equatable {
        var step: Int64?
        var epoch: Int64?
        var keys: [String]
        var optimizer: Bool
        var scheduler: Bool
        var size: Int64
    }

    struct Files {
        var directory: String
        var expected: [String: Expected]
        func path(_ name: String) -> String { directory + "/" + name }
    }

    static let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/torch")

    nonisolated(unsafe) static var cached: Files? // set once, from the serialized suite only

    /// The checkpoints, generated once per test run.
    static func files() throws -> Files {
        if let f = cached { return f }
        let f = try generate(sparse: false)
        cached = f
        return f
    }

    /// Runs the generator into a new directory (`sparse` adds the 4.5 GiB sparse ZIP64 file).
    static func generate(sparse: Bool) throws -> Files {
        let python = try torchPython()
        let directory = TrainerFixture.temporaryDirectory("torch-ckpt")
        let r = try TrainerFixture.run(python, [here.appendingPathComponent("make_checkpoints.py").path,
                                                "--out-dir", directory] + (sparse ? ["--sparse"] : []), timeout: 300)
        try #require(r.status == 0, "Tests/Fixtures/torch/make_checkpoints.py failed (\(r.status)): \(r.stderr.suffix(3_000))")
        let json = try Data(contentsOf: URL(fileURLWithPath: directory + "/expected.json"))
        return Files(directory: directory, expected: try JSONDecoder().decode([String: Expected].self, from: json))
    }

    /// Debian's python3 with torch importable, installing it with torch_env.sh when it is not.
    static func torchPython() throws -> String {
        let python = "/usr/bin/python3"
        var probe = try TrainerFixture.run(python, ["-c", "import torch"])
        if probe.status != 0 {
            let env = try TrainerFixture.run("/bin/bash", [here.appendingPathComponent("torch_env.sh").path], timeout: 1_500)
            try #require(env.status == 0, "torch is not importable by \(python) (\(probe.stderr.suffix(500))) and Tests/Fixtures/torch/torch_env.sh failed (\(env.status)): \(env.stderr.suffix(3_000))")
            probe = try TrainerFixture.run(python, ["-c", "import torch"])
        }
        try #require(probe.status == 0, "\(python) cannot import torch even after Tests/Fixtures/torch/torch_env.sh: \(probe.stderr.suffix(2_000))")
        return python
    }
}

@Suite("Torch checkpoint reader", .serialized, .timeLimit(.minutes(30)))
struct TorchCheckpointReaderTests {
    typealias Fixture = TorchCheckpointFixture

    static func bytes(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    static func write(_ bytes: [UInt8], _ path: String) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }

    static func hex(_ text: String) -> [UInt8] {
        var out: [UInt8] = []
        var i = text.startIndex
        while i < text.endIndex {
            let j = text.index(i, offsetBy: 2)
            out.append(UInt8(text[i..<j], radix: 16)!)
            i = j
        }
        return out
    }

    /// The error `inspect` throws for `path`, or nil when it reads the file.
    static func failure(_ path: String) -> TorchCheckpointError? {
        do { _ = try TorchCheckpointReader.inspect(path: path); return nil } catch { return error }
    }

    // MARK: What a checkpoint says

    @Test("a light checkpoint's step, epoch and keys are read exactly as the trainer saved them")
    func light() throws {
        let f = try Fixture.files()
        let info = try TorchCheckpointReader.inspect(path: f.path("light.pth"))
        #expect(info.step == 1300)
        #expect(info.epoch == 3)
        #expect(info.keys == ["model", "epoch", "step", "recent_checkpoints", "manifests"])
        #expect(!info.hasOptimizerState && !info.hasSchedulerState)
        #expect(info.size == Int64(try Self.bytes(f.path("light.pth")).count))
        #expect(TorchCheckpointReader.isComplete(path: f.path("light.pth")))
    }

    @Test("a full checkpoint reports its AdamW optimizer state and LambdaLR scheduler state")
    func full() throws {
        let f = try Fixture.files()
        let info = try TorchCheckpointReader.inspect(path: f.path("full.pth"))
        #expect(info.step == 2600 && info.epoch == 7)
        #expect(info.hasOptimizerState && info.hasSchedulerState)
        #expect(info.keys == ["model", "optimizer", "scheduler", "optimizer_type", "scaler", "epoch", "step",
                              "recent_checkpoints", "manifests"])
    }

    @Test("every checkpoint the generator saved as a dict reads as its expected.json says")
    func matchesGenerator() throws {
        let f = try Fixture.files()
        #expect(Set(f.expected.keys) == ["light.pth", "full.pth", "bigstep.pth", "nested.pth", "nested_nostep.pth",
                                         "zip64_zipfile.pth", "zip64_full.pth"])
        for (name, want) in f.expected.sorted(by: { $0.key < $1.key }) {
            let info = try TorchCheckpointReader.inspect(path: f.path(name))
            let got = Fixture.Expected(step: info.step, epoch: info.epoch, keys: info.keys, optimizer: info.hasOptimizerState,
                                       scheduler: info.hasSchedulerState, size: info.size)
            #expect(got == want, "\(name)")
        }
    }

    @Test("a step beyond 32 bits is read as a 64-bit int; an int beyond 64 bits is not mistaken for one")
    func bigStep() throws {
        let f = try Fixture.files()
        let info = try TorchCheckpointReader.inspect(path: f.path("bigstep.pth"))
        #expect(info.step == 1_099_511_627_776) // 2**40
        #expect(info.epoch == 2_147_483_653) // 2**31 + 5
        #expect(info.keys == ["step", "epoch", "huge", "negative", "model"])
    }

    @Test("only the top-level step counts, never the optimizer's per-parameter steps or a nested dict's")
    func topLevelStepOnly() throws {
        let f = try Fixture.files()
        let nested = try TorchCheckpointReader.inspect(path: f.path("nested.pth"))
        #expect(nested.step == 7 && nested.epoch == nil)
        #expect(nested.hasOptimizerState && !nested.hasSchedulerState)
        let none = try TorchCheckpointReader.inspect(path: f.path("nested_nostep.pth"))
        #expect(none.step == nil && none.epoch == nil)
        #expect(none.hasOptimizerState)
        #expect(!none.hasSchedulerState, "a scheduler saved as None is no scheduler state")
        #expect(none.keys == ["trainer", "optimizer", "scheduler", "model"])
    }

    // MARK: ZIP64

    @Test("a ZIP64 archive written by Python's zipfile (ZIP64 local headers, an archive comment) is read")
    func zip64FromZipfile() throws {
        let f = try Fixture.files()
        let info = try TorchCheckpointReader.inspect(path: f.path("zip64_zipfile.pth"))
        #expect(info.step == 1300 && info.keys.count == 5)
    }

    @Test("a ZIP64 archive with ZIP64 end records and ZIP64 sizes and offsets in the directory (which torch.load reads) is read")
    func zip64EndRecords() throws {
        let f = try Fixture.files()
        let directory = try ZipCentralDirectory.read(path: f.path("zip64_full.pth"))
        #expect(directory.isZip64)
        #expect(directory.entries.first?.name == "archive/data.pkl", "any archive prefix is accepted")
        let info = try TorchCheckpointReader.inspect(path: f.path("zip64_full.pth"))
        #expect(info.step == 1300 && info.epoch == 3)
    }

    @Test("torch's own writer always ends with a ZIP64 end record and locator, even for a small file")
    func torchWritesZip64() throws {
        let f = try Fixture.files()
        let directory = try ZipCentralDirectory.read(path: f.path("light.pth"))
        #expect(directory.isZip64)
        #expect(directory.entries.allSatisfy { $0.method == 0 })
        #expect(directory.entries.contains { $0.name.hasSuffix("/data.pkl") })
    }

    @Test("inspecting a checkpoint over 4 GiB reads only its tail, its directory and data.pkl")
    func readsOnlyTheTail() throws {
        let f = try Fixture.generate(sparse: true)
        defer { try? FileManager.default.removeItem(atPath: f.directory) }
        let path = f.path("sparse_zip64.pth")
        let file = try PositionedFile(path: path)
        #expect(file.size > 4 << 30)
        let info = try TorchCheckpointReader.inspect(file)
        #expect(info.step == 1300 && info.size == file.size)
        #expect(file.bytesRead < 128 << 10, "read \(file.bytesRead) bytes of a \(file.size)-byte file")
        let directory = try ZipCentralDirectory.read(path: path)
        #expect(directory.entries.last.map { $0.localHeaderOffset > 0xFFFF_FFFF } == true, "entries after the hole sit past 4 GiB")
        #expect(directory.entries.contains { $0.compressedSize > 0xFFFF_FFFF })
    }

    // MARK: Incomplete and wrong files

    @Test("a checkpoint cut short anywhere is refused as truncated, and is not complete")
    func truncated() throws {
        let f = try Fixture.files()
        let whole = try Self.bytes(f.path("full.pth"))
        let n = whole.count
        var cuts = Set((0..<45).map { $0 * n / 45 })
        cuts.formUnion([1, 2, 3, 4, 30, n - 1, n - 2, n - 21, n - 22, n - 23, n - 42, n - 98, n - 120])
        let directory = try ZipCentralDirectory.read(path: f.path("full.pth"))
        cuts.formUnion([Int(directory.directoryOffset), Int(directory.directoryOffset) + 1, Int(directory.directoryOffset) - 1])
        #expect(cuts.count >= 50)
        let dir = TrainerFixture.temporaryDirectory("torch-cut")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for cut in cuts.sorted() where cut < n {
            let path = dir + "/model_step\(cut).pth"
            try Self.write(Array(whole.prefix(cut)), path)
            let error = Self.failure(path)
            #expect(error?.code == .truncated, "cut at \(cut) of \(n): \(String(describing: error))")
            #expect(!TorchCheckpointReader.isComplete(path: path), "cut at \(cut) of \(n)")
        }
        let path = dir + "/model_step\(n - 1).pth"
        let description = try #require(Self.failure(path)).description
        #expect(description.contains(path) && description.contains("still writing"))
    }

    @Test("an entry the directory says runs past the central directory makes the file truncated")
    func entryPastDirectory() throws {
        let f = try Fixture.files()
        var bytes = try Self.bytes(f.path("light.pth"))
        let directory = try ZipCentralDirectory.read(path: f.path("light.pth"))
        let last = try #require(directory.entries.max { $0.localHeaderOffset < $1.localHeaderOffset })
        // Grow the last entry's compressed size (central directory field at +20) past the directory.
        var p = Int(directory.directoryOffset)
        while p + 46 <= bytes.count {
            let nameLength = Int(bytes[p + 28]) | Int(bytes[p + 29]) << 8
            let name = String(decoding: bytes[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            if name == last.name { break }
            p += 46 + nameLength + (Int(bytes[p + 30]) | Int(bytes[p + 31]) << 8) + (Int(bytes[p + 32]) | Int(bytes[p + 33]) << 8)
        }
        let grown = UInt32(last.compressedSize + 4_096)
        for k in 0..<4 { bytes[p + 20 + k] = UInt8(truncatingIfNeeded: grown >> (8 * UInt32(k))) }
        let path = TrainerFixture.temporaryDirectory("torch-past") + "/model_step1.pth"
        try Self.write(bytes, path)
        let error = try #require(Self.failure(path))
        #expect(error.code == .truncated && error.message.contains(last.name), "\(error)")
        #expect(!TorchCheckpointReader.isComplete(path: path))
    }

    @Test("torch's legacy non-zip format is refused as notZip, naming the legacy format")
    func legacy() throws {
        let f = try Fixture.files()
        let error = try #require(Self.failure(f.path("legacy.pth")))
        #expect(error.code == .notZip && error.message.contains("legacy"), "\(error)")
        #expect(!TorchCheckpointReader.isComplete(path: f.path("legacy.pth")))
    }

    @Test("a missing file is missing; a ZIP without data.pkl is noPickle; a deflated data.pkl is compressed; a saved list is notADict")
    func wrongFiles() throws {
        let f = try Fixture.files()
        #expect(Self.failure(f.path("absent.pth"))?.code == .missing)
        #expect(Self.failure(f.directory)?.code == .missing, "a directory is not a checkpoint")
        #expect(Self.failure(f.path("nopickle.pth"))?.code == .noPickle)
        #expect(TorchCheckpointReader.isComplete(path: f.path("nopickle.pth")), "it is a complete ZIP all the same")
        #expect(Self.failure(f.path("compressed.pth"))?.code == .compressed)
        let notDict = try #require(Self.failure(f.path("list.pth")))
        #expect(notDict.code == .notADict && notDict.message.contains("list"), "\(notDict)")
        let text = f.path("notes.pth")
        try Self.write(Array("step 12\n".utf8), text)
        #expect(Self.failure(text)?.code == .notZip)
    }

    @Test("a damaged byte in data.pkl fails its CRC-32 and is refused as badPickle")
    func damagedPickle() throws {
        let f = try Fixture.files()
        let source = f.path("light.pth")
        var bytes = try Self.bytes(source)
        let file = try PositionedFile(path: source)
        let directory = try ZipCentralDirectory.read(file)
        let entry = try #require(directory.entries.first { $0.name.hasSuffix("/data.pkl") })
        let range = try directory.dataRange(of: entry, in: file)
        bytes[Int(range.lowerBound) + 10] ^= 0x20
        let path = TrainerFixture.temporaryDirectory("torch-crc") + "/model_step1.pth"
        try Self.write(bytes, path)
        let error = try #require(Self.failure(path))
        #expect(error.code == .badPickle && error.message.contains("CRC"), "\(error)")
        #expect(TorchCheckpointReader.isComplete(path: path), "the archive itself is complete")
    }

    @Test("random damage to data.pkl behind a cleared CRC gives a typed error or a result, never a crash")
    func damagedPickleProperty() throws {
        let f = try Fixture.files()
        let source = f.path("full.pth")
        var original = try Self.bytes(source)
        let file = try PositionedFile(path: source)
        let directory = try ZipCentralDirectory.read(file)
        let entry = try #require(directory.entries.first { $0.name.hasSuffix("/data.pkl") })
        let range = try directory.dataRange(of: entry, in: file)
        // Clear data.pkl's CRC in the central directory so the damaged pickle reaches the decoder.
        var p = Int(directory.directoryOffset)
        while Array(original[(p + 46)..<(p + 46 + entry.name.utf8.count)]) != Array(entry.name.utf8) {
            p += 46 + (Int(original[p + 28]) | Int(original[p + 29]) << 8) + (Int(original[p + 30]) | Int(original[p + 31]) << 8)
                + (Int(original[p + 32]) | Int(original[p + 33]) << 8)
        }
        for k in 0..<4 { original[p + 16 + k] = 0 }
        let dir = TrainerFixture.temporaryDirectory("torch-damage")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model_step1.pth"
        try Self.write(original, path)
        #expect(try TorchCheckpointReader.inspect(path: path).step == 2600)

        let seed: UInt64 = 0x70_2C4E_C4B7
        var rng = PropertyRandom(seed: seed)
        var read = 0
        var refused = 0
        for round in 0..<150 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int.random(in: Int(range.lowerBound)..<Int(range.upperBound), using: &rng)
                bytes[at] = UInt8.random(in: 0...255, using: &rng)
            }
            try Self.write(bytes, path)
            do {
                _ = try TorchCheckpointReader.inspect(path: path)
                read += 1
            } catch {
                #expect([.badPickle, .notADict].contains(error.code), "seed \(seed) round \(round): \(error)")
                refused += 1
            }
        }
        #expect(read + refused == 150 && refused > 0)
    }

    // MARK: The pickle decoder

    @Test("random damage to torch's data.pkl never traps the pickle decoder: a value or a PickleError")
    func pickleProperty() throws {
        let f = try Fixture.files()
        let file = try PositionedFile(path: f.path("full.pth"))
        let directory = try ZipCentralDirectory.read(file)
        let entry = try #require(directory.entries.first { $0.name.hasSuffix("/data.pkl") })
        let range = try directory.dataRange(of: entry, in: file)
        let original = try file.read(at: range.lowerBound, count: Int(range.upperBound - range.lowerBound))
        guard case .dict = try PickleReader.read(original) else { Issue.record("data.pkl is not a dict"); return }
        // Opcodes worth dropping in: containers, marks, memo, lengths, STOP.
        let opcodes: [UInt8] = [0x28, 0x29, 0x2E, 0x30, 0x31, 0x32, 0x5D, 0x7D, 0x61, 0x65, 0x73, 0x75, 0x74, 0x85, 0x52,
                                0x62, 0x81, 0x51, 0x68, 0x6A, 0x71, 0x72, 0x94, 0x58, 0x8D, 0x8B, 0x8A, 0x93, 0x90, 0xFF]
        let seed: UInt64 = 0xD47A_9C1E
        var rng = PropertyRandom(seed: seed)
        var values = 0
        var errors = 0
        for round in 0..<600 {
            var bytes = original
            switch Int.random(in: 0..<4, using: &rng) {
            case 0:
                for _ in 0..<Int.random(in: 1...6, using: &rng) {
                    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                }
            case 1:
                bytes[Int.random(in: 0..<bytes.count, using: &rng)] = opcodes.randomElement(using: &rng)!
            case 2:
                bytes = Array(bytes.prefix(Int.random(in: 0..<bytes.count, using: &rng)))
            default:
                let at = Int.random(in: 0...bytes.count, using: &rng)
                bytes.insert(contentsOf: (0..<Int.random(in: 1...8, using: &rng)).map { _ in
                    rng.chance(0.5) ? opcodes.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng)
                }, at: at)
            }
            do {
                _ = try PickleReader.read(bytes)
                values += 1
            } catch {
                #expect(!error.message.isEmpty && error.offset >= 0 && error.offset <= bytes.count, "seed \(seed) round \(round)")
                errors += 1
            }
        }
        #expect(values + errors == 600 && errors > 0 && values > 0, "\(values) values, \(errors) errors")
    }

    @Test("containers keep Python's sharing: a list filled after it was memoized is seen filled through the memo")
    func sharedContainers() throws {
        // pickle.dumps({"a": a, "b": a}, protocol=2) with a = [1]
        let value = try PickleReader.read(Self.hex("80027d71002858010000006171015d71024b016158010000006271036802752e"))
        #expect(value == .dict([.init(key: .string("a"), value: .list([.int(1)])), .init(key: .string("b"), value: .list([.int(1)]))]))
    }

    @Test("an OrderedDict is a dict; sets, tuples, bytes, floats, None, bools and ints past 64 bits decode (protocol 4)")
    func protocol4() throws {
        let od = try PickleReader.read(Self.hex("800263636f6c6c656374696f6e730a4f726465726564446963740a7100295271012858010000006171024b0158010000006271034b02752e"))
        #expect(od == .dict([.init(key: .string("a"), value: .int(1)), .init(key: .string("b"), value: .int(2))]))
        // pickle.dumps({"s": {1, 2}, "f": frozenset([3]), "t": (1, "x"), "b": b"\x00\xff", "big": 2**70,
        //               "neg": -2**70, "fl": 1.5, "n": None, "T": True}, protocol=4)
        let v = try PickleReader.read(Self.hex("80049569000000000000007d94288c0173948f94284b014b02908c016694284b0391948c0174944b018c01789486948c016294430200ff948c03626967948a090000000000000000408c036e6567948a090000000000000000c08c02666c94473ff80000000000008c016e944e8c01549488752e"))
        #expect(v["s"] == .object(callable: .global(module: "builtins", name: "set"), args: .tuple([.list([.int(1), .int(2)])])))
        #expect(v["f"] == .object(callable: .global(module: "builtins", name: "frozenset"), args: .tuple([.list([.int(3)])])))
        #expect(v["t"] == .tuple([.int(1), .string("x")]))
        #expect(v["b"] == .bytes([0, 255]))
        #expect(v["big"] == .bigInt("1180591620717411303424"))
        #expect(v["neg"] == .bigInt("-1180591620717411303424"))
        #expect(v["fl"] == .float(1.5) && v["n"] == PickleValue.none && v["T"] == .bool(true))
    }

    @Test("protocol 0's text opcodes decode: INT, LONG, FLOAT, unicode strings, PUT and the I01 boolean")
    func protocol0() throws {
        let text = "(dp0\nVstep\np1\nI12\nsVk\np2\n(lp3\nI1\naF2.5\naVs\np4\nasVbig\np5\nL1180591620717411303424L\nsVt\np6\nI01\ns."
        let v = try PickleReader.read(Array(text.utf8))
        #expect(v["step"] == .int(12))
        #expect(v["k"] == .list([.int(1), .float(2.5), .string("s")]))
        #expect(v["big"] == .bigInt("1180591620717411303424"))
        #expect(v["t"] == .bool(true))
        // pickle.dumps("a\\b\n한 \U0001F399", protocol=0): backslash and newline escaped, non-ASCII as \\u
        let escaped = try PickleReader.read(Array("Va\\u005cb\\u000a\\ud55c \\U0001f399\np0\n.".utf8))
        #expect(escaped == .string("a\\b\n한 🎙"))
    }

    @Test("an unknown opcode is an error naming the opcode and its offset")
    func unknownOpcode() {
        #expect(throws: PickleError(offset: 2, message: "unknown or unsupported opcode 0xff")) {
            try PickleReader.read([0x80, 0x02, 0xFF])
        }
        do { _ = try PickleReader.read([0x80, 0x02, 0x4E, 0x4E, 0x69]); Issue.record("INST was accepted") } catch {
            #expect(error.offset == 4 && error.message.contains("0x69") && error.message.contains("'i'"), "\(error)")
        }
    }

    @Test("hostile pickles are errors, not traps: self-containing lists, deep nesting, huge lengths, stack underflow, no STOP")
    func hostile() {
        func fails(_ bytes: [UInt8], _ containing: String) {
            do { let v = try PickleReader.read(bytes); Issue.record("decoded \(v)") } catch {
                #expect(error.message.contains(containing), "\(error)")
            }
        }
        fails([0x5D, 0x71, 0x00, 0x68, 0x00, 0x61, 0x2E], "contains itself") // a = []; a.append(a)
        fails(Array(repeating: 0x5D, count: 5_000) + Array(repeating: 0x61, count: 4_999) + [0x2E], "nested")
        fails([0x8D] + [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F] + [0x2E], "accepted")
        fails([0x58, 0xFF, 0xFF, 0x00, 0x00, 0x61, 0x2E], "runs past the end")
        fails([0x8B, 0xFF, 0xFF, 0xFF, 0xFF, 0x2E], "negative")
        fails([0x61, 0x2E], "underflow")
        fails([0x4E, 0x28, 0x2E], "underflow") // STOP cannot pop below the open MARK
        fails([0x4E], "without a STOP")
        fails([0x68, 0x05, 0x2E], "never stored")
        fails([0x4E, 0x4E, 0x75, 0x2E], "MARK")
        fails([0x28, 0x4E, 0x64, 0x2E], "odd")
        fails([0x63] + Array("torch\n".utf8), "no newline")
        // root = [a, b]: a is 150 lists deep, b is 150 lists deep around a shared a. No path is
        // deeper than the limit when a is converted first, but the result is 301 deep.
        let a: [UInt8] = Array(repeating: 0x5D, count: 150) + Array(repeating: 0x61, count: 149) + [0x71, 0x00, 0x61]
        let b: [UInt8] = Array(repeating: 0x5D, count: 150) + [0x68, 0x00, 0x61] + Array(repeating: 0x61, count: 149) + [0x61]
        fails([0x5D] + a + b + [0x2E], "nested")
        #expect((try? PickleReader.read(Array(repeating: 0x5D, count: 150) + Array(repeating: 0x61, count: 149) + [0x2E])) != nil,
                "nesting within the limit decodes")
    }

    @Test("64-bit and wider LONG1 integers keep their sign; redundant sign bytes are ignored")
    func integers() throws {
        func long1(_ b: [UInt8]) throws -> PickleValue { try PickleReader.read([0x8A, UInt8(b.count)] + b + [0x2E]) }
        #expect(try long1([]) == .int(0))
        #expect(try long1([0xFF]) == .int(-1))
        #expect(try long1([0x00, 0x00, 0x00, 0x00, 0x00, 0x01]) == .int(1 << 40))
        #expect(try long1([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]) == .int(.max))
        #expect(try long1([0, 0, 0, 0, 0, 0, 0, 0x80]) == .int(.min))
        #expect(try long1([0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]) == .bigInt("9223372036854775808"))
        #expect(try long1([0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]) == .int(1), "sign-extension bytes are dropped")
        #expect(try long1([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF]) == .bigInt("-9223372036854775809"))
    }
}
