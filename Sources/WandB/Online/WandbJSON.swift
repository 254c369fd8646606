import Foundation
import Shared

/// The JSON writing and reading the online client needs: deterministic output (sorted keys,
/// integers without a fraction, NaN/±Inf unquoted like wandb-core) and tolerant lookups.
enum WandbJSON {
    /// `value` as compact JSON text, object keys sorted.
    static func encode(_ value: JSONValue) -> String {
        var out = ""
        write(value, into: &out)
        return out
    }

    static func write(_ value: JSONValue, into out: inout String) {
        switch value {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let d): out += WandbValue.number(d).jsonText
        case .string(let s): out += WandbValue.quote(s)
        case .array(let items):
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                write(item, into: &out)
            }
            out += "]"
        case .object(let dict):
            out += "{"
            for (i, key) in dict.keys.sorted().enumerated() {
                if i > 0 { out += "," }
                out += WandbValue.quote(key)
                out += ":"
                write(dict[key]!, into: &out)
            }
            out += "}"
        }
    }

    /// An object with its members in the given order; values are already JSON text.
    static func orderedObject(_ members: [(String, String)]) -> String {
        "{" + members.map { WandbValue.quote($0.0) + ":" + $0.1 }.joined(separator: ",") + "}"
    }

    /// An object with its members in the given order.
    static func orderedObject(_ members: [(String, JSONValue)]) -> String {
        orderedObject(members.map { ($0.0, encode($0.1)) })
    }

    static func parse(_ bytes: [UInt8]) -> JSONValue? {
        try? JSONDecoder().decode(JSONValue.self, from: Data(bytes))
    }

    /// `value[k0][k1]…`, nil when a step is missing or not an object.
    static func get(_ value: JSONValue?, _ path: String...) -> JSONValue? {
        var v = value
        for key in path {
            guard case .object(let dict)? = v else { return nil }
            v = dict[key]
        }
        return v
    }

    static func string(_ value: JSONValue?) -> String? {
        if case .string(let s)? = value { return s }
        return nil
    }

    static func int(_ value: JSONValue?) -> Int? {
        if case .number(let d)? = value, d.isFinite { return Int(d) }
        return nil
    }

    static func bool(_ value: JSONValue?) -> Bool? {
        if case .bool(let b)? = value { return b }
        return nil
    }

    static func array(_ value: JSONValue?) -> [JSONValue]? {
        if case .array(let a)? = value { return a }
        return nil
    }

    static func optionalString(_ s: String?) -> JSONValue { s.map { .string($0) } ?? .null }
}
