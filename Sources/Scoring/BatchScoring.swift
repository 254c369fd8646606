/// The batch path behind ``Jiwer/processWords(reference:hypothesis:)`` and
/// ``Jiwer/processCharacters(reference:hypothesis:)``: jiwer's default transforms done in one pass
/// over each sentence's UTF-8 bytes, word ids assigned per sentence pair by a small hash table over
/// the words' bytes, and ``EditOperations/align(_:_:scratch:counts:)`` with reused buffers. It gives
/// exactly what ``TextTransforms/defaultWords(_:)``, ``TextTransforms/defaultCharacters(_:)`` and
/// ``EditOperations/opcodes(reference:hypothesis:)`` give (tested against them and against jiwer).
enum BatchScoring {
    /// Runs `body` with the contiguous UTF-8 bytes of `text` (native Swift strings already are).
    @inline(__always)
    static func withUTF8<R>(_ text: String, _ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let r = text.utf8.withContiguousStorageIfAvailable(body) { return r }
        var copy = text
        copy.makeContiguousUTF8()
        return copy.utf8.withContiguousStorageIfAvailable(body)!
    }

    /// The length of the UTF-8 sequence at `i` and whether its code point is Python whitespace
    /// (``TextTransforms/isPythonWhitespace(_:)``). `u` is valid UTF-8 (a Swift string).
    @inline(__always)
    static func scalar(_ u: UnsafeBufferPointer<UInt8>, _ i: Int) -> (length: Int, whitespace: Bool) {
        let b = u[i]
        if b < 0x80 { return (1, (0x09...0x0D).contains(b) || (0x1C...0x20).contains(b)) }
        if b < 0xE0 {
            // U+0085 and U+00A0 are C2 85 and C2 A0.
            return (2, b == 0xC2 && (u[i + 1] == 0x85 || u[i + 1] == 0xA0))
        }
        if b < 0xF0 {
            guard b == 0xE1 || b == 0xE2 || b == 0xE3 else { return (3, false) }
            let v = (UInt32(b & 0x0F) << 12) | (UInt32(u[i + 1] & 0x3F) << 6) | UInt32(u[i + 2] & 0x3F)
            return (3, TextTransforms.isPythonWhitespace(Unicode.Scalar(v)!))
        }
        return (4, false)
    }

    /// The words of `wer_default` (RemoveMultipleSpaces → Strip → split on U+0020) as byte ranges:
    /// a code point belongs to a word unless it is whitespace, except that a single whitespace code
    /// point other than U+0020 between two non-whitespace code points stays inside the word (a run of
    /// two or more becomes a space, and Strip removes whitespace at either end).
    static func wordRanges(_ u: UnsafeBufferPointer<UInt8>, into ranges: inout [Range<Int>]) {
        ranges.removeAll(keepingCapacity: true)
        let n = u.count
        var i = 0, start = -1, previousWhitespace = true
        while i < n {
            let (length, whitespace) = scalar(u, i)
            let content: Bool
            if !whitespace {
                content = true
            } else if u[i] == 0x20 || previousWhitespace {
                content = false
            } else {
                let j = i + length
                content = j < n && !scalar(u, j).whitespace
            }
            if content {
                if start < 0 { start = i }
            } else if start >= 0 {
                ranges.append(start..<i)
                start = -1
            }
            previousWhitespace = whitespace
            i += length
        }
        if start >= 0 { ranges.append(start..<n) }
    }

    /// `cer_default` (Strip, then one token per code point) decoded from UTF-8.
    static func characters(_ u: UnsafeBufferPointer<UInt8>) -> [Unicode.Scalar] {
        var lo = 0, hi = u.count
        while lo < hi {
            let (length, whitespace) = scalar(u, lo)
            guard whitespace else { break }
            lo += length
        }
        while hi > lo {
            var start = hi - 1
            while u[start] & 0xC0 == 0x80 { start -= 1 }
            guard scalar(u, start).whitespace else { break }
            hi = start
        }
        var count = 0
        for i in lo..<hi where u[i] & 0xC0 != 0x80 { count += 1 }
        return [Unicode.Scalar](unsafeUninitializedCapacity: count) { out, initialized in
            var i = lo, k = 0
            while i < hi {
                let b = u[i]
                var v: UInt32
                if b < 0x80 {
                    v = UInt32(b); i += 1
                } else if b < 0xE0 {
                    v = (UInt32(b & 0x1F) << 6) | UInt32(u[i + 1] & 0x3F); i += 2
                } else if b < 0xF0 {
                    v = (UInt32(b & 0x0F) << 12) | (UInt32(u[i + 1] & 0x3F) << 6) | UInt32(u[i + 2] & 0x3F); i += 3
                } else {
                    v = (UInt32(b & 0x07) << 18) | (UInt32(u[i + 1] & 0x3F) << 12) | (UInt32(u[i + 2] & 0x3F) << 6) | UInt32(u[i + 3] & 0x3F); i += 4
                }
                (out.baseAddress! + k).initialize(to: Unicode.Scalar(v)!)
                k += 1
            }
            initialized = k
        }
    }

    /// Word ids for one sentence pair: equal bytes, equal id (ids are only compared within the pair).
    final class WordIds {
        private var slots: [Int32] = []
        private var hashes: [UInt64] = []
        private var pointers: [UnsafePointer<UInt8>?] = []
        private var lengths: [Int] = []
        private(set) var ids: [UInt32] = []

