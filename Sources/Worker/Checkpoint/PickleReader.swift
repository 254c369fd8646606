import Foundation

/// A value decoded by ``PickleReader``: Python's plain data, plus inert descriptions of what a
/// real unpickler would have imported or called.
public indirect enum PickleValue: Sendable, Equatable {
    case none
    case bool(Bool)
    /// An int that fits in 64 bits.
    case int(Int64)
    /// An int that does not fit in 64 bits, in decimal (`-` first when negative).
    case bigInt(String)
    case float(Double)
    /// A `str` (and a protocol-2 `BINSTRING` that is valid UTF-8).
    case string(String)
    /// A `bytes` (and a `BINSTRING` that is not valid UTF-8).
    case bytes([UInt8])
    case list([PickleValue])
    case tuple([PickleValue])
    /// A `dict` or `collections.OrderedDict`, keys in insertion order.
    case dict([Entry])
    /// A reference to `module.name` (`GLOBAL`, `STACK_GLOBAL`); never imported.
    case global(module: String, name: String)
    /// The result of calling `callable` with `args` (`REDUCE`, `NEWOBJ`), never actually called.
    /// Sets are `builtins.set(list)` / `builtins.frozenset(list)`.
    case object(callable: PickleValue, args: PickleValue)
    /// A persistent id (`BINPERSID`, `PERSID`): what torch uses to refer to tensor storages.
    case persistentID(PickleValue)

    /// One key and value of a ``PickleValue/dict(_:)``.
    public struct Entry: Sendable, Equatable {
        public var key: PickleValue
        public var value: PickleValue
        public init(key: PickleValue, value: PickleValue) {
            self.key = key
            self.value = value
        }
    }

    /// For a dict, the value under the string `key`; nil for a missing key or a non-dict.
    public subscript(key: String) -> PickleValue? {
        guard case .dict(let entries) = self else { return nil }
        return entries.first { $0.key == .string(key) }?.value
    }

    /// Python's name for the value's type (`dict`, `int`, `torch._utils._rebuild_tensor_v2(...)`).
    public var typeName: String {
        switch self {
        case .none: "None"
        case .bool: "bool"
        case .int, .bigInt: "int"
        case .float: "float"
        case .string: "str"
        case .bytes: "bytes"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .global(let module, let name): "\(module).\(name)"
        case .object(let callable, _): "\(callable.typeName)(...)"
        case .persistentID: "persistent id"
        }
    }
}

extension PickleValue: CustomStringConvertible {
    /// A Python-like rendering, cut off after about 300 characters.
    public var description: String {
        var out = ""
        render(into: &out, budget: 300)
        return out
    }

    private func render(into out: inout String, budget: Int) {
        if out.count > budget { return }
        func items(_ values: [PickleValue], _ open: String, _ close: String) {
            out += open
            for (i, v) in values.enumerated() {
                if i > 0 { out += ", " }
                if out.count > budget { out += "…"; break }
                v.render(into: &out, budget: budget)
            }
            out += close
        }
        switch self {
        case .none: out += "None"
        case .bool(let b): out += b ? "True" : "False"
        case .int(let i): out += String(i)
        case .bigInt(let s): out += s
        case .float(let d): out += String(d)
        case .string(let s): out += "'" + (s.count > 200 ? String(s.prefix(200)) + "…" : s) + "'"
        case .bytes(let b): out += "b<\(b.count) bytes>"
        case .list(let v): items(v, "[", "]")
        case .tuple(let v): items(v, "(", v.count == 1 ? ",)" : ")")
        case .dict(let entries):
            out += "{"
            for (i, e) in entries.enumerated() {
                if i > 0 { out += ", " }
                if out.count > budget { out += "…"; break }
                e.key.render(into: &out, budget: budget)
                out += ": "
                e.value.render(into: &out, budget: budget)
            }
            out += "}"
        case .global(let module, let name): out += "\(module).\(name)"
        case .object(let callable, let args):
            callable.render(into: &out, budget: budget)
            if case .tuple(let a) = args { items(a, "(", ")") } else { out += "(*"; args.render(into: &out, budget: budget); out += ")" }
        case .persistentID(let pid): out += "persid("; pid.render(into: &out, budget: budget); out += ")"
        }
    }
}

