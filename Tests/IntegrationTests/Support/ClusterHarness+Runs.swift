import ClusterAdmin
import Foundation
import Shared
import Testing

/// Reading a run through the CLI, as the training tests do.
extension ClusterHarness {
    /// Submits a job spec's text (written to a file in the test's directory).
    func submitJob(_ text: String) throws -> SubmitReply {
        let file = dir.appendingPathComponent("job-\(UUID().uuidString.prefix(6)).yaml").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return try cliJSON(["submit", file], as: SubmitReply.self)
    }

    func runSummary(_ id: String) throws -> RunSummary {
        try #require(try cliJSON(["runs"], as: [RunSummary].self).first { $0.id == id })
    }

    func series(_ run: String, _ key: String) throws -> [MetricsReport.Point] {
        try cliJSON(["metrics", run, "--key", key], as: MetricsReport.self).series ?? []
    }

    /// The run's log lines (`tts-coordinator logs RUN`).
    func runLogLines(_ run: String) throws -> [String] {
        let r = try cli(["logs", run, "--tail", "100000"])
        guard r.status == 0 else { throw HarnessError("logs \(run) failed: \(r.err)") }
        return r.out.split(separator: "\n").map(String.init)
    }

    /// Records an issue unless `run` logged `keys` at the same steps as `reference`, each value
    /// within `tolerance` (relative above 1): a gang against its one-process run.
    func expectSameSeries(_ run: String, as reference: String, keys: [String], tolerance: Double = 1e-4,
                          sourceLocation: SourceLocation = #_sourceLocation) throws {
        for key in keys {
            let a = try series(run, key), b = try series(reference, key)
            #expect(a.map(\.step) == b.map(\.step) && !a.isEmpty, "\(key): every step once, the same steps: \(a.map(\.step))", sourceLocation: sourceLocation)
            for (x, y) in zip(a, b) {
                guard let u = x.value, let v = y.value else {
                    Issue.record("\(key) at step \(x.step): no value", sourceLocation: sourceLocation)
                    continue
                }
                #expect(abs(u - v) <= tolerance * max(1, abs(v)), "\(key) at step \(x.step): \(run) \(u) vs \(reference) \(v)", sourceLocation: sourceLocation)
            }
        }
    }
}
