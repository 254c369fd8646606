import Foundation

/// The Korean text normaliser the evaluation applies to both reference and hypothesis before
/// scoring (never part of the jiwer defaults, which normalise nothing). Versioned: the version is
/// stored with every result, and any change to what it does must bump it.
///
/// Version `ko-v1`, in this order:
/// 1. Unicode NFC (precomposed syllables; NFC vs NFD would otherwise cost ~2.7 CER per syllable).
/// 2. Vosk's bracketed number tokens (`[0]`, `[12]`, `[00]`, …) are removed.
/// 3. Latin letters A–Z are lower-cased (ASCII only).
/// 4. Numbers written with ASCII digits are read out in Sino-Korean: `2024` → 이천이십사,
///    `10000` → 만, `1,000` → 천, `3.14` → 삼점일사, `0` → 영. A digit run with a leading zero
///    (`010`, phone numbers) or longer than 20 digits is read digit by digit with 공 for 0.
///    Native-Korean counters (`3시` = 세 시) are out of scope: such references read 삼시.
/// 5. Punctuation and symbols are removed: only Hangul syllables (U+AC00–D7A3), Hangul
///    compatibility jamo (U+3131–318E), `a–z`, `0–9` and whitespace are kept (the common Korean
///    evaluation regex `[^\u3131-\u318E\uAC00-\uD7A3 0-9a-zA-Z\s]`, removed without replacement).
/// 6. Whitespace: with ``removesWhitespace`` (the default, for CER) every whitespace code point is
///    removed, because Korean spacing varies between speakers and ASR systems; otherwise runs of
///    whitespace become one U+0020 and the ends are trimmed (for WER).
public struct KoreanTextNormalizer: Sendable, Equatable {
    /// The behaviour version recorded with results.
    public static let currentVersion = "ko-v1"

    /// Whether step 6 removes all whitespace (CER) instead of collapsing it (WER).
    public let removesWhitespace: Bool

    public init(removesWhitespace: Bool = true) {
        self.removesWhitespace = removesWhitespace
    }

    /// The version string, with the whitespace mode: `ko-v1` or `ko-v1+spaces`.
    public var version: String { Self.currentVersion + (removesWhitespace ? "" : "+spaces") }

    /// The normalised text.
    public func normalize(_ text: String) -> String {
        let nfc = text.precomposedStringWithCanonicalMapping
        var scalars = Array(nfc.unicodeScalars)
        scalars = Self.removingBracketedNumbers(scalars)
        scalars = scalars.map { (0x41...0x5A).contains($0.value) ? Unicode.Scalar($0.value + 0x20)! : $0 }
        scalars = Self.verbalizingNumbers(scalars)
        scalars = scalars.filter(Self.isKept)
        var out = String.UnicodeScalarView()
        if removesWhitespace {
            out.append(contentsOf: scalars.lazy.filter { !TextTransforms.isPythonWhitespace($0) })
            return String(out)
        }
        var pendingSpace = false
        for s in scalars {
            if TextTransforms.isPythonWhitespace(s) {
                pendingSpace = !out.isEmpty
            } else {
                if pendingSpace { out.append(" ") }
                pendingSpace = false
                out.append(s)
            }
        }
        return String(out)
    }

    // MARK: - steps

    private static func isDigit(_ s: Unicode.Scalar) -> Bool { (0x30...0x39).contains(s.value) }

    private static func isKept(_ s: Unicode.Scalar) -> Bool {
        switch s.value {
        case 0xAC00...0xD7A3, 0x3131...0x318E, 0x61...0x7A, 0x30...0x39: true
        default: TextTransforms.isPythonWhitespace(s)
        }
    }

    /// Removes `[` digits `]` tokens.
    static func removingBracketedNumbers(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count)
        var i = 0
        while i < s.count {
            if s[i] == "[" {
                var j = i + 1
                while j < s.count, isDigit(s[j]) { j += 1 }
                if j > i + 1, j < s.count, s[j] == "]" {
                    i = j + 1
                    continue
                }
            }
            out.append(s[i])
            i += 1
        }
        return out
    }

    /// Replaces every number (digits, optional `,` thousands groups, optional `.` fraction) by its
    /// Sino-Korean reading.
    static func verbalizingNumbers(_ s: [Unicode.Scalar]) -> [Unicode.Scalar] {
        var out: [Unicode.Scalar] = []
        out.reserveCapacity(s.count * 2)
        var i = 0
        while i < s.count {
            guard isDigit(s[i]) else { out.append(s[i]); i += 1; continue }
            var integer: [UInt8] = []
            var j = i
            while j < s.count, isDigit(s[j]) { integer.append(UInt8(s[j].value - 0x30)); j += 1 }
            // Thousands separators: 1–3 leading digits, then groups of exactly three.
            if integer.count <= 3 {
                var k = j
                var groups: [UInt8] = []
                while k + 3 < s.count, s[k] == ",", (1...3).allSatisfy({ isDigit(s[k + $0]) }),
                      !(k + 4 < s.count && isDigit(s[k + 4])) {
                    groups += (1...3).map { UInt8(s[k + $0].value - 0x30) }
                    k += 4
                }
                if !groups.isEmpty { integer += groups; j = k }
            }
            var fraction: [UInt8] = []
            if j + 1 < s.count, s[j] == ".", isDigit(s[j + 1]) {
                var k = j + 1
                while k < s.count, isDigit(s[k]) { fraction.append(UInt8(s[k].value - 0x30)); k += 1 }
                j = k
            }
            out.append(contentsOf: reading(integer: integer).unicodeScalars)
            if !fraction.isEmpty {
                out.append(contentsOf: "점".unicodeScalars)
                out.append(contentsOf: fraction.map { $0 == 0 ? "영" : digitNames[Int($0)] }.joined().unicodeScalars)
            }
            i = j
        }
        return out
    }

    private static let digitNames = ["", "일", "이", "삼", "사", "오", "육", "칠", "팔", "구"]
    private static let smallUnits = ["", "십", "백", "천"]
    private static let largeUnits = ["", "만", "억", "조", "경"]

    /// The Sino-Korean reading of a digit string.
    static func reading(integer digits: [UInt8]) -> String {
        if digits.count > 1 && digits[0] == 0 || digits.count > 20 {
            return digits.map { $0 == 0 ? "공" : digitNames[Int($0)] }.joined()
        }
        if digits.allSatisfy({ $0 == 0 }) { return "영" }
        var groups: [[UInt8]] = []  // groups of four, least significant first
        var end = digits.count
        while end > 0 {
            let start = max(0, end - 4)
            groups.append(Array(digits[start..<end]))
            end = start
        }
        var text = ""
        for (index, group) in groups.enumerated().reversed() {
            let value = group.reduce(0) { $0 * 10 + Int($1) }
            guard value != 0 else { continue }
            // 만 alone for 10000 (not 일만); 억, 조, 경 keep 일 (일억).
            if value == 1 && index == 1 { text += "만"; continue }
            for (position, digit) in group.reversed().enumerated().reversed() where digit != 0 {
                text += (digit == 1 && position > 0) ? smallUnits[position] : digitNames[Int(digit)] + smallUnits[position]
            }
            text += largeUnits[index]
        }
        return text
    }
}
