@testable import Scoring
@testable import Shared
import Testing
import TestSupport

// The batch scoring path (BatchScoring + EditOperations.align) against the plain restatement of
// jiwer in the same module (TextTransforms.defaultWords/defaultCharacters, the generic
// EditOperations.opcodes, EditCounts(alignment:)), on seeded random text with every kind of Python
// whitespace, 1–4-byte UTF-8 and NFC/NFD pairs. JiwerOracleTests checks the same against jiwer.
@Suite("Word error rate: batch path equals the reference restatement")
struct WordErrorRateBatchTests {
    static let whitespace: [String] = [" ", " ", " ", "\t", "\n", "\r", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1F}", "\u{85}", "\u{A0}",
                                       "\u{1680}", "\u{2000}", "\u{200A}", "\u{2028}", "\u{2029}", "\u{202F}", "\u{205F}", "\u{3000}"]
    static let notWhitespace: [String] = ["a", "b", "c", "가", "나", "다", "한", "é", "e\u{301}", "\u{200B}", "\u{FEFF}", "\u{1F600}",
                                          "\u{2030}", "\u{1681}", "\u{3001}", "\u{86}", "ß", "-", ".", "\u{E000}"]

    func text(_ rng: inout PropertyRandom, maxLength: Int) -> String {
        var s = ""
        for _ in 0..<rng.int(maxLength + 1) {
            s += rng.int(3) == 0 ? Self.whitespace[rng.int(Self.whitespace.count)] : Self.notWhitespace[rng.int(Self.notWhitespace.count)]
        }
        return s
    }

    func edit(_ s: String, _ rng: inout PropertyRandom) -> String {
        var scalars = Array(s.unicodeScalars)
        for _ in 0..<rng.int(5) {
            let pool = rng.int(3) == 0 ? Self.whitespace : Self.notWhitespace
            let piece = Array(pool[rng.int(pool.count)].unicodeScalars)
            let i = scalars.isEmpty ? 0 : rng.int(scalars.count)
            switch rng.int(3) {
            case 0 where !scalars.isEmpty: scalars.replaceSubrange(i...i, with: piece)
            case 1 where !scalars.isEmpty: scalars.remove(at: i)
            default: scalars.insert(contentsOf: piece, at: i)
            }
        }
        var out = String.UnicodeScalarView()
        out.append(contentsOf: scalars)
        return String(out)
    }

    @Test("tokens: wer_default words and cer_default characters from one UTF-8 pass")
    func tokens() {
        var rng = PropertyRandom(seed: 7)
        var ranges: [Range<Int>] = []
        for _ in 0..<20_000 {
            let s = text(&rng, maxLength: 14)
            let words = BatchScoring.withUTF8(s) { u in
                BatchScoring.wordRanges(u, into: &ranges)
                return BatchScoring.words(u, ranges)
            }
            let expected = TextTransforms.defaultWords(s)
            #expect(words.map { Array($0.unicodeScalars) } == expected.map { Array($0.unicodeScalars) }, "\(Array(s.unicodeScalars))")
            #expect(BatchScoring.withUTF8(s, BatchScoring.characters) == TextTransforms.defaultCharacters(s), "\(Array(s.unicodeScalars))")
        }
    }

    func reference(words refs: [String], _ hyps: [String]) -> (tokens: [[[Unicode.Scalar]]], alignments: [[AlignmentChunk]], counts: EditCounts) {
        var ids: [[Unicode.Scalar]: Int] = [:]
        func id(_ w: String) -> Int {
            let key = Array(w.unicodeScalars)
            if let known = ids[key] { return known }
            ids[key] = ids.count
            return ids.count - 1
        }
        var counts = EditCounts(), alignments: [[AlignmentChunk]] = [], tokens: [[[Unicode.Scalar]]] = []
        for (r, h) in zip(refs.map(TextTransforms.defaultWords), hyps.map(TextTransforms.defaultWords)) {
            let a = EditOperations.opcodes(reference: r.map(id), hypothesis: h.map(id))
            counts += EditCounts(alignment: a)
            alignments.append(a)
            tokens.append(r.map { Array($0.unicodeScalars) })
            tokens.append(h.map { Array($0.unicodeScalars) })
        }
        return (tokens, alignments, counts)
    }

    @Test("process_words and process_characters: same tokens, alignments and counts as the reference")
    func batches() throws {
        var rng = PropertyRandom(seed: 2026)
        for round in 0..<400 {
            var refs: [String] = [], hyps: [String] = []
            for _ in 0..<(1 + rng.int(40)) {
                let r = text(&rng, maxLength: round % 10 == 0 ? 120 : 24)
                refs.append(r)
                hyps.append(rng.int(8) == 0 ? text(&rng, maxLength: 24) : edit(r, &rng))
            }
            let words = try Jiwer.processWords(reference: refs, hypothesis: hyps)
            let expected = reference(words: refs, hyps)
            var tokens: [[[Unicode.Scalar]]] = []
            for (r, h) in zip(words.references, words.hypotheses) {
                tokens.append(r.map { Array($0.unicodeScalars) })
                tokens.append(h.map { Array($0.unicodeScalars) })
            }
            #expect(tokens == expected.tokens)
            #expect(words.alignments == expected.alignments)
            #expect(words.counts == expected.counts)

            let chars = try Jiwer.processCharacters(reference: refs, hypothesis: hyps)
            var counts = EditCounts(), alignments: [[AlignmentChunk]] = []
            for (r, h) in zip(refs.map(TextTransforms.defaultCharacters), hyps.map(TextTransforms.defaultCharacters)) {
                let a = EditOperations.opcodes(reference: r, hypothesis: h)
                counts += EditCounts(alignment: a)
                alignments.append(a)
            }
            #expect(chars.references == refs.map(TextTransforms.defaultCharacters))
            #expect(chars.hypotheses == hyps.map(TextTransforms.defaultCharacters))
            #expect(chars.alignments == alignments)
            #expect(chars.counts == counts)
        }
    }

    @Test("edge cases: empty sides, equal sentences, one side all whitespace")
    func edges() throws {
        for (r, h) in [("", ""), ("", "a b"), ("a b", ""), ("a b", "a b"), ("  \t ", "x"), ("x", "\u{3000}\u{3000}"), ("a\tb", "a b"), ("가 나", "나 가")] {
            let w = Jiwer.processWords(reference: r, hypothesis: h)
            let e = reference(words: [r], [h])
            #expect(w.alignments == e.alignments, "\(r.debugDescription) / \(h.debugDescription)")
            #expect(w.counts == e.counts)
            let c = Jiwer.processCharacters(reference: r, hypothesis: h)
            let a = EditOperations.opcodes(reference: TextTransforms.defaultCharacters(r), hypothesis: TextTransforms.defaultCharacters(h))
            #expect(c.alignments == [a])
            #expect(c.counts == EditCounts(alignment: a))
        }
    }
}
