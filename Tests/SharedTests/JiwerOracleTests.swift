import Foundation
@testable import Scoring
@testable import Shared
import Testing
import TestSupport

// The Swift port of jiwer 4 (Sources/Shared/Eval) against jiwer itself: jiwer==4.0.0 (with its
// rapidfuzz) in a venv made by Tests/Fixtures/eval/jiwer_env.sh ($TTS_ORACLE_DIR or .build-oracle/),
// driven by Tests/Fixtures/eval/jiwer_oracle.py. Every case must give the same tokens, the same
// alignment chunks, the same H/S/D/I, the same measures bit for bit (and the same int/float type),
// and the same utterance mean.
//
// A missing python3, venv or PyPI makes these tests FAIL with the reason; they never skip.
// TTS_JIWER_RANDOM_CASES sets how many random pairs per unit (default 6,000).

/// Running the oracle.
private enum JiwerOracle {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static let fixtures = packageRoot + "/Tests/Fixtures/eval"

    struct Outcome {
        var status: Int32
        var stdout: Data
        var stderr: String
        var timedOut: Bool
        var summary: String { "exit \(status)\(timedOut ? " (timed out)" : "")\n--- stdout\n\(String(decoding: stdout.prefix(2000), as: UTF8.self))\n--- stderr\n\(stderr)" }
    }

