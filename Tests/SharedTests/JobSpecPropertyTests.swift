import Foundation
@testable import JobSpecs
@testable import Shared
import Testing
import TestSupport

/// Seeded random mutations of valid job specs (the examples and a few hand-written ones): every
/// mutant is either a spec that keeps the parser's promises or a ``JobSpecError`` that says where
/// (a field or a line) and what; never a trap. A failure names its seed and mutant.
@Suite("Job spec properties")
struct JobSpecPropertyTests {
    static let valid: [String] = {
        let examples = JobSpecTests.examples
        let files = (try? FileManager.default.contentsOfDirectory(atPath: examples.path).filter { $0.hasSuffix(".yaml") }.sorted()) ?? []
        return files.compactMap { try? String(contentsOf: examples.appendingPathComponent($0), encoding: .utf8) } + [
            "name: ref\nproject: p\nrunner: torch\nmodel: /m/r.pt\ntrain_manifests: [/d/t.jsonl::ko]\nhyperparameters: {lr: 3e-4, schedule: cosine}\npresets:\n  cpu: {match: {}, batch_size: 8, grad_accum: 1}\n",
            "name: e\nproject: p\ncommand: [t, \"{eval_every}\", [--resume, \"{resume_checkpoint}\"]]\neval_every: 500\nbatch_size: 4\neval:\n  manifests: [/d/val.jsonl::ko]\n  synthesizer: {command: [py, \"{checkpoint}\"], timeout_seconds: 60}\n  asr: {command: [w, \"{audio}\"]}\n",
            #"{"name": "j", "project": "p", "command": "t --lr {lr}", "hyperparameters": {"lr": "1e-5"}, "sweep": {"grid": {"lr": ["1e-5", "2e-5"]}}}"#,
        ]
    }()

    /// Replacement tokens: numbers at and beyond the limits, YAML punctuation, placeholders.
    static let tokens = ["0", "-1", "1", "1e-5", "1_000", "9223372036854775807", "4611686018427387904", "1e308", "nan", ".inf",
                         "", " ", "[", "]", "{", "}", ":", ": ", "- ", "#", "'", "\"", "&a", "*a", "!!str", "..", "{lr}",
                         "{batch_size}", "torch", "command", "null", "~", "true", "\t", "\u{0}", "한국어", "\r"]

    static func mutate(_ text: String, _ g: inout PropertyRandom) -> String {
        var lines = text.components(separatedBy: "\n")
        var chars = Array(text)
        switch Int.random(in: 0..<7, using: &g) {
        case 0 where lines.count > 1: lines.remove(at: Int.random(in: 0..<lines.count, using: &g))
        case 1: lines.insert(lines.randomElement(using: &g)!, at: Int.random(in: 0...lines.count, using: &g))
        case 2 where lines.count > 1: lines.swapAt(Int.random(in: 0..<lines.count, using: &g), Int.random(in: 0..<lines.count, using: &g))
        case 3:
            // Replace one word (a run of letters, digits and ._-) with a token.
            let words = text.ranges(of: /[A-Za-z0-9._-]+/)
            guard let r = words.randomElement(using: &g) else { break }
            return text.replacingCharacters(in: r, with: tokens.randomElement(using: &g)!)
        case 4:
            chars.insert(contentsOf: tokens.randomElement(using: &g)!, at: Int.random(in: 0...chars.count, using: &g))
            return String(chars)
        case 5: return String(chars.prefix(Int.random(in: 0...chars.count, using: &g)))
        default:
            let i = Int.random(in: 0..<lines.count, using: &g)
            lines[i] = (g.chance(0.5) ? "  " : "") + lines[i].drop { $0 == " " && g.chance(0.5) }
        }
        return lines.joined(separator: "\n")
    }

    @Test("mutated specs are accepted with their invariants or refused naming a field or line", arguments: Array(UInt64(1)...UInt64(20)))
    func mutants(seed: UInt64) {
        var g = PropertyRandom(seed: seed)
        var accepted = 0, refused = 0
        for _ in 0..<60 {
            var text = Self.valid.randomElement(using: &g)!
            for _ in 0..<Int.random(in: 1...3, using: &g) { text = Self.mutate(text, &g) }
            do {
                let spec = try JobSpecParser.parse(yaml: text)
                accepted += 1
                let runs = spec.runs()
                #expect(!runs.isEmpty && runs.count == (spec.sweep?.count ?? 1) && runs.count <= JobSpecParser.maximumSweepRuns,
                        "seed \(seed): \(runs.count) runs from \(text.debugDescription)")
                #expect(Set(runs.map(\.name)).count == runs.count, "seed \(seed): duplicate run names from \(text.debugDescription)")
                #expect(!spec.sameEffectiveBatch || Set(spec.presets.map(\.batch.effectiveBatch)).count <= 1)
                #expect(!spec.name.isEmpty && !spec.project.isEmpty)
            } catch {
                refused += 1
                let empty = error.message.hasPrefix("the document is empty")
                #expect(!error.message.isEmpty && (!error.field.isEmpty || error.line != nil || empty),
                        "seed \(seed): \(error) names neither a field nor a line, for \(text.debugDescription)")
                if let line = error.line { #expect(line >= 1, "seed \(seed): \(error)") }
            }
        }
        #expect(refused > 0, "seed \(seed): no mutant was refused: the mutations do nothing")
        _ = accepted
    }
}
