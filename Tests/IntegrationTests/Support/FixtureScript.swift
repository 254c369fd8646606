import Foundation
import Testing

/// Runs a fixture script of Tests/Fixtures (which makes or reuses what a test needs and prints
/// `KEY=VALUE` lines) and returns those values. A script that fails is a test failure with its
/// reason, never a skip.
enum FixtureScript {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

    static func values(_ relative: String) throws -> [String: String] {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = [fixtures.appendingPathComponent(relative).path]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "Tests/Fixtures/\(relative) failed (\(p.terminationStatus)): \(String(decoding: e, as: UTF8.self).suffix(3_000))")
        var values: [String: String] = [:]
        for line in String(decoding: o, as: UTF8.self).split(separator: "\n") {
            if let eq = line.firstIndex(of: "=") { values[String(line[..<eq])] = String(line[line.index(after: eq)...]) }
        }
        return values
    }
}