/// A pickle that ``PickleReader`` could not decode: malformed, cut short, over a limit, or using
/// an opcode it does not support.
public struct PickleError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Where in the pickle the offending opcode starts.
    public let offset: Int
    public let message: String
    public init(offset: Int, message: String) {
        self.offset = offset
        self.message = message
    }
    public var description: String { "pickle byte \(offset): \(message)" }
}

/// A small, safe pickle decoder for the `data.pkl` of torch checkpoints (protocols 0–4, the
/// opcodes torch's pickler emits and their text forms).
///
/// Nothing is imported or executed: `GLOBAL` yields a ``PickleValue/global(module:name:)``,
/// `REDUCE`/`NEWOBJ` an inert ``PickleValue/object(callable:args:)`` — except that calling
/// `collections.OrderedDict` or `builtins.dict` makes a dict, so a state dict reads as one; `BUILD`
/// (torch sets an OrderedDict's `_metadata` with it) is ignored. Containers keep Python's sharing:
/// a list memoized with `PUT` and filled afterwards is seen filled through `GET`.
///
/// Not supported (an error naming the opcode): protocol 0's `STRING`, `INST` and `OBJ`, the
/// `EXT1/2/4` extension registry and protocol 5's out-of-band buffers — none of which torch writes.
///
/// Never traps, whatever the input: every read is bounds-checked, and the stack, memo, string
/// lengths, integer sizes and nesting depth are bounded by ``Limits``. Anything unexpected throws
/// ``PickleError`` with the offset of the opcode.
public enum PickleReader {
    /// Bounds on what a pickle may make the reader hold.
    public struct Limits: Sendable, Equatable {
        /// Values on the stack (all frames together), open marks, and containers made.
        public var stack = 1 << 22
        /// Memo entries.
        public var memo = 1 << 22
        /// Bytes of one string or bytes value.
        public var length = 64 << 20
        /// Bytes of one `LONG1`/`LONG4` integer (and 2.5 digits per byte for text integers).
        public var integerBytes = 1_024
        /// Containers nested in containers.
        public var depth = 200
        public init() {}
    }

    /// Decodes the pickle in `bytes` (up to its `STOP`; anything after is ignored).
    public static func read(_ bytes: [UInt8], limits: Limits = Limits()) throws(PickleError) -> PickleValue {
        var machine = PickleMachine(bytes: bytes, limits: limits)
        return try machine.run()
    }
}

/// The pickle virtual machine behind ``PickleReader``. Containers live in `heap` and are referred
/// to by index, so the memo and the stack share them the way Python's objects are shared.
private struct PickleMachine {
    enum Node {
        case scalar(PickleValue)
        case ref(Int)
    }

    struct Container {
        enum Kind: Equatable { case list, tuple, dict, set, frozenSet, object, persistentID }
        var kind: Kind
        /// list/tuple/set: the elements; dict: key, value, key, value, …; object: callable, args;
        /// persistentID: the id.
        var items: [Node]
        /// dict only: where each hashable key's value sits in `items`.
        var index: [Key: Int] = [:]
    }

    /// A dict key as Python hashes it (True == 1 == 1.0); unhashable or compound keys are not
    /// deduplicated.
    enum Key: Hashable {
        case none, int(Int64), bigInt(String), float(UInt64), string(String), bytes([UInt8]), global(String, String)
    }

    let bytes: [UInt8]
    let limits: PickleReader.Limits
    var pos = 0
    var opStart = 0
    var stack: [Node] = []
    var marks: [Int] = []
    var memo: [Int: Node] = [:]
    var heap: [Container] = []

    init(bytes: [UInt8], limits: PickleReader.Limits) {
        self.bytes = bytes
        self.limits = limits
    }

    // MARK: The loop

