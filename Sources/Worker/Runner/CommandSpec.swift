/// What ``CommandRunner`` starts: a program and its arguments (no shell), where, and with which
/// environment.
public struct CommandSpec: Sendable, Equatable {
    /// The program and its arguments. A program name without `/` is looked up in the `PATH` of
    /// the command's environment; a relative path is relative to ``workingDirectory``.
    public var argv: [String]
    /// The directory it runs in; nil: the worker's.
    public var workingDirectory: String?
    /// Variables set over the worker's own environment (when ``inheritEnvironment``).
    public var environment: [String: String]
    /// `CUDA_VISIBLE_DEVICES` for the command (wins over ``environment``); nil: as inherited.
    public var cudaVisibleDevices: String?
    /// Start from the worker's environment (true) or from ``environment`` alone.
    public var inheritEnvironment: Bool

    public init(argv: [String], workingDirectory: String? = nil, environment: [String: String] = [:],
                cudaVisibleDevices: String? = nil, inheritEnvironment: Bool = true) {
        self.argv = argv
        self.workingDirectory = workingDirectory
        self.environment = environment
        self.cudaVisibleDevices = cudaVisibleDevices
        self.inheritEnvironment = inheritEnvironment
    }

    /// The environment the command gets: the worker's (if inherited), then ``environment``, then
    /// ``cudaVisibleDevices``.
    public func resolvedEnvironment(worker: [String: String]) -> [String: String] {
        var env = inheritEnvironment ? worker : [:]
        env.merge(environment) { _, new in new }
        if let devices = cudaVisibleDevices { env["CUDA_VISIBLE_DEVICES"] = devices }
        return env
    }
}
