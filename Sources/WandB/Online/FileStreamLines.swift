import Foundation
#if canImport(Glibc)
import Glibc
import Shared
#endif

/// Builders for the lines of the four file_stream files (reference §2.3).
public enum FileStreamLines {
    /// A `wandb-history.jsonl` line: `{"_step":N,…values…,"_timestamp":t,"_runtime":r}`.
    public static func history(_ row: WandbHistoryRow) -> String { row.jsonLine }

    /// A `wandb-events.jsonl` line: every key with the `system.` prefix (`gpu.0.gpu` →
    /// `system.gpu.0.gpu`), then `"_wandb":true`, `_timestamp`, `_runtime` (`updatestats.go`).
    public static func events(_ sample: WandbStatsSample) -> String {
        var parts: [String] = []
        for (key, value) in sample.values {
            let full = key.hasPrefix("system.") ? key : "system." + key
            parts.append(WandbValue.quote(full) + ":" + WandbValue.number(value).jsonText)
        }
        parts.append("\"_wandb\":true")
        parts.append("\"_timestamp\":" + WandbValue.number(sample.timestamp).jsonText)
        parts.append("\"_runtime\":" + WandbValue.number(sample.runtime).jsonText)
        return "{" + parts.joined(separator: ",") + "}"
    }

    public enum Stream: Sendable { case stdout, stderr }

    /// An `output.log` line in the legacy format: `"2026-11-25T02:42:23.782288 text"` (UTC,
    /// microseconds, no zone), stderr lines prefixed `ERROR `, an optional ` [label]`.
    public static func output(_ text: String, stream: Stream = .stdout, at date: Date, label: String? = nil) -> String {
        let prefix = stream == .stderr ? "ERROR " : ""
        let labelPart = label.map { " [\($0)]" } ?? ""
        return prefix + timestamp(date) + labelPart + " " + text
    }

    /// `2006-01-02T15:04:05.000000` in UTC.
    public static func timestamp(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        var seconds = time_t(floor(t))
        var micros = Int(((t - floor(t)) * 1_000_000).rounded())
        if micros >= 1_000_000 {
            seconds += 1
            micros -= 1_000_000
        }
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        let us = String(micros)
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
            + "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))."
            + String(repeating: "0", count: 6 - us.count) + us
    }

    /// Whether wandb-core would accept `line` (it drops lines of 10 MiB − 100 KiB and more).
    public static func isWithinLineLimit(_ line: String) -> Bool { line.utf8.count < FileStreamRequest.maxLineBytes }
}

/// The run summary (`wandb-summary.json`): the latest value of every key, the best-so-far
/// metrics (`val/best_text_loss`, `val/best_step`, `val/best_cer`), `_step`, `_runtime`,
/// `_timestamp` and `_wandb.runtime`. Sent whole at offset 0 on every change.
public struct WandbSummary: Sendable, Equatable {
    /// A metric whose minimum (or maximum) is kept under `bestKey`, with its step under `stepKey`.
    public struct BestMetric: Sendable, Equatable {
        public var source: String
        public var bestKey: String
        public var stepKey: String?
        public var minimize: Bool

        public init(source: String, bestKey: String, stepKey: String? = nil, minimize: Bool = true) {
            self.source = source
            self.bestKey = bestKey
            self.stepKey = stepKey
            self.minimize = minimize
        }
    }

    /// Validation text loss (best and its step) and character error rate.
    public static let standardBest: [BestMetric] = [
        BestMetric(source: "val/text_loss", bestKey: "val/best_text_loss", stepKey: "val/best_step"),
        BestMetric(source: "val/cer", bestKey: "val/best_cer", stepKey: "val/best_cer_step"),
    ]

    public var values: [String: WandbValue]
    public var best: [BestMetric]

    public init(values: [String: WandbValue] = [:], best: [BestMetric] = WandbSummary.standardBest) {
        self.values = values
        self.best = best
    }

    /// Folds a history row in; returns the ``BestMetric/source`` names that reached a new best.
    @discardableResult
    public mutating func apply(_ row: WandbHistoryRow) -> [String] {
        for (key, value) in row.values { values[key] = value }
        values["_step"] = .integer(row.step)
        values["_runtime"] = .number(row.runtime)
        values["_timestamp"] = .number(row.timestamp)
        values["_wandb"] = .json("{\"runtime\":\(Int(row.runtime.isFinite ? row.runtime : 0))}")
        var improved: [String] = []
        for metric in best {
            guard let v = row.values.first(where: { $0.key == metric.source })?.value, let x = Self.number(v), x.isFinite else { continue }
            let current = values[metric.bestKey].flatMap(Self.number)
            let better = current.map { metric.minimize ? x < $0 : x > $0 } ?? true
            if better {
                values[metric.bestKey] = .number(x)
                if let stepKey = metric.stepKey { values[stepKey] = .integer(row.step) }
                improved.append(metric.source)
            }
        }
        return improved
    }

