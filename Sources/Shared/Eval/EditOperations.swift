/// One block of an alignment between a reference and a hypothesis token sequence: jiwer 4's
/// `AlignmentChunk` (rapidfuzz's opcode, with "replace" renamed "substitute"). Ranges are half-open
/// token indices, like Python's `ref_start_idx`/`ref_end_idx` and `hyp_start_idx`/`hyp_end_idx`.
public struct AlignmentChunk: Sendable, Equatable, Hashable, CustomStringConvertible {
    /// What the chunk does, by jiwer's names.
    public enum Kind: String, Sendable, Equatable, Hashable, CaseIterable {
        case equal, substitute, insert, delete
    }

    public let kind: Kind
    /// Token indices in the reference (`ref_start_idx..<ref_end_idx`); empty for an insertion.
    public let reference: Range<Int>
    /// Token indices in the hypothesis (`hyp_start_idx..<hyp_end_idx`); empty for a deletion.
    public let hypothesis: Range<Int>

    public init(kind: Kind, reference: Range<Int>, hypothesis: Range<Int>) {
        self.kind = kind
        self.reference = reference
        self.hypothesis = hypothesis
    }

    public var description: String {
        "\(kind.rawValue)(ref \(reference.lowerBound)..<\(reference.upperBound), hyp \(hypothesis.lowerBound)..<\(hypothesis.upperBound))"
    }
}

/// The Levenshtein alignment that jiwer 4 takes from `rapidfuzz.distance.Levenshtein.opcodes`,
/// reproduced so that hits, substitutions, deletions and insertions match rapidfuzz exactly.
///
/// Every minimal alignment gives the same distance (so WER and CER never depend on this), but
/// alignments of equal cost split it differently into S, D and I: `"a b"` vs `"b a"` is one hit,
/// one deletion and one insertion for rapidfuzz, not two substitutions. rapidfuzz's `editops`
/// (a Hyyrö bit-parallel matrix followed by a backtrack) is restated here as a plain DP:
///
/// 1. strip the common prefix and suffix;
/// 2. fill `D[i][j]` (i over the reference, j over the hypothesis, unit costs);
/// 3. from `(n, m)`, while `i > 0 && j > 0`: delete if `D[i][j] == D[i-1][j] + 1`; otherwise, if
///    `j - 1 > 0 && D[i][j-1] == D[i-1][j-1] - 1`, insert; otherwise take the diagonal (a
///    substitution when the tokens differ);
/// 4. emit the remaining deletions, then the remaining insertions;
///
/// then merges the edit operations into opcodes as `Editops.as_opcodes` does.
///
/// Limit: for one very long sentence pair (after the common affix is removed, roughly 2,000 or more
/// tokens on both sides with many differences) rapidfuzz's C++ switches to Hirschberg's algorithm,
/// whose ties may split differently. jiwer aligns sentence by sentence, so evaluation sentences never
/// get there; the distance (WER/CER) is exact at any size.
public enum EditOperations {
    /// The opcodes of `Levenshtein.opcodes(reference, hypothesis)`, tokens compared with `==`.
    /// Both empty gives no chunks, like rapidfuzz.
    public static func opcodes<T: Equatable>(reference: [T], hypothesis: [T]) -> [AlignmentChunk] {
        let ops = editops(reference: reference, hypothesis: hypothesis)
        return chunks(from: ops, referenceCount: reference.count, hypothesisCount: hypothesis.count)
    }

    /// One rapidfuzz `Editop`: the operation and its source (reference) and destination
    /// (hypothesis) positions, with rapidfuzz's position convention.
    struct Editop: Equatable {
        enum Tag { case replace, insert, delete }
        var tag: Tag
        var source: Int
        var destination: Int
    }

