import Foundation
import Shared

/// `sleep`: waits `seconds` (default 1) in `steps` steps (default 10), reporting progress.
/// `fail_attempts: N` makes the first N attempts fail (for retry tests and demos).
public struct SleepExecutor: ShardExecutor {
    public let kind = "sleep"
    public init() {}

    public func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport {
        let p = context.parameters
        let seconds = p["seconds"]?.doubleValue ?? 1
        let steps = max(1, Int64(p["steps"]?.doubleValue ?? 10))
        if let failing = p["fail_attempts"]?.doubleValue, Double(assignment.attempt) <= failing {
            return ShardReport(outcome: .failed, message: "failed on purpose (attempt \(assignment.attempt) of the first \(Int(failing)))")
        }
        guard seconds >= 0, seconds <= 86_400 else {
            return ShardReport(outcome: .failed, message: "sleep: seconds must be between 0 and 86400 (got \(seconds))")
        }
        let started = Date()
        for step in 1...steps {
            try await Task.sleep(for: .milliseconds(Int(seconds * 1000 / Double(steps))))
            context.progress(step: step, of: steps)
        }
        let output = try JSONCoding.encode(["slept_seconds": JSONValue.number(Date().timeIntervalSince(started)), "pid": .number(Double(getpid()))])
        return ShardReport(outcome: .succeeded, message: String(format: "slept %.2f s", seconds), output: output)
    }
}

/// `echo`: returns its `text` parameter as output.
public struct EchoExecutor: ShardExecutor {
    public let kind = "echo"
    public init() {}

    public func run(_ assignment: ShardAssignment, context: ShardContext) async throws -> ShardReport {
        let text = context.parameters["text"]?.stringValue ?? ""
        context.progress(step: 1, of: 1)
        return ShardReport(outcome: .succeeded, message: "echo", output: try JSONCoding.encode(["text": text]))
    }
}
