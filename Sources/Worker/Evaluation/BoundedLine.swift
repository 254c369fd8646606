/// Splits a byte stream into lines, holding at most `limit` bytes of an unfinished line.
///
/// With an `onOverflow` handler, a line longer than the limit is reported once and its bytes are
/// dropped up to its end; without one, it is delivered in pieces of `limit` bytes.
struct BoundedLine {
    let limit: Int
    private var pending: [UInt8] = []
    private var discarding = false

    init(limit: Int) { self.limit = limit }

    mutating func append(_ bytes: ArraySlice<UInt8>, onLine: (ArraySlice<UInt8>) -> Void, onOverflow: (() -> Void)?) {
        var rest = bytes
        while !rest.isEmpty {
            guard let nl = rest.firstIndex(of: UInt8(ascii: "\n")) else {
                absorb(rest, onLine: onLine, onOverflow: onOverflow)
                return
            }
            absorb(rest[rest.startIndex..<nl], onLine: onLine, onOverflow: onOverflow)
            if discarding { discarding = false } else { onLine(pending[...]) }
            pending.removeAll(keepingCapacity: pending.count <= 4096)
            rest = rest[(nl + 1)...]
        }
    }

    /// Adds bytes of the current line (no newline among them).
    private mutating func absorb(_ bytes: ArraySlice<UInt8>, onLine: (ArraySlice<UInt8>) -> Void, onOverflow: (() -> Void)?) {
        guard !discarding else { return }
        var rest = bytes
        while pending.count + rest.count > limit {
            let room = limit - pending.count
            if let onOverflow {
                pending.removeAll()
                discarding = true
                onOverflow()
                return
            }
            pending.append(contentsOf: rest.prefix(room))
            onLine(pending[...])
            pending.removeAll(keepingCapacity: true)
            rest = rest.dropFirst(room)
        }
        pending.append(contentsOf: rest)
    }

    /// An unterminated last line, at end of file.
    var remainder: ArraySlice<UInt8>? { discarding || pending.isEmpty ? nil : pending[...] }
}