    mutating func run() throws(PickleError) -> PickleValue {
        while true {
            guard pos < bytes.count else { throw fail("the pickle ends without a STOP opcode") }
            opStart = pos
            let op = bytes[pos]
            pos += 1
            switch op {
            case 0x80: // PROTO
                let version = try byte()
                guard version <= 5 else { throw fail("unsupported pickle protocol \(version)") }
            case 0x95: // FRAME: a length prefix only; frames are read as one stream
                _ = try take(8)
            case 0x2E: // STOP
                let result = try pop()
                return try materialize(result)
            case 0x28: // MARK
                guard marks.count < limits.stack else { throw fail("more than \(limits.stack) open marks") }
                marks.append(stack.count)
            case 0x30: // POP (an empty frame pops its mark, as in CPython)
                if stack.count > floor { stack.removeLast() } else { _ = try popMark() }
            case 0x31: // POP_MARK
                _ = try popMark()
            case 0x32: // DUP
                try push(try peek())
            case 0x7D: // EMPTY_DICT
                try push(try allocate(.dict, []))
            case 0x5D: // EMPTY_LIST
                try push(try allocate(.list, []))
            case 0x29: // EMPTY_TUPLE
                try push(.scalar(.tuple([])))
            case 0x74: // TUPLE
                try push(try allocate(.tuple, try popMark()))
            case 0x85, 0x86, 0x87: // TUPLE1, TUPLE2, TUPLE3
                let n = Int(op - 0x84)
                guard stack.count - floor >= n else { throw fail("stack underflow: TUPLE\(n) needs \(n) values") }
                let items = Array(stack.suffix(n))
                stack.removeLast(n)
                try push(try allocate(.tuple, items))
            case 0x64: // DICT
                let items = try popMark()
                let dict = try allocate(.dict, [])
                try setItems(dict, items)
                try push(dict)
            case 0x6C: // LIST
                try push(try allocate(.list, try popMark()))
            case 0x73: // SETITEM
                let value = try pop()
                let key = try pop()
                try setItems(try peek(), [key, value])
            case 0x75: // SETITEMS
                let items = try popMark()
                try setItems(try peek(), items)
            case 0x61: // APPEND
                let value = try pop()
                try append(to: try peek(), [value], kind: .list, "APPEND")
            case 0x65: // APPENDS
                let items = try popMark()
                try append(to: try peek(), items, kind: .list, "APPENDS")
            case 0x4A: // BININT
                let b = try take(4)
                try push(.scalar(.int(Int64(Int32(bitPattern: Self.le32(b))))))
            case 0x4B: // BININT1
                try push(.scalar(.int(Int64(try byte()))))
            case 0x4D: // BININT2
                let b = try take(2)
                try push(.scalar(.int(Int64(b[b.startIndex]) | Int64(b[b.startIndex + 1]) << 8)))
            case 0x8A: // LONG1
                let n = Int(try byte())
                try push(.scalar(integer(try take(n))))
            case 0x8B: // LONG4
                let n = Int32(bitPattern: Self.le32(try take(4)))
                guard n >= 0 else { throw fail("LONG4 with a negative length") }
                guard Int(n) <= limits.integerBytes else { throw fail("a \(n)-byte integer, more than the \(limits.integerBytes) accepted") }
                try push(.scalar(integer(try take(Int(n)))))
            case 0x49: // INT (text; 00 and 01 are False and True)
                let line = try readLine()
                if line.elementsEqual("00".utf8) { try push(.scalar(.bool(false))) } else if line.elementsEqual("01".utf8) {
                    try push(.scalar(.bool(true)))
                } else { try push(.scalar(try decimal(line))) }
            case 0x4C: // LONG (text, with an optional trailing L)
                var line = try readLine()
                if line.last == UInt8(ascii: "L") { line = line.dropLast() }
                try push(.scalar(try decimal(line)))
            case 0x47: // BINFLOAT (big-endian)
                let b = try take(8)
                var bits: UInt64 = 0
                for x in b { bits = bits << 8 | UInt64(x) }
                try push(.scalar(.float(Double(bitPattern: bits))))
            case 0x46: // FLOAT (text)
                let line = try readLine()
                let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
                guard let d = Double(text) else { throw fail("FLOAT with an unreadable value") }
                try push(.scalar(.float(d)))
            case 0x4E: // NONE
                try push(.scalar(.none))
            case 0x88: // NEWTRUE
                try push(.scalar(.bool(true)))
            case 0x89: // NEWFALSE
                try push(.scalar(.bool(false)))
            case 0x58: // BINUNICODE
                try push(.scalar(.string(Self.text(try take(try length(Self.le32(try take(4))))))))
            case 0x56: // UNICODE (protocol 0: raw-unicode-escape text)
                try push(.scalar(.string(try rawUnicodeEscape(try readLine()))))
            case 0x8C: // SHORT_BINUNICODE
                try push(.scalar(.string(Self.text(try take(Int(try byte()))))))
            case 0x8D: // BINUNICODE8
                try push(.scalar(.string(Self.text(try take(try length(Self.le64(try take(8))))))))
            case 0x54: // BINSTRING (signed length)
                let n = Int32(bitPattern: Self.le32(try take(4)))
                guard n >= 0 else { throw fail("BINSTRING with a negative length") }
                try push(.scalar(Self.legacyString(try take(try length(UInt64(n))))))
            case 0x55: // SHORT_BINSTRING
                try push(.scalar(Self.legacyString(try take(Int(try byte())))))
            case 0x42: // BINBYTES
                try push(.scalar(.bytes(Array(try take(try length(Self.le32(try take(4))))))))
            case 0x43: // SHORT_BINBYTES
                try push(.scalar(.bytes(Array(try take(Int(try byte()))))))
            case 0x8E: // BINBYTES8
                try push(.scalar(.bytes(Array(try take(try length(Self.le64(try take(8))))))))
            case 0x71: // BINPUT
                try put(Int(try byte()))
            case 0x72: // LONG_BINPUT
                try put(Int(Self.le32(try take(4))))
            case 0x70: // PUT
                try put(try memoIndex(try readLine()))
            case 0x94: // MEMOIZE
                try put(memo.count)
            case 0x68: // BINGET
                try get(Int(try byte()))
            case 0x6A: // LONG_BINGET
                try get(Int(Self.le32(try take(4))))
            case 0x67: // GET
                try get(try memoIndex(try readLine()))
            case 0x63: // GLOBAL
                let module = Self.text(try readLine())
                let name = Self.text(try readLine())
                try push(.scalar(Self.global(module, name)))
            case 0x93: // STACK_GLOBAL
                let name = try pop()
                let module = try pop()
                guard case .scalar(.string(let n)) = name, case .scalar(.string(let m)) = module else {
                    throw fail("STACK_GLOBAL needs two strings")
                }
                try push(.scalar(Self.global(m, n)))
            case 0x52: // REDUCE
                let args = try pop()
                let callable = try pop()
                try push(try call(callable, args))
            case 0x62: // BUILD: state is not applied (torch's OrderedDict._metadata; opaque objects)
                _ = try pop()
                _ = try peek()
            case 0x81: // NEWOBJ
                let args = try pop()
                let cls = try pop()
                try push(try call(cls, args, fillDict: false))
            case 0x92: // NEWOBJ_EX
                _ = try pop() // kwargs
                let args = try pop()
                let cls = try pop()
                try push(try call(cls, args, fillDict: false))
            case 0x51: // BINPERSID
                let pid = try pop()
                try push(try allocate(.persistentID, [pid]))
            case 0x50: // PERSID
                let pid = Self.text(try readLine())
                try push(try allocate(.persistentID, [.scalar(.string(pid))]))
            case 0x8F: // EMPTY_SET
                try push(try allocate(.set, []))
            case 0x90: // ADDITEMS
                let items = try popMark()
                try append(to: try peek(), items, kind: .set, "ADDITEMS")
            case 0x91: // FROZENSET
                try push(try allocate(.frozenSet, try popMark()))
            default:
                let printable = (0x21...0x7E).contains(op) ? " ('\(Character(Unicode.Scalar(op)))')" : ""
                throw fail(String(format: "unknown or unsupported opcode 0x%02x", op) + printable)
            }
        }
    }

