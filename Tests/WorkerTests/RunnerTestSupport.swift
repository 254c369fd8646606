import Foundation
import Synchronization
import Testing
@testable import Worker
#if canImport(Glibc)
import Glibc
#endif

/// Helpers shared by the command runner's and the train executor's tests.
enum RunnerTestSupport {
    /// True while `pid` is a running process (a zombie — exited, never reaped by an init that does
    /// not reap orphans — is not running).
    static func isRunning(_ pid: Int32) -> Bool {
        kill(pid, 0) == 0 && (ProcessStat.read(pid: pid)?.isRunning ?? false)
    }

    /// Polls `condition` every 50 ms for up to `seconds`; true if it held.
    static func eventually(within seconds: Double, _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        while ContinuousClock.now < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return condition()
    }

    /// The pids the fixture trainer wrote to `<output>/children.pids`.
    static func childPids(in outputDir: String) -> [Int32] {
        let text = (try? String(contentsOfFile: outputDir + "/children.pids", encoding: .utf8)) ?? ""
        return text.split(whereSeparator: \.isNewline).compactMap { Int32($0) }
    }

    /// `python fake_trainer.py ARGS` as an argv, with the fixture venv's python.
    static func trainerArgv(_ arguments: [String]) throws -> [String] {
        [try TrainerFixture.python(), TrainerFixture.fixtures.appendingPathComponent("fake_trainer.py").path] + arguments
    }
}

/// Collects a runner's lines in the background, so a test can look at them while it runs.
final class LineCollector: Sendable {
    private let task: Task<Void, Never>

    init(_ runner: CommandRunner) {
        let lines = runner.lines
        let store = Store()
        task = Task { for await line in lines { store.append(line) } }
        self.sink = store
    }

    private let sink: Store

    /// Every line so far.
    var lines: [CommandOutputLine] { sink.all }
    /// The texts of one stream's lines so far.
    func texts(_ stream: CommandOutputLine.Stream) -> [String] { sink.all.filter { $0.stream == stream }.map(\.text) }
    /// True once a line containing `text` arrived.
    func saw(_ text: String) -> Bool { sink.all.contains { $0.text.contains(text) } }
    /// Waits until the runner's line stream has finished, and returns every line.
    func finished() async -> [CommandOutputLine] {
        await task.value
        return sink.all
    }

    private final class Store: Sendable {
        private let lines = Mutex<[CommandOutputLine]>([])
        func append(_ line: CommandOutputLine) { lines.withLock { $0.append(line) } }
        var all: [CommandOutputLine] { lines.withLock { $0 } }
    }
}