    /// Runs a process with `input` on stdin, output through files, killed after `timeout` seconds.
    static func run(_ arguments: [String], input: Data = Data(), timeout: Double) throws -> Outcome {
        let tmp = FileManager.default.temporaryDirectory.path + "/tts-jiwer-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: tmp, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: tmp) }
        try input.write(to: URL(fileURLWithPath: tmp + "/in"))
        _ = FileManager.default.createFile(atPath: tmp + "/out", contents: nil)
        _ = FileManager.default.createFile(atPath: tmp + "/err", contents: nil)
        let stdin = try FileHandle(forReadingFrom: URL(fileURLWithPath: tmp + "/in"))
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + "/out"))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: tmp + "/err"))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: arguments[0])
        p.arguments = Array(arguments.dropFirst())
        p.standardInput = stdin
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while p.isRunning {
            if Date() > deadline { timedOut = true; kill(p.processIdentifier, SIGKILL); break }
            Thread.sleep(forTimeInterval: 0.02)
        }
        p.waitUntilExit()
        try out.close(); try err.close(); try stdin.close()
        return Outcome(status: p.terminationStatus, stdout: (try? Data(contentsOf: URL(fileURLWithPath: tmp + "/out"))) ?? Data(),
                       stderr: (try? String(contentsOfFile: tmp + "/err", encoding: .utf8)) ?? "", timedOut: timedOut)
    }

    /// The venv's python, created on first use; records a failure saying why and returns nil when impossible.
    static func python() -> String? {
        let outcome: Outcome
        do {
            outcome = try run(["/bin/bash", fixtures + "/jiwer_env.sh"], timeout: 600)
        } catch {
            Issue.record("cannot run jiwer_env.sh (needs bash): \(error)")
            return nil
        }
        let last = String(decoding: outcome.stdout, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? ""
        guard outcome.status == 0, !outcome.timedOut, FileManager.default.isExecutableFile(atPath: last) else {
            Issue.record("""
                The jiwer oracle needs a Python venv with jiwer==4.0.0 and could not get one. Install python3 with venv \
                support and make PyPI reachable (or set PIP_INDEX_URL), or point TTS_ORACLE_DIR at a prepared directory. \
                jiwer_env.sh said: \(outcome.summary)
                """)
            return nil
        }
        return last
    }

    /// One question for jiwer.
    struct Case {
        enum Unit: String { case words, chars }
        enum Side { case single(String), list([String]) }
        var unit: Unit
        var refs: Side
        var hyps: Side

        var json: [String: Any] {
            func encode(_ s: Side) -> Any { switch s { case let .single(x): x; case let .list(x): x } }
            return ["unit": unit.rawValue, "refs": encode(refs), "hyps": encode(hyps)]
        }

        var debugDescription: String {
            func show(_ s: Side) -> String {
                switch s {
                case let .single(x): String(reflecting: x)
                case let .list(x): "[" + x.map { String(reflecting: $0) }.joined(separator: ", ") + "]"
                }
            }
            return "\(unit.rawValue) refs=\(show(refs)) hyps=\(show(hyps))"
        }
    }

    /// jiwer's answers, in order; nil (with a recorded failure) when the oracle did not answer.
    static func answers(for cases: [Case], python: String) -> [[String: Any]]? {
        do {
            let input = try JSONSerialization.data(withJSONObject: cases.map(\.json))
            let outcome = try run([python, fixtures + "/jiwer_oracle.py"], input: input, timeout: 900)
            guard outcome.status == 0, !outcome.timedOut,
                  let answers = try JSONSerialization.jsonObject(with: outcome.stdout) as? [[String: Any]],
                  answers.count == cases.count else {
                Issue.record("jiwer_oracle.py failed: \(outcome.summary)")
                return nil
            }
            return answers
        } catch {
            Issue.record("cannot run jiwer_oracle.py: \(error)")
            return nil
        }
    }

    /// Every difference between our result for `c` and jiwer's `answer`, as sentences.
    static func differences(_ c: Case, _ answer: [String: Any]) -> [String] {
        var problems: [String] = []
        // Ours, through the same entry point jiwer was called with.
        let counts: EditCounts
        let references: [[[[Unicode.Scalar]]]]
        let alignments: [[AlignmentChunk]]
        var measures: [(String, Double, Bool)] = []
        do {
            switch (c.unit, c.refs, c.hyps) {
            case let (.words, .single(r), .single(h)):
                let o = Jiwer.processWords(reference: r, hypothesis: h)
                (counts, alignments) = (o.counts, o.alignments)
                references = [o.references.map { $0.map { Array($0.unicodeScalars) } }, o.hypotheses.map { $0.map { Array($0.unicodeScalars) } }]
            case let (.chars, .single(r), .single(h)):
                let o = Jiwer.processCharacters(reference: r, hypothesis: h)
                (counts, alignments) = (o.counts, o.alignments)
                references = [o.references.map { $0.map { [$0] } }, o.hypotheses.map { $0.map { [$0] } }]
            case (.words, _, _):
                let o = try Jiwer.processWords(reference: c.refs.list, hypothesis: c.hyps.list)
                (counts, alignments) = (o.counts, o.alignments)
                references = [o.references.map { $0.map { Array($0.unicodeScalars) } }, o.hypotheses.map { $0.map { Array($0.unicodeScalars) } }]
            case (.chars, _, _):
                let o = try Jiwer.processCharacters(reference: c.refs.list, hypothesis: c.hyps.list)
                (counts, alignments) = (o.counts, o.alignments)
                references = [o.references.map { $0.map { [$0] } }, o.hypotheses.map { $0.map { [$0] } }]
            }
        } catch {
            if answer["error"] == nil { problems.append("we threw \(error), jiwer did not") }
            return problems
        }
        if let error = answer["error"] { return ["jiwer raised \(error), we did not"] }
        switch c.unit {
        case .words: for m in EditCounts.Measure.allCases { measures.append((m.rawValue, counts.value(of: m), counts.isIntegerInJiwer(m))) }
        case .chars: measures.append(("cer", counts.errorRate, counts.isIntegerInJiwer(.wer)))
        }
        let theirs = EditCounts(hits: answer["hits"] as? Int ?? -1, substitutions: answer["substitutions"] as? Int ?? -1,
                                deletions: answer["deletions"] as? Int ?? -1, insertions: answer["insertions"] as? Int ?? -1)
        if counts != theirs { problems.append("counts: ours \(counts), jiwer \(theirs)") }
        let theirMeasures = answer["measures"] as? [String: [String]] ?? [:]
        for (name, value, isInteger) in measures {
            guard let pair = theirMeasures[name], pair.count == 2, let expected = Double(pair[0]) else {
                problems.append("\(name): jiwer gave no value"); continue
            }
            if value.bitPattern != expected.bitPattern { problems.append("\(name): ours \(value), jiwer \(pair[0])") }
            if isInteger != (pair[1] == "int") { problems.append("\(name): ours is \(isInteger ? "int" : "float"), jiwer's is \(pair[1])") }
        }
        for (index, key) in ["references", "hypotheses"].enumerated() {
            let tokens = (answer[key] as? [[String]] ?? []).map { $0.map { Array($0.unicodeScalars) } }
            if tokens != references[index] { problems.append("\(key): ours \(references[index]), jiwer \(tokens)") }
        }
        let theirAlignments: [[AlignmentChunk]] = (answer["alignments"] as? [[[Any]]] ?? []).map { sentence in
            sentence.map { chunk in
                AlignmentChunk(kind: AlignmentChunk.Kind(rawValue: chunk[0] as? String ?? "") ?? .equal,
                               reference: (chunk[1] as? Int ?? 0)..<(chunk[2] as? Int ?? 0),
                               hypothesis: (chunk[3] as? Int ?? 0)..<(chunk[4] as? Int ?? 0))
            }
        }
        if alignments != theirAlignments { problems.append("alignments: ours \(alignments), jiwer \(theirAlignments)") }
        if let mean = answer["utterance_mean"] as? String, let expected = Double(mean), case let .list(r) = c.refs, case let .list(h) = c.hyps {
            let unit: ErrorRateReport.Unit = c.unit == .words ? .word : .character
            if let report = try? ErrorRateReport(unit: unit, references: r, hypotheses: h) {
                if report.utteranceMeanRate.bitPattern != expected.bitPattern {
                    problems.append("utterance mean: ours \(report.utteranceMeanRate), jiwer-based \(mean)")
                }
                if report.corpusCounts != counts { problems.append("report corpus counts \(report.corpusCounts) ≠ process_* \(counts)") }
            } else {
                problems.append("ErrorRateReport threw for equal-length lists")
            }
        }
        return problems
    }

    /// Asks jiwer about every case and records one failure listing the first differences.
    static func check(_ cases: [Case], comment: String) {
        guard let python = python(), let answers = answers(for: cases, python: python) else { return }
        var failures: [String] = []
        var failed = 0
        for (c, answer) in zip(cases, answers) {
            let problems = differences(c, answer)
            if !problems.isEmpty {
                failed += 1
                if failures.count < 8 { failures.append(c.debugDescription + "\n    " + problems.joined(separator: "\n    ")) }
            }
        }
        #expect(failed == 0, "\(comment): \(failed) of \(cases.count) cases differ from jiwer 4.0.0; first ones:\n\(failures.joined(separator: "\n"))")
    }
}

