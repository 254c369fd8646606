/// A problem with how a process was started (flags, files, environment), stated so that the
/// user knows what to change. Never includes secret values.
public struct ConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}
