/// jiwer 4.0's default text transforms, reproduced on Unicode scalars (Python code points).
///
/// jiwer's defaults are
/// - words (`wer_default`): `RemoveMultipleSpaces` → `Strip` → `ReduceToListOfListOfWords`;
/// - characters (`cer_default`): `Strip` → `ReduceToListOfListOfChars`.
///
/// Python strings are sequences of code points, so everything here works on `unicodeScalars`, never
/// on `Character` (a grapheme cluster: `"\r\n"` is one Character but two Python characters), and
/// never compares with `String ==` (which treats NFC and NFD as equal; jiwer does not).
/// The whitespace set is Python 3.11's `str.isspace()` / `re` `\s` set, hard-coded, because Swift's
/// `Character.isWhitespace` leaves out U+001C–U+001F.
public enum TextTransforms {
    /// Whether Python 3.11 treats `scalar` as whitespace (`str.isspace()`, `str.strip()`, and the
    /// `\s` class of `re` on `str` patterns, which are the same set): U+0009–U+000D, U+001C–U+001F,
    /// U+0020, U+0085, U+00A0, U+1680, U+2000–U+200A, U+2028, U+2029, U+202F, U+205F, U+3000.
    /// U+200B (zero-width space) and U+FEFF are not whitespace.
    @inlinable
    public static func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        let v = scalar.value
        if v <= 0x20 { return (0x09...0x0D).contains(v) || (0x1C...0x20).contains(v) }
        if v < 0x85 { return false }
        switch v {
        case 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000: return true
        default: return false
        }
    }

    /// jiwer `RemoveMultipleSpaces`: `re.sub(r"\s\s+", " ", s)`. Every run of two or more whitespace
    /// code points becomes one U+0020; a single whitespace code point (tab, NBSP, U+3000, newline)
    /// is kept as it is.
    public static func removeMultipleSpaces(_ text: String) -> String {
        // Most sentences have no run of whitespace: return them as they are, without a copy.
        var previousWasSpace = false
        var hasRun = false
        for scalar in text.unicodeScalars {
            let space = isPythonWhitespace(scalar)
            if space && previousWasSpace { hasRun = true; break }
            previousWasSpace = space
        }
        guard hasRun else { return text }
        let scalars = Array(text.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        while i < scalars.count {
            if isPythonWhitespace(scalars[i]) {
                var j = i + 1
                while j < scalars.count, isPythonWhitespace(scalars[j]) { j += 1 }
                if j - i >= 2 { out.append(" ") } else { out.append(scalars[i]) }
                i = j
            } else {
                out.append(scalars[i])
                i += 1
            }
        }
        return String(out)
    }

    /// jiwer `Strip`: Python `str.strip()`, removing leading and trailing whitespace code points.
    public static func strip(_ text: String) -> String {
        let scalars = text.unicodeScalars
        // Nothing to strip (the usual case): no copy.
        if let f = scalars.first, let l = scalars.last, !isPythonWhitespace(f), !isPythonWhitespace(l) { return text }
        guard let first = scalars.firstIndex(where: { !isPythonWhitespace($0) }),
              let last = scalars.lastIndex(where: { !isPythonWhitespace($0) }) else { return "" }
        return String(scalars[first...last])
    }

    /// jiwer `ReduceToListOfListOfWords` for one sentence: `s.split(" ")` on U+0020 only, dropping
    /// empty strings. A tab, NBSP or U+3000 between two words does not split them.
    public static func words(_ text: String) -> [String] {
        text.unicodeScalars.split(separator: " ", omittingEmptySubsequences: true).map { String(String.UnicodeScalarView($0)) }
    }

    /// jiwer `ReduceToListOfListOfChars` for one sentence: one token per code point.
    public static func characters(_ text: String) -> [Unicode.Scalar] {
        Array(text.unicodeScalars)
    }

    /// jiwer's `wer_default` applied to one sentence: its word tokens.
    public static func defaultWords(_ text: String) -> [String] {
        words(strip(removeMultipleSpaces(text)))
    }

    /// jiwer's `cer_default` applied to one sentence: its character tokens (code points). Interior
    /// whitespace is kept: every space is a character.
    public static func defaultCharacters(_ text: String) -> [Unicode.Scalar] {
        characters(strip(text))
    }
}