        /// Fills ``ids`` with the ids of the reference words then the hypothesis words.
        func assign(_ ref: UnsafeBufferPointer<UInt8>, _ refRanges: [Range<Int>],
                    _ hyp: UnsafeBufferPointer<UInt8>, _ hypRanges: [Range<Int>]) {
            let total = refRanges.count + hypRanges.count
            var capacity = 16
            while capacity < 2 * total { capacity <<= 1 }
            if slots.count < capacity { slots = [Int32](repeating: -1, count: capacity) }
            if ids.count < total {
                let size = Swift.max(total, 2 * ids.count, 32)
                ids = [UInt32](repeating: 0, count: size)
                hashes = [UInt64](repeating: 0, count: size)
                pointers = [UnsafePointer<UInt8>?](repeating: nil, count: size)
                lengths = [Int](repeating: 0, count: size)
            }
            let mask = capacity - 1
            var next: UInt32 = 0
            slots.withUnsafeMutableBufferPointer { slots in
                for s in 0..<capacity { slots[s] = -1 }
                ids.withUnsafeMutableBufferPointer { ids in
                    hashes.withUnsafeMutableBufferPointer { hashes in
                        pointers.withUnsafeMutableBufferPointer { pointers in
                            lengths.withUnsafeMutableBufferPointer { lengths in
                                var t = 0
                                func add(_ base: UnsafePointer<UInt8>, _ range: Range<Int>) {
                                    let p = base + range.lowerBound, length = range.count
                                    var h: UInt64 = 0xcbf2_9ce4_8422_2325
                                    for k in 0..<length { h = (h ^ UInt64(p[k])) &* 0x0000_0100_0000_01B3 }
                                    h ^= h >> 29
                                    hashes[t] = h; pointers[t] = p; lengths[t] = length
                                    var s = Int(truncatingIfNeeded: h) & mask
                                    while true {
                                        let other = Int(slots[s])
                                        if other < 0 {
                                            slots[s] = Int32(t)
                                            ids[t] = next
                                            next += 1
                                            break
                                        }
                                        if hashes[other] == h, lengths[other] == length,
                                           length == 0 || memcmpEqual(pointers[other]!, p, length) {
                                            ids[t] = ids[other]
                                            break
                                        }
                                        s = (s + 1) & mask
                                    }
                                    t += 1
                                }
                                for r in refRanges { add(ref.baseAddress!, r) }
                                for r in hypRanges { add(hyp.baseAddress!, r) }
                            }
                        }
                    }
                }
            }
        }

        @inline(__always)
        private func memcmpEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
            for k in 0..<n where a[k] != b[k] { return false }
            return true
        }
    }

    /// One String per word range.
    @inline(__always)
    static func words(_ u: UnsafeBufferPointer<UInt8>, _ ranges: [Range<Int>]) -> [String] {
        [String](unsafeUninitializedCapacity: ranges.count) { out, initialized in
            for (k, r) in ranges.enumerated() {
                (out.baseAddress! + k).initialize(to: String(decoding: UnsafeBufferPointer(rebasing: u[r]), as: UTF8.self))
            }
            initialized = ranges.count
        }
    }

    static func processWords(_ refTexts: [String], _ hypTexts: [String]) -> WordOutput {
        let scratch = AlignmentScratch()
        let wordIds = WordIds()
        var refRanges: [Range<Int>] = [], hypRanges: [Range<Int>] = []
        var refs: [[String]] = [], hyps: [[String]] = [], alignments: [[AlignmentChunk]] = []
        refs.reserveCapacity(refTexts.count)
        hyps.reserveCapacity(refTexts.count)
        alignments.reserveCapacity(refTexts.count)
        var counts = EditCounts()
        for (refText, hypText) in zip(refTexts, hypTexts) {
            withUTF8(refText) { r in
                withUTF8(hypText) { h in
                    wordRanges(r, into: &refRanges)
                    wordRanges(h, into: &hypRanges)
                    refs.append(words(r, refRanges))
                    hyps.append(words(h, hypRanges))
                    wordIds.assign(r, refRanges, h, hypRanges)
                    let n = refRanges.count, m = hypRanges.count
                    wordIds.ids.withUnsafeBufferPointer { ids in
                        alignments.append(EditOperations.align(UnsafeBufferPointer(rebasing: ids[0..<n]), UnsafeBufferPointer(rebasing: ids[n..<(n + m)]),
                                                               scratch: scratch, counts: &counts))
                    }
                }
            }
        }
        return WordOutput(references: refs, hypotheses: hyps, alignments: alignments, counts: counts)
    }

    static func processCharacters(_ refTexts: [String], _ hypTexts: [String]) -> CharacterOutput {
        let scratch = AlignmentScratch()
        var refs: [[Unicode.Scalar]] = [], hyps: [[Unicode.Scalar]] = [], alignments: [[AlignmentChunk]] = []
        refs.reserveCapacity(refTexts.count)
        hyps.reserveCapacity(refTexts.count)
        alignments.reserveCapacity(refTexts.count)
        var counts = EditCounts()
        for (refText, hypText) in zip(refTexts, hypTexts) {
            let r = withUTF8(refText, characters), h = withUTF8(hypText, characters)
            refs.append(r)
            hyps.append(h)
            // A code point is its own token id (Unicode.Scalar is a UInt32).
            let alignment = r.withUnsafeBufferPointer { rs in
                h.withUnsafeBufferPointer { hs in
                    rs.withMemoryRebound(to: UInt32.self) { r32 in
                        hs.withMemoryRebound(to: UInt32.self) { h32 in
                            EditOperations.align(r32, h32, scratch: scratch, counts: &counts)
                        }
                    }
                }
            }
            alignments.append(alignment)
        }
        return CharacterOutput(references: refs, hypotheses: hyps, alignments: alignments, counts: counts)
    }
}
