/// A command could not be started.
public struct CommandRunnerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The program (argv[0]), or empty when argv was empty.
    public let program: String
    public let message: String

    public init(program: String, message: String) {
        self.program = program
        self.message = message
    }

    public var description: String {
        program.isEmpty ? "cannot start the command: \(message)" : "cannot start \(program): \(message)"
    }
}
