/// One line a command printed (without its line break).
public struct CommandOutputLine: Sendable, Equatable {
    /// The stream it came from.
    public enum Stream: String, Sendable, Equatable {
        case stdout
        case stderr
    }

    public var stream: Stream
    public var text: String

    public init(stream: Stream, text: String) {
        self.stream = stream
        self.text = text
    }
}
