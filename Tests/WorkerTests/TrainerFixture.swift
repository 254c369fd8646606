import Foundation
import Testing

/// Runs the Python test trainer (Tests/Fixtures/trainer/fake_trainer.py) in the venv that
/// Tests/Fixtures/trainer/trainer_env.sh makes. A venv that cannot be made is a test failure
/// with the script's reason, never a skip.
enum TrainerFixture {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fixtures/trainer")

    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs a program under `timeout -s KILL`, stdout through a pipe and stderr through a file
    /// (so neither can fill up and block the child).
    static func run(_ executable: String, _ arguments: [String], timeout: Int = 120) throws -> Output {
        let errPath = temporaryDirectory("stderr") + "/stderr.txt"
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let errHandle = try #require(FileHandle(forWritingAtPath: errPath))
        defer { try? errHandle.close() }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/timeout")
        p.arguments = ["-s", "KILL", String(timeout), executable] + arguments
        let out = Pipe()
        p.standardOutput = out
        p.standardError = errHandle
        try p.run()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        let errText = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
        return Output(status: p.terminationStatus, stdout: String(decoding: outData, as: UTF8.self), stderr: errText)
    }

    /// The venv's python, or a failed requirement saying why it could not be made.
    static func python() throws -> String {
        let r = try run("/bin/bash", [fixtures.appendingPathComponent("trainer_env.sh").path], timeout: 600)
        let path = r.stdout.split(separator: "\n").last.map(String.init) ?? ""
        try #require(r.status == 0 && FileManager.default.isExecutableFile(atPath: path),
                     "the trainer venv could not be made (Tests/Fixtures/trainer/trainer_env.sh exited \(r.status)): \(r.stderr)")
        return path
    }

    /// Runs fake_trainer.py to completion with `arguments`.
    static func train(_ arguments: [String]) throws -> Output {
        let py = try python()
        return try run(py, [fixtures.appendingPathComponent("fake_trainer.py").path] + arguments)
    }

    static func temporaryDirectory(_ label: String) -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-\(label)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}
