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

// MARK: - The batch kernel

/// Reusable buffers for aligning many sentence pairs with ``EditOperations/align(_:_:scratch:counts:)``
/// without allocating per pair (the DP matrix and the edit operations only grow).
final class AlignmentScratch {
    /// The DP matrix, row-major, `(n + 1) × (m + 1)`.
    fileprivate var matrix: [Int32] = []
    /// Edit operations of the current pair in backtrack (reverse) order: tag (0 replace, 1 insert,
    /// 2 delete), source and destination.
    fileprivate var tags: [UInt8] = []
    fileprivate var sources: [Int32] = []
    fileprivate var destinations: [Int32] = []

    init() {}

    fileprivate func reserve(matrix cells: Int, ops: Int) {
        if matrix.count < cells { matrix = [Int32](repeating: 0, count: Swift.max(cells, 2 * matrix.count)) }
        if tags.count < ops {
            let size = Swift.max(ops, 2 * tags.count, 64)
            tags = [UInt8](repeating: 0, count: size)
            sources = [Int32](repeating: 0, count: size)
            destinations = [Int32](repeating: 0, count: size)
        }
    }
}

extension EditOperations {
    /// ``opcodes(reference:hypothesis:)`` for token ids in unsafe buffers, adding the alignment's
    /// H/S/D/I to `counts`: the same DP, the same backtrack (rapidfuzz's `recover_alignment`) and
    /// the same `as_opcodes` merge, with the matrix and the edit operations in `scratch`.
    static func align(_ s1: UnsafeBufferPointer<UInt32>, _ s2: UnsafeBufferPointer<UInt32>,
                      scratch: AlignmentScratch, counts: inout EditCounts) -> [AlignmentChunk] {
        let count1 = s1.count, count2 = s2.count
        // 1. common affix
        var prefix = 0
        while prefix < count1, prefix < count2, s1[prefix] == s2[prefix] { prefix += 1 }
        var suffix = 0
        while suffix < count1 - prefix, suffix < count2 - prefix, s1[count1 - 1 - suffix] == s2[count2 - 1 - suffix] { suffix += 1 }
        let n = count1 - prefix - suffix
        let m = count2 - prefix - suffix
        if n == 0 && m == 0 {
            counts.hits += count1
            return count1 == 0 && count2 == 0 ? [] : [AlignmentChunk(kind: .equal, reference: 0..<count1, hypothesis: 0..<count2)]
        }
        let width = m + 1
        scratch.reserve(matrix: (n + 1) * width, ops: n + m)
        var opCount = 0
        var substitutions = 0, deletions = 0, insertions = 0
        scratch.matrix.withUnsafeMutableBufferPointer { dm in
            let d = dm.baseAddress!
            // (An empty side may have no base address; it is then never read.)
            let none = UnsafePointer<UInt32>(bitPattern: MemoryLayout<UInt32>.alignment)!
            let a = (s1.baseAddress ?? none) + prefix, b = (s2.baseAddress ?? none) + prefix
            // 2. the DP
            for j in 0...m { d[j] = Int32(j) }
            if n > 0 {
                for i in 1...n {
                    let row = d + i * width, above = row - width
                    var left = Int32(i)
                    row[0] = left
                    let token = a[i - 1]
                    var j = 1
                    while j <= m {
                        let diagonal = above[j - 1] + (token == b[j - 1] ? 0 : 1)
                        let value = Swift.min(diagonal, Swift.min(above[j], left) + 1)
                        row[j] = value
                        left = value
                        j += 1
                    }
                }
            }
            // 3. + 4. the backtrack, operations stored in reverse order
            scratch.tags.withUnsafeMutableBufferPointer { tags in
                scratch.sources.withUnsafeMutableBufferPointer { sources in
                    scratch.destinations.withUnsafeMutableBufferPointer { destinations in
                        @inline(__always) func push(_ tag: UInt8, _ source: Int, _ destination: Int) {
                            tags[opCount] = tag
                            sources[opCount] = Int32(source + prefix)
                            destinations[opCount] = Int32(destination + prefix)
                            opCount += 1
                        }
                        var col = n, row = m
                        while row != 0 && col != 0 {
                            let here = d[col * width + row]
                            if here == d[(col - 1) * width + row] + 1 {
                                col -= 1
                                push(2, col, row); deletions += 1
                            } else {
                                row -= 1
                                if row != 0 && d[col * width + row] == d[(col - 1) * width + row] - 1 {
                                    push(1, col, row); insertions += 1
                                } else {
                                    col -= 1
                                    if a[col] != b[row] { push(0, col, row); substitutions += 1 }
                                }
                            }
                        }
                        while col != 0 { col -= 1; push(2, col, row); deletions += 1 }
                        while row != 0 { row -= 1; push(1, col, row); insertions += 1 }
                    }
                }
            }
        }
        counts.substitutions += substitutions
        counts.deletions += deletions
        counts.insertions += insertions
        counts.hits += count1 - substitutions - deletions
        return scratch.tags.withUnsafeBufferPointer { tags in
            scratch.sources.withUnsafeBufferPointer { sources in
                scratch.destinations.withUnsafeBufferPointer { destinations in
                    // as_opcodes over the operations in forward order (index opCount - 1 - k).
                    func blocks(_ emit: (AlignmentChunk.Kind, Range<Int>, Range<Int>) -> Void) {
                        var src = 0, dst = 0, k = opCount - 1
                        while k >= 0 {
                            let opSource = Int(sources[k]), opDestination = Int(destinations[k])
                            if src < opSource || dst < opDestination {
                                emit(.equal, src..<opSource, dst..<opDestination)
                                src = opSource
                                dst = opDestination
                            }
                            let srcBegin = src, dstBegin = dst, tag = tags[k]
                            while k >= 0, tags[k] == tag, src == Int(sources[k]), dst == Int(destinations[k]) {
                                switch tag {
                                case 0: src += 1; dst += 1
                                case 1: dst += 1
                                default: src += 1
                                }
                                k -= 1
                            }
                            let kind: AlignmentChunk.Kind = tag == 0 ? .substitute : tag == 1 ? .insert : .delete
                            emit(kind, srcBegin..<src, dstBegin..<dst)
                        }
                        if src < count1 || dst < count2 { emit(.equal, src..<count1, dst..<count2) }
                    }
                    var total = 0
                    blocks { _, _, _ in total += 1 }
                    var chunks: [AlignmentChunk] = []
                    chunks.reserveCapacity(total)
                    blocks { chunks.append(AlignmentChunk(kind: $0, reference: $1, hypothesis: $2)) }
                    return chunks
                }
            }
        }
    }
}
