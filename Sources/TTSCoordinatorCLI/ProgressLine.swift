import Foundation

/// Progress of a long CLI operation: on a terminal one line rewritten in place; otherwise (a
/// log file, CI) plain lines, only when the text changed and at most one every `plainEvery`
/// seconds, so logs stay readable.
final class ProgressLine {
    let isTerminal: Bool
    private let plainEvery: TimeInterval
    private var lastText = ""
    private var lastPlain = Date.distantPast

    init(isTerminal: Bool = isatty(1) != 0, plainEvery: TimeInterval = 5) {
        self.isTerminal = isTerminal
        self.plainEvery = plainEvery
    }

    func update(_ text: String) {
        if isTerminal {
            print("\r\u{1B}[K\(text)", terminator: "")
            fflush(nil)
        } else if text != lastText, Date().timeIntervalSince(lastPlain) >= plainEvery {
            print(text)
            fflush(nil)
            lastPlain = Date()
        }
        lastText = text
    }

    /// Ends the line (terminal) or prints the last state (plain) once.
    func finish() {
        if isTerminal {
            if !lastText.isEmpty { print("") }
        } else if !lastText.isEmpty {
            print(lastText)
        }
        lastText = ""
    }
}