    // MARK: Reading

    func fail(_ message: String) -> PickleError {
        PickleError(offset: opStart, message: message)
    }

    mutating func byte() throws(PickleError) -> UInt8 {
        guard pos < bytes.count else { throw fail("the pickle ends inside an opcode's argument") }
        defer { pos += 1 }
        return bytes[pos]
    }

    mutating func take(_ n: Int) throws(PickleError) -> ArraySlice<UInt8> {
        guard n >= 0, n <= bytes.count - pos else {
            throw fail("the pickle ends inside an opcode's argument (\(n) bytes wanted, \(bytes.count - pos) left)")
        }
        defer { pos += n }
        return bytes[pos..<(pos + n)]
    }

    /// A length read from the pickle, checked against the limit and the bytes left.
    func length<T: BinaryInteger>(_ n: T) throws(PickleError) -> Int {
        guard n >= 0, n <= T(clamping: limits.length) else {
            throw fail("a \(n)-byte value, more than the \(limits.length) accepted")
        }
        guard n <= T(clamping: bytes.count - pos) else {
            throw fail("a \(n)-byte value runs past the end of the pickle (\(bytes.count - pos) bytes left)")
        }
        return Int(n)
    }

    /// The bytes up to the next newline (which is consumed).
    mutating func readLine() throws(PickleError) -> ArraySlice<UInt8> {
        guard let newline = bytes[pos...].firstIndex(of: 0x0A) else {
            throw fail("the pickle ends inside a text argument (no newline)")
        }
        defer { pos = newline + 1 }
        return bytes[pos..<newline]
    }

