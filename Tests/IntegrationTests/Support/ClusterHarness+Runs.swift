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
}