    /// rapidfuzz `Levenshtein.editops(reference, hypothesis)`, in order.
    static func editops<T: Equatable>(reference s1: [T], hypothesis s2: [T]) -> [Editop] {
        // 1. common affix
        var prefix = 0
        while prefix < s1.count, prefix < s2.count, s1[prefix] == s2[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < s1.count - prefix, suffix < s2.count - prefix,
              s1[s1.count - 1 - suffix] == s2[s2.count - 1 - suffix] { suffix += 1 }
        let n = s1.count - prefix - suffix
        let m = s2.count - prefix - suffix
        if n == 0 && m == 0 { return [] }

        // 2. the DP, row-major over i (reference), (m + 1) columns over j (hypothesis)
        let width = m + 1
        var d = [Int32](repeating: 0, count: (n + 1) * width)
        d.withUnsafeMutableBufferPointer { d in
            for j in 0...m { d[j] = Int32(j) }
            if n > 0 {
                for i in 1...n {
                    let row = i * width, above = row - width
                    d[row] = Int32(i)
                    let a = s1[prefix + i - 1]
                    if m > 0 {
                        for j in 1...m {
                            let cost: Int32 = a == s2[prefix + j - 1] ? 0 : 1
                            d[row + j] = min(d[above + j - 1] + cost, d[above + j] + 1, d[row + j - 1] + 1)
                        }
                    }
                }
            }
        }

        // 3. + 4. backtrack exactly as rapidfuzz's recover_alignment
        var reversed: [Editop] = []
        reversed.reserveCapacity(Int(d[n * width + m]))
        var col = n  // i, over the reference
        var row = m  // j, over the hypothesis
        func at(_ i: Int, _ j: Int) -> Int32 { d[i * width + j] }
        while row != 0 && col != 0 {
            if at(col, row) == at(col - 1, row) + 1 {
                col -= 1
                reversed.append(Editop(tag: .delete, source: col + prefix, destination: row + prefix))
            } else {
                row -= 1
                if row != 0 && at(col, row) == at(col - 1, row) - 1 {
                    reversed.append(Editop(tag: .insert, source: col + prefix, destination: row + prefix))
                } else {
                    col -= 1
                    if s1[prefix + col] != s2[prefix + row] {
                        reversed.append(Editop(tag: .replace, source: col + prefix, destination: row + prefix))
                    }
                }
            }
        }
        while col != 0 {
            col -= 1
            reversed.append(Editop(tag: .delete, source: col + prefix, destination: row + prefix))
        }
        while row != 0 {
            row -= 1
            reversed.append(Editop(tag: .insert, source: col + prefix, destination: row + prefix))
        }
        return reversed.reversed()
    }

    /// rapidfuzz `Editops.as_opcodes`: runs of the same operation at consecutive positions become one
    /// chunk, and the gaps between them (and after the last) become `equal` chunks.
    static func chunks(from ops: [Editop], referenceCount: Int, hypothesisCount: Int) -> [AlignmentChunk] {
        var blocks: [AlignmentChunk] = []
        var src = 0, dst = 0, i = 0
        while i < ops.count {
            if src < ops[i].source || dst < ops[i].destination {
                blocks.append(AlignmentChunk(kind: .equal, reference: src..<ops[i].source, hypothesis: dst..<ops[i].destination))
                src = ops[i].source
                dst = ops[i].destination
            }
            let srcBegin = src, dstBegin = dst, tag = ops[i].tag
            while i < ops.count, ops[i].tag == tag, src == ops[i].source, dst == ops[i].destination {
                switch tag {
                case .replace: src += 1; dst += 1
                case .insert: dst += 1
                case .delete: src += 1
                }
                i += 1
            }
            let kind: AlignmentChunk.Kind = switch tag {
            case .replace: .substitute
            case .insert: .insert
            case .delete: .delete
            }
            blocks.append(AlignmentChunk(kind: kind, reference: srcBegin..<src, hypothesis: dstBegin..<dst))
        }
        if src < referenceCount || dst < hypothesisCount {
            blocks.append(AlignmentChunk(kind: .equal, reference: src..<referenceCount, hypothesis: dst..<hypothesisCount))
        }
        return blocks
    }
}