    static func le32(_ b: ArraySlice<UInt8>) -> UInt32 {
        let i = b.startIndex
        return UInt32(b[i]) | UInt32(b[i + 1]) << 8 | UInt32(b[i + 2]) << 16 | UInt32(b[i + 3]) << 24
    }

    static func le64(_ b: ArraySlice<UInt8>) -> UInt64 {
        UInt64(le32(b)) | UInt64(le32(b.dropFirst(4))) << 32
    }

    /// UTF-8 text; invalid sequences become U+FFFD.
    static func text(_ b: ArraySlice<UInt8>) -> String { String(decoding: b, as: UTF8.self) }

    /// Python's raw-unicode-escape: bytes are Latin-1 characters, except `\\uXXXX` and
    /// `\\UXXXXXXXX` after an odd run of backslashes. Surrogates become U+FFFD.
    func rawUnicodeEscape(_ b: ArraySlice<UInt8>) throws(PickleError) -> String {
        var out = String.UnicodeScalarView()
        var i = b.startIndex
        var backslashes = 0
        while i < b.endIndex {
            let c = b[i]
            if c == UInt8(ascii: "\\"), backslashes % 2 == 0, i + 1 < b.endIndex,
               b[i + 1] == UInt8(ascii: "u") || b[i + 1] == UInt8(ascii: "U") {
                let width = b[i + 1] == UInt8(ascii: "u") ? 4 : 8
                guard i + 2 + width <= b.endIndex,
                      let code = UInt32(String(decoding: b[(i + 2)..<(i + 2 + width)], as: UTF8.self), radix: 16) else {
                    throw fail("UNICODE with a truncated \\u escape")
                }
                guard code <= 0x10FFFF else { throw fail("UNICODE with an escape beyond U+10FFFF") }
                out.append(Unicode.Scalar(code) ?? "\u{FFFD}")
                i += 2 + width
                backslashes = 0
                continue
            }
            backslashes = c == UInt8(ascii: "\\") ? backslashes + 1 : 0
            out.append(Unicode.Scalar(c))
            i += 1
        }
        return String(out)
    }

    /// A protocol-2 `str` of Python 2: text when it is valid UTF-8, else bytes.
    static func legacyString(_ b: ArraySlice<UInt8>) -> PickleValue {
        if let s = String(validating: b, as: UTF8.self) { return .string(s) }
        return .bytes(Array(b))
    }

    /// A global, with Python 2's module names mapped as Python 3's unpickler does.
    static func global(_ module: String, _ name: String) -> PickleValue {
        switch module {
        case "__builtin__": .global(module: "builtins", name: name)
        case "copy_reg": .global(module: "copyreg", name: name)
        default: .global(module: module, name: name)
        }
    }

    /// A little-endian two's-complement integer (`LONG1`, `LONG4`).
    func integer(_ b: ArraySlice<UInt8>) -> PickleValue {
        guard let last = b.last else { return .int(0) }
        let negative = last & 0x80 != 0
        let fill: UInt8 = negative ? 0xFF : 0
        var n = b.count // drop redundant sign-extension bytes
        while n > 1, b[b.startIndex + n - 1] == fill, (b[b.startIndex + n - 2] & 0x80) == (fill & 0x80) { n -= 1 }
        if n <= 8 {
            var bits: UInt64 = 0
            for i in 0..<8 { bits |= UInt64(i < n ? b[b.startIndex + i] : fill) << UInt64(8 * i) }
            return .int(Int64(bitPattern: bits))
        }
        // Magnitude in 32-bit limbs, then repeated division by 10^9.
        var magnitude = Array(b.prefix(n))
        if negative { // two's complement negation
            var carry = 1
            for i in magnitude.indices {
                let v = Int(~magnitude[i]) + carry
                magnitude[i] = UInt8(truncatingIfNeeded: v)
                carry = v >> 8
            }
        }
        var limbs: [UInt32] = stride(from: 0, to: magnitude.count, by: 4).map { start in
            var v: UInt32 = 0
            for k in 0..<4 where start + k < magnitude.count { v |= UInt32(magnitude[start + k]) << UInt32(8 * k) }
            return v
        }
        var chunks: [UInt32] = []
        while limbs.contains(where: { $0 != 0 }) {
            var remainder: UInt64 = 0
            for i in limbs.indices.reversed() {
                let v = remainder << 32 | UInt64(limbs[i])
                limbs[i] = UInt32(v / 1_000_000_000)
                remainder = v % 1_000_000_000
            }
            chunks.append(UInt32(remainder))
        }
        var digits = String(chunks.last ?? 0)
        for chunk in chunks.dropLast().reversed() {
            let s = String(chunk)
            digits += String(repeating: "0", count: 9 - s.count) + s
        }
        return .bigInt(negative ? "-" + digits : digits)
    }