private extension JiwerOracle.Case.Side {
    var list: [String] {
        switch self {
        case let .single(s): [s]
        case let .list(l): l
        }
    }
}

/// Random sentences and edits of them: Korean, English, digits, punctuation, and every kind of
/// whitespace that jiwer treats specially.
private struct SentenceFactory {
    var rng: PropertyRandom

    static let korean = ["오늘", "날씨가", "좋네요", "한국어", "음성", "합성", "모델을", "평가합니다", "저는", "학생입니다", "서울에", "살아요",
                         "감사합니다", "안녕하세요", "내일", "비가", "올", "것", "같아요", "사과", "인공지능", "데이터", "학습", "결과를", "확인했다",
                         "의", "가", "을", "는", "ㅋㅋ", "한", "국", "어"]
    static let latin = ["the", "cat", "sat", "on", "mat", "hello", "world", "GPU", "A6000", "IndexTTS", "ok", "a", "b", "c", "Cat", "CAT"]
    static let digits = ["1", "2", "2024", "3.14", "010-1234-5678", "100%", "3시", "20,000원"]
    static let punctuation = [".", ",", "?", "!", "…", "·", "\"", "'", "(", ")", "~", "、", "。", "-", "[1]"]
    static let oddities = ["한국어".decomposedStringWithCanonicalMapping, "e\u{301}", "é", "👨‍👩‍👧", "a\r\nb", "x\u{200B}y", "\u{FEFF}z", "Å", "Å"]
    static let separators = [" ", " ", " ", " ", " ", "  ", "\t", "\u{00A0}", "\u{3000}", "\n", " \t", "\u{1C}", "\u{1F}", "\u{2028}",
                             "\u{202F}", "\u{85}", "\r\n", "\u{3000}\u{3000}", "\u{200B}", " \u{00A0} "]

