import Foundation

/// Figures a fault-injection test measured, written to `.build/reliability/<name>.json` for
/// `scripts/reliability.sh`, which turns them into RELIABILITY.md.
enum ReliabilityFigures {
    static let directory = FixtureScript.fixtures.deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent(".build/reliability")

    static func record(_ name: String, _ figures: [String: Any]) {
        try? FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var doc = figures
        doc["test"] = name
        doc["recorded_at"] = ISO8601DateFormatter().string(from: Date())
        if let data = try? JSONSerialization.data(withJSONObject: doc, options: [.sortedKeys, .prettyPrinted]) {
            try? data.write(to: directory.appendingPathComponent("\(name).json"))
        }
    }
}