    /// A decimal integer in text (`INT`, `LONG`): an int, or a bigInt when it does not fit.
    func decimal(_ line: ArraySlice<UInt8>) throws(PickleError) -> PickleValue {
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        var digits = Substring(text)
        var negative = false
        if let sign = digits.first, sign == "-" || sign == "+" {
            negative = sign == "-"
            digits = digits.dropFirst()
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) else {
            throw fail("an integer that is not a decimal number")
        }
        guard digits.count <= limits.integerBytes * 5 / 2 else {
            throw fail("a \(digits.count)-digit integer, more than accepted")
        }
        if let v = Int64(text) { return .int(v) }
        let trimmed = digits.drop { $0 == "0" }
        return .bigInt((negative ? "-" : "") + trimmed)
    }

    func memoIndex(_ line: ArraySlice<UInt8>) throws(PickleError) -> Int {
        guard let i = Int(String(decoding: line, as: UTF8.self)), i >= 0 else {
            throw fail("a memo index that is not a non-negative number")
        }
        return i
    }

    // MARK: Stack, memo and containers

    /// The bottom of the current frame: values below the last mark cannot be popped.
    var floor: Int { marks.last ?? 0 }

    mutating func push(_ node: Node) throws(PickleError) {
        guard stack.count < limits.stack else { throw fail("more than \(limits.stack) values on the stack") }
        stack.append(node)
    }

    mutating func pop() throws(PickleError) -> Node {
        guard stack.count > floor else { throw fail("stack underflow") }
        return stack.removeLast()
    }

    func peek() throws(PickleError) -> Node {
        guard stack.count > floor else { throw fail("stack underflow") }
        return stack[stack.count - 1]
    }

    mutating func popMark() throws(PickleError) -> [Node] {
        guard let mark = marks.popLast() else { throw fail("no MARK to pop to") }
        let items = Array(stack[mark...])
        stack.removeSubrange(mark...)
        return items
    }

    mutating func put(_ index: Int) throws(PickleError) {
        let value = try peek()
        guard memo[index] != nil || memo.count < limits.memo else { throw fail("more than \(limits.memo) memo entries") }
        memo[index] = value
    }

    mutating func get(_ index: Int) throws(PickleError) {
        guard let value = memo[index] else { throw fail("memo entry \(index) was never stored") }
        try push(value)
    }

    mutating func allocate(_ kind: Container.Kind, _ items: [Node]) throws(PickleError) -> Node {
        guard heap.count < limits.stack else { throw fail("more than \(limits.stack) containers") }
        heap.append(Container(kind: kind, items: items))
        return .ref(heap.count - 1)
    }

    mutating func setItems(_ target: Node, _ items: [Node]) throws(PickleError) {
        guard items.count % 2 == 0 else { throw fail("SETITEMS/DICT with an odd number of values") }
        guard case .ref(let i) = target, heap[i].kind == .dict else {
            throw fail("SETITEM(S) on a \(describe(target)), not a dict")
        }
        for p in stride(from: 0, to: items.count, by: 2) {
            let key = items[p]
            if let k = hashKey(key) {
                if let at = heap[i].index[k] {
                    heap[i].items[at] = items[p + 1]
                } else {
                    heap[i].items.append(key)
                    heap[i].items.append(items[p + 1])
                    heap[i].index[k] = heap[i].items.count - 1
                }
            } else {
                heap[i].items.append(key)
                heap[i].items.append(items[p + 1])
            }
        }
    }

    mutating func append(to target: Node, _ items: [Node], kind: Container.Kind, _ opcode: String) throws(PickleError) {
        guard case .ref(let i) = target, heap[i].kind == kind else {
            throw fail("\(opcode) to a \(describe(target)), not a \(kind == .set ? "set" : "list")")
        }
        heap[i].items.append(contentsOf: items)
    }