    /// The summary line: one JSON object, keys sorted.
    public var jsonLine: String {
        "{" + values.keys.sorted().map { WandbValue.quote($0) + ":" + values[$0]!.jsonText }.joined(separator: ",") + "}"
    }

    private static func number(_ v: WandbValue) -> Double? {
        switch v {
        case .number(let d): d
        case .integer(let i): Double(i)
        default: nil
        }
    }
}

/// Media values for history rows.
public enum WandbMedia {
    /// An audio sample as W&B logs it: the history value
    /// `{"_type":"audio-file","sha256":…,"size":…,"path":"media/audio/<key>_<step>_<sha[:20]>.wav","caption":…}`
    /// and the run file to upload under that path (reference §5). `/` in `key` becomes `_`.
    public static func audio(key: String, step: Int64, localPath: String, caption: String? = nil)
        throws(WandbAPIError) -> (value: WandbValue, file: WandbRunFile) {
        let bytes: [UInt8]
        do { bytes = Array(try Data(contentsOf: URL(fileURLWithPath: localPath))) } catch {
            throw .localFile(path: localPath, detail: "\(error)")
        }
        let sha = SHA256.hash(bytes).hexString
        let ext = (localPath as NSString).pathExtension
        let safeKey = key.replacingOccurrences(of: "/", with: "_")
        let path = "media/audio/\(safeKey)_\(step)_\(sha.prefix(20))" + (ext.isEmpty ? ".wav" : ".\(ext)")
        var parts = [
            "\"_type\":\"audio-file\"", "\"sha256\":\(WandbValue.quote(sha))", "\"size\":\(bytes.count)",
            "\"path\":\(WandbValue.quote(path))",
        ]
        if let caption { parts.append("\"caption\":\(WandbValue.quote(caption))") }
        return (.json("{" + parts.joined(separator: ",") + "}"), WandbRunFile(runPath: path, localPath: localPath))
    }

    /// A table as W&B logs it: the history value
    /// `{"_type":"table-file","sha256":…,"size":…,"path":"media/table/<key>_<step>_<sha[:20]>.table.json","ncols":…,"nrows":…,"log_mode":"IMMUTABLE"}`
    /// and the generated run file `{"columns":[…],"data":[[…]…]}` under that path (what the SDK's
    /// `wandb.Table` writes; the SDK also logs a run-table artifact, which the W&B UI does not need
    /// to show the table). `/` in `key` is kept as a directory, as the SDK does.
    public static func table(key: String, step: Int64, columns: [String], rows: [[JSONValue]]) -> (value: WandbValue, file: WandbRunFile) {
        let body = "{\"columns\":[" + columns.map(WandbValue.quote).joined(separator: ",") + "],\"data\":["
            + rows.map { "[" + $0.map(cell).joined(separator: ",") + "]" }.joined(separator: ",") + "]}"
        let bytes = Array(body.utf8)
        let sha = SHA256.hash(bytes).hexString
        let path = "media/table/\(key)_\(step)_\(sha.prefix(20)).table.json"
        let value = "{" + [
            "\"_type\":\"table-file\"", "\"sha256\":\(WandbValue.quote(sha))", "\"size\":\(bytes.count)",
            "\"path\":\(WandbValue.quote(path))", "\"ncols\":\(columns.count)", "\"nrows\":\(rows.count)", "\"log_mode\":\"IMMUTABLE\"",
        ].joined(separator: ",") + "}"
        return (.json(value), WandbRunFile(runPath: path, content: bytes))
    }

    /// A table cell in JSON; non-finite numbers become `null` (a table file is plain JSON).
    private static func cell(_ v: JSONValue) -> String {
        switch v {
        case .null: "null"
        case .bool(let b): b ? "true" : "false"
        case .number(let d): d.isFinite ? WandbValue.number(d).jsonText : "null"
        case .string(let s): WandbValue.quote(s)
        case .array(let a): "[" + a.map(cell).joined(separator: ",") + "]"
        case .object(let o): "{" + o.keys.sorted().map { WandbValue.quote($0) + ":" + cell(o[$0]!) }.joined(separator: ",") + "}"
        }
    }
}