    mutating func pick<T>(_ array: [T]) -> T { array[Int(rng.next() % UInt64(array.count))] }
    mutating func chance(_ p: Double) -> Bool { Double(rng.next() % 1_000_000) / 1_000_000 < p }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &rng) }

    mutating func word() -> String {
        switch rng.next() % 20 {
        case 0..<10: pick(Self.korean)
        case 10..<14: pick(Self.latin)
        case 14..<16: pick(Self.digits)
        case 16..<18: pick(Self.korean) + pick(Self.punctuation)
        case 18: pick(Self.punctuation)
        default: pick(Self.oddities)
        }
    }

    mutating func words(_ range: ClosedRange<Int>) -> [String] { (0..<int(range)).map { _ in word() } }

    /// Joins words mostly with single spaces, sometimes with odd whitespace, sometimes padded.
    mutating func join(_ words: [String]) -> String {
        var text = chance(0.1) ? pick(Self.separators) : ""
        for (i, w) in words.enumerated() {
            if i > 0 { text += chance(0.8) ? " " : pick(Self.separators) }
            text += w
        }
        if chance(0.1) { text += pick(Self.separators) }
        return text
    }

    /// A Hangul syllable, uniformly from U+AC00–D7A3.
    mutating func syllable() -> Character { Character(Unicode.Scalar(UInt32(0xAC00 + int(0...11171)))!) }

    /// `words` with up to `maxEdits` random word- and character-level edits.
    mutating func edit(_ words: [String], maxEdits: Int) -> [String] {
        var w = words
        for _ in 0..<int(0...maxEdits) {
            switch rng.next() % 8 {
            case 0 where !w.isEmpty: w[int(0...w.count - 1)] = word()                        // substitute
            case 1 where !w.isEmpty: w.remove(at: int(0...w.count - 1))                       // delete
            case 2: w.insert(word(), at: int(0...w.count))                                    // insert
            case 3 where w.count >= 2: let i = int(0...w.count - 2); w.swapAt(i, i + 1)       // swap
            case 4 where !w.isEmpty:                                                          // change one character
                let i = int(0...w.count - 1)
                var chars = Array(w[i])
                if !chars.isEmpty { chars[int(0...chars.count - 1)] = syllable() }
                w[i] = String(chars)
            case 5 where !w.isEmpty: let i = int(0...w.count - 1); w.insert(w[i], at: i)      // repeat
            case 6 where !w.isEmpty: w[int(0...w.count - 1)] += pick(Self.punctuation)        // punctuation
            case 7 where w.count >= 2:                                                        // merge two words
                let i = int(0...w.count - 2); w[i] += w[i + 1]; w.remove(at: i + 1)
            default: break
            }
        }
        return w
    }

    /// A reference/hypothesis pair, including empty and whitespace-only sides now and then.
    mutating func pair(maxWords: Int = 12, maxEdits: Int = 4) -> (String, String) {
        let ref = words(0...maxWords)
        let refText = chance(0.04) ? "" : chance(0.02) ? pick(Self.separators) : join(ref)
        let hypText = chance(0.06) ? "" : chance(0.02) ? pick(Self.separators) : join(edit(ref, maxEdits: maxEdits))
        return (refText, hypText)
    }

    /// A long Korean sentence (about `length` code points) and a copy with `edits` character edits:
    /// the shape of a CER case, long enough for rapidfuzz's banded and blocked paths.
    mutating func longKoreanPair(length: Int, edits: Int) -> (String, String) {
        var ref: [Character] = []
        while ref.count < length { ref += Array(pick(Self.korean)); if chance(0.7) { ref.append(" ") } }
        var hyp = ref
        for _ in 0..<edits {
            switch rng.next() % 3 {
            case 0 where !hyp.isEmpty: hyp[int(0...hyp.count - 1)] = syllable()
            case 1 where !hyp.isEmpty: hyp.remove(at: int(0...hyp.count - 1))
            default: hyp.insert(chance(0.3) ? " " : syllable(), at: int(0...hyp.count))
            }
        }
        return (String(ref), String(hyp))
    }
}

@Suite("jiwer 4.0 parity (oracle)", .serialized)
struct JiwerOracleTests {
    static var randomCases: Int {
        ProcessInfo.processInfo.environment["TTS_JIWER_RANDOM_CASES"].flatMap(Int.init) ?? 25_000 // 50,000 pairs
    }