    /// `REDUCE`/`NEWOBJ`: a dict for `OrderedDict`/`dict` (filled from `REDUCE`'s argument when it
    /// is a sequence of pairs), an inert object for anything else.
    mutating func call(_ callable: Node, _ args: Node, fillDict: Bool = true) throws(PickleError) -> Node {
        if case .scalar(.global(let module, let name)) = callable,
           (module == "collections" && name == "OrderedDict") || (module == "builtins" && name == "dict") {
            let dict = try allocate(.dict, [])
            if fillDict, case .ref(let a) = args, heap[a].kind == .tuple, heap[a].items.count == 1,
               case .ref(let s) = heap[a].items[0], heap[s].kind == .list || heap[s].kind == .tuple {
                for pair in heap[s].items {
                    if case .ref(let t) = pair, heap[t].kind == .tuple, heap[t].items.count == 2 {
                        try setItems(dict, heap[t].items)
                    }
                }
            }
            return dict
        }
        return try allocate(.object, [callable, args])
    }

    func hashKey(_ node: Node) -> Key? {
        guard case .scalar(let v) = node else { return nil }
        switch v {
        case .none: return Key.none
        case .bool(let b): return .int(b ? 1 : 0)
        case .int(let i): return .int(i)
        case .bigInt(let s): return .bigInt(s)
        case .float(let d):
            if d.isNaN { return nil }
            if d == d.rounded(), let i = Int64(exactly: d) { return .int(i) }
            return .float((d == 0 ? 0 : d).bitPattern)
        case .string(let s): return .string(s)
        case .bytes(let b): return .bytes(b)
        case .global(let m, let n): return .global(m, n)
        default: return nil
        }
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let v): return v.typeName
        case .ref(let i):
            switch heap[i].kind {
            case .list: return "list"
            case .tuple: return "tuple"
            case .dict: return "dict"
            case .set: return "set"
            case .frozenSet: return "frozenset"
            case .object: return "object"
            case .persistentID: return "persistent id"
            }
        }
    }

    // MARK: Building the result

    /// Turns the heap graph under `root` into a value. Shared containers are converted once (the
    /// copies share storage); a container inside itself, or nesting past the limit, is an error.
    func materialize(_ root: Node) throws(PickleError) -> PickleValue {
        var done = [PickleValue?](repeating: nil, count: heap.count)
        var heights = [Int](repeating: 0, count: heap.count) // of converted containers
        var visiting = [Bool](repeating: false, count: heap.count)
        func convert(_ node: Node, depth: Int) throws(PickleError) -> PickleValue {
            guard case .ref(let i) = node else {
                if case .scalar(let v) = node { return v }
                return .none
            }
            if let v = done[i] { return v }
            guard !visiting[i] else { throw fail("a \(describe(node)) contains itself (recursive containers are not supported)") }
            // Both the path (the recursion) and the height of the result (which a shared,
            // already converted container can add to) stay within the limit.
            guard depth < limits.depth else { throw fail("containers nested more than \(limits.depth) deep") }
            visiting[i] = true
            let container = heap[i]
            var parts: [PickleValue] = []
            parts.reserveCapacity(container.items.count)
            var height = 1
            for item in container.items {
                parts.append(try convert(item, depth: depth + 1))
                if case .ref(let j) = item { height = max(height, heights[j] + 1) }
            }
            guard height <= limits.depth else { throw fail("containers nested more than \(limits.depth) deep") }
            heights[i] = height
            visiting[i] = false
            let value: PickleValue
            switch container.kind {
            case .list: value = .list(parts)
            case .tuple: value = .tuple(parts)
            case .dict:
                value = .dict(stride(from: 0, to: parts.count - 1, by: 2).map { PickleValue.Entry(key: parts[$0], value: parts[$0 + 1]) })
            case .set: value = .object(callable: .global(module: "builtins", name: "set"), args: .tuple([.list(parts)]))
            case .frozenSet: value = .object(callable: .global(module: "builtins", name: "frozenset"), args: .tuple([.list(parts)]))
            case .object: value = .object(callable: parts[0], args: parts[1])
            case .persistentID: value = .persistentID(parts[0])
            }
            done[i] = value
            return value
        }
        return try convert(root, depth: 0)
    }
}
