import Foundation
import Testing
@testable import Shared
@testable import Worker

/// Inputs that crashed a fuzz target (`scripts/fuzz.sh`), fed again byte for byte. Each is also
/// under `Fuzz/Corpus/<Target>/regressions/`, so every fuzzing run replays it too.
@Suite("Fuzz regressions: readers")
struct FuzzRegressionTests {
    static func hex(_ lines: [String]) -> [UInt8] {
        let s = Array(lines.joined().utf8)
        return stride(from: 0, to: s.count, by: 2).map { UInt8(String(decoding: s[$0..<$0 + 2], as: UTF8.self), radix: 16)! }
    }

    /// FuzzNpy, regressions/shape-overflow-crash-4770c554: shape `(1, 2, 4611686018427387904)`
    /// of `<f4`. The element count wrapped and `count × 4` trapped (arithmetic overflow).
    @Test("a .npy shape whose element count overflows is refused, not trapped on")
    func npyShapeOverflow() {
        let bytes = Self.hex([
            "934e554d5059010076007b276465736372273a20273c6634272c2027666f73bc652c20277368727472616e5f6f726465",
            "d2273a20343631313638360531383432373338376146303a73652c20277368617065273a2028312c20322c202c203436",
            "31313638363031383432373338373930342020297d203220202020202020202020202020202020202020202020202020",
            "2020202020272020202020203c69",
        ])
        #expect(bytes.count == 158)
        #expect(throws: NpyError.self) { try NpyArray.parse(bytes) }
    }

    @Test("shapes whose element or byte count overflows are refused; an empty array with a huge dimension too",
          arguments: ["(4611686018427387904, 4)", "(2305843009213693952,)", "(4294967296, 4294967296)", "(4611686018427387904, 8, 0)"])
    func npyOverflowingShapes(shape: String) {
        let bytes = DataLoaderTests.npy([], descr: "<i8", shape: shape)
        #expect(throws: NpyError.self) { try NpyArray.parse(bytes) }
    }

    /// FuzzPairManifest, regressions/negative-length-f7fbb323 (a negative `target_text_len` was
    /// taken as the length) and regressions/huge-length.jsonl (`Int(1e300)` trapped).
    @Test("a pair manifest length that is negative, fractional or huge is refused with its line",
          arguments: ["-12", "1e300", "2.5"])
    func pairManifestLengths(length: String) throws {
        let line = #"{"id": "ko_0001", "target_text_ids_path": "features/ko_0001_text.npy", "target_codes_path": "c.npy", "target_text_len":"# + length + "}\n"
        let spec = ManifestSpec(path: "/d/pairs.jsonl", language: "ko")
        #expect(throws: ManifestError(path: "/d/pairs.jsonl", line: 1, message: "has \"target_text_len\": \(Double(length)!), which is not a whole number of 0 or more")) {
            try PairManifest.parse(Array(line.utf8), spec: spec)
        }
        let fine = try PairManifest.parse(Array(line.replacingOccurrences(of: length, with: "12").utf8), spec: spec)
        #expect(fine.map(\.textLength) == [12])
        #expect(fine.map(\.codesPath) == ["/d/c.npy"])
    }

    @Test("the regression inputs kept for the fuzzers are refused cleanly by the readers")
    func corpusRegressions() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus")
        let npy = root.appendingPathComponent("FuzzNpy/regressions/shape-overflow-crash-4770c554").path
        #expect(throws: NpyError.self) { try NpyArray.read(contentsOf: npy) }
        for name in ["negative-length-f7fbb323", "huge-length.jsonl"] {
            let path = root.appendingPathComponent("FuzzPairManifest/regressions/\(name)").path
            #expect(throws: ManifestError.self) { try PairManifest.read(ManifestSpec(path: path)) }
        }
    }
}