    @Test("known sentences: Korean, English, whitespace, NFC/NFD, empty sides, corpus vs utterance mean")
    func fixedSentences() {
        typealias Case = JiwerOracle.Case
        let nfd = "한국어".decomposedStringWithCanonicalMapping
        let pairs: [(String, String)] = [
            ("a b", "b a"), ("오늘 날씨가 좋네요", "오늘날씨가 좋네요"), ("한국어", nfd), ("", "a b"), ("", ""), ("a b c", ""),
            ("a\tb", "a b"), ("a\u{00A0}b", "a b"), ("a\u{3000}b", "a b"), ("a\nb", "a b"), ("a \tb", "a b"),
            ("a\u{3000}\u{3000}b", "a b"), ("a  b", "a b"), ("\u{1C}a b\u{1F}", "a b"), ("x\u{200B} y", "x y"),
            ("hello, world.", "hello world"), ("3시에 만나요", "세 시에 만나요"), ("\r\n", ""), ("👨‍👩‍👧", "👨"),
            ("저는 학생입니다", "저 는 학생 입니다"), ("the cat sat on the mat", "the cat sat on mat the"),
            ("음성 합성 모델을 평가합니다", "음성 합성 모델을 평가 합니다"), ("GPU A6000", "gpu a6000"),
        ]
        var cases: [Case] = []
        for (r, h) in pairs {
            cases.append(Case(unit: .words, refs: .single(r), hyps: .single(h)))
            cases.append(Case(unit: .chars, refs: .single(r), hyps: .single(h)))
        }
        let corpora: [([String], [String])] = [
            (["a b c d e f g h i j", "x"], ["a b c d e f g h i j", "y"]),
            (["a b", ""], ["a b", "c"]),
            ([], []), ([], ["a"]), (["a"], ["a", "b"]), (["", ""], ["", "x y"]),
            (["오늘 날씨가 좋네요", "한국어 음성", "감사합니다"], ["오늘 날씨 좋네요", "한국어음성", ""]),
        ]
        for (r, h) in corpora {
            cases.append(Case(unit: .words, refs: .list(r), hyps: .list(h)))
            cases.append(Case(unit: .chars, refs: .list(r), hyps: .list(h)))
        }
        JiwerOracle.check(cases, comment: "fixed sentences")
    }

    @Test("seeded random sentence pairs: substitutions, deletions, insertions, swaps, whitespace, punctuation, mixed scripts")
    func randomPairs() {
        var factory = SentenceFactory(rng: PropertyRandom(seed: 20_250_707))
        var cases: [JiwerOracle.Case] = []
        for _ in 0..<Self.randomCases {
            let (r, h) = factory.pair()
            cases.append(.init(unit: .words, refs: .single(r), hyps: .single(h)))
            let (r2, h2) = factory.pair()
            cases.append(.init(unit: .chars, refs: .single(r2), hyps: .single(h2)))
        }
        JiwerOracle.check(cases, comment: "random pairs (seed 20250707)")
    }

    @Test("long sentences: Korean CER over 65–400 code points with few or many edits, and 65–200-word WER")
    func longSentences() {
        var factory = SentenceFactory(rng: PropertyRandom(seed: 42))
        var cases: [JiwerOracle.Case] = []
        for i in 0..<400 {
            let length = factory.int(65...400)
            let edits = i % 2 == 0 ? factory.int(0...12) : factory.int(13...(length / 2))
            let (r, h) = factory.longKoreanPair(length: length, edits: edits)
            cases.append(.init(unit: .chars, refs: .single(r), hyps: .single(h)))
        }
        for _ in 0..<100 {
            let ref = factory.words(65...200)
            let hyp = factory.edit(ref, maxEdits: factory.int(0...60))
            cases.append(.init(unit: .words, refs: .single(factory.join(ref)), hyps: .single(factory.join(hyp))))
        }
        JiwerOracle.check(cases, comment: "long sentences (seed 42)")
    }

    @Test("corpora: lists of pairs, summed counts, utterance mean, empty references among them")
    func corpora() {
        var factory = SentenceFactory(rng: PropertyRandom(seed: 7))
        var cases: [JiwerOracle.Case] = []
        for i in 0..<600 {
            let pairs = (0..<factory.int(1...10)).map { _ in factory.pair() }
            cases.append(.init(unit: i % 2 == 0 ? .words : .chars, refs: .list(pairs.map(\.0)), hyps: .list(pairs.map(\.1))))
        }
        // A 2,000-sentence Korean corpus, scored in one call.
        let big = (0..<2_000).map { _ in factory.longKoreanPair(length: factory.int(10...80), edits: factory.int(0...6)) }
        cases.append(.init(unit: .chars, refs: .list(big.map(\.0)), hyps: .list(big.map(\.1))))
        cases.append(.init(unit: .words, refs: .list(big.map(\.0)), hyps: .list(big.map(\.1))))
        JiwerOracle.check(cases, comment: "corpora (seed 7)")
    }
}

/// The documented behaviours, stated without the oracle (they also run through it above).
@Suite("jiwer 4.0 semantics")
struct JiwerSemanticsTests {
    @Test("rapidfuzz's tie-breaking: 'a b' vs 'b a' is 1 hit, 1 deletion, 1 insertion")
    func tieBreaking() {
        let o = Jiwer.processWords(reference: "a b", hypothesis: "b a")
        #expect(o.counts == EditCounts(hits: 1, substitutions: 0, deletions: 1, insertions: 1))
        #expect(o.wer == 1.0)
        #expect(o.mer == 2.0 / 3.0)
        #expect(o.wip == 0.25)
        #expect(o.alignments == [[
            AlignmentChunk(kind: .insert, reference: 0..<0, hypothesis: 0..<1),
            AlignmentChunk(kind: .equal, reference: 0..<1, hypothesis: 1..<2),
            AlignmentChunk(kind: .delete, reference: 1..<2, hypothesis: 2..<2),
        ]])
    }

    @Test("Korean spacing: WER 2/3 but CER 0.1 for one missing space")
    func koreanSpacing() {
        #expect(Jiwer.wer(reference: "오늘 날씨가 좋네요", hypothesis: "오늘날씨가 좋네요") == 2.0 / 3.0)
        #expect(Jiwer.cer(reference: "오늘 날씨가 좋네요", hypothesis: "오늘날씨가 좋네요") == 0.1)
    }

    @Test("code points, not graphemes, and NFC is not NFD")
    func codePoints() {
        #expect(Jiwer.cer(reference: "한국어", hypothesis: "한국어".decomposedStringWithCanonicalMapping) == 8.0 / 3.0)
        #expect(Jiwer.processCharacters(reference: "a\r\nb", hypothesis: "").counts.deletions == 4)
    }

    @Test("whitespace: only U+0020 splits words; runs of 2+ whitespace collapse; U+001C–001F is whitespace")
    func whitespace() {
        #expect(Jiwer.wer(reference: "a\tb", hypothesis: "a b") == 2.0)
        #expect(Jiwer.wer(reference: "a\u{3000}b", hypothesis: "a b") == 2.0)
        #expect(Jiwer.wer(reference: "a \tb", hypothesis: "a b") == 0.0)
        #expect(Jiwer.wer(reference: "\u{1C}a b\u{1F}", hypothesis: "a b") == 0.0)
        #expect(Jiwer.cer(reference: "a  b", hypothesis: "a b") == 0.25)
    }

    @Test("empty reference: no error, WER = insertions, as Python ints")
    func emptyReference() throws {
        let o = Jiwer.processWords(reference: "", hypothesis: "a b")
        #expect(o.wer == 2 && o.mer == 1 && o.wip == 0 && o.wil == 1)
        #expect(EditCounts.Measure.allCases.allSatisfy { o.counts.isIntegerInJiwer($0) })
        #expect(Jiwer.wer(reference: "", hypothesis: "") == 0)
        #expect(try Jiwer.wer(reference: ["a b", ""], hypothesis: ["a b", "c"]) == 0.5)
    }

    @Test("different sentence counts are an error naming both counts")
    func countMismatch() {
        #expect(throws: JiwerError.sentenceCountMismatch(references: 1, hypotheses: 2)) {
            try Jiwer.wer(reference: ["a"], hypothesis: ["a", "b"])
        }
    }

    @Test("corpus rate and utterance mean are different numbers, both reported")
    func corpusVersusUtteranceMean() throws {
        let report = try ErrorRateReport(unit: .word, references: ["a b c d e f g h i j", "x"], hypotheses: ["a b c d e f g h i j", "y"])
        #expect(report.corpusRate == 1.0 / 11.0)
        #expect(report.utteranceMeanRate == 0.5)
    }

    @Test("the Korean normaliser is opt-in and recorded: CER after normalisation ignores spacing and punctuation")
    func normalizedReport() throws {
        let report = try ErrorRateReport(unit: .character, references: ["오늘 날씨가 좋네요!"], hypotheses: ["오늘날씨가 좋네요"],
                                          normalizer: KoreanTextNormalizer())
        #expect(report.corpusRate == 0)
        #expect(report.normalizerVersion == "ko-v1")
        let raw = try ErrorRateReport(unit: .character, references: ["오늘 날씨가 좋네요!"], hypotheses: ["오늘날씨가 좋네요"])
        #expect(raw.corpusRate > 0 && raw.normalizerVersion == nil)
    }
}
