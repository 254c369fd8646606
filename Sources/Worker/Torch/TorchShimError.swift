/// A failure of the torch shim, with its status code and the shim's message.
public struct TorchShimError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The shim's status codes (`TTS_ERR_*` of `tts_torch_shim.h`), plus `unavailable` when the
    /// library cannot be loaded at all.
    public enum Code: Int32, Sendable, Equatable {
        case invalidArgument = 1
        case load = 2
        case contract = 3
        case shape = 4
        case outOfMemory = 5
        case io = 6
        case `internal` = 7
        /// A collective of a data-parallel group failed: a peer rank failed its step, left, or
        /// did not answer in time (ABI 5).
        case peer = 8
        case unavailable = 100
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String {
        switch code {
        case .invalidArgument: return "torch shim: invalid argument: \(message)"
        case .load: return "torch shim: cannot load the model: \(message)"
        case .contract: return "torch shim: the model breaks the training contract (Sources/TorchShim/CONTRACT.md): \(message)"
        case .shape: return "torch shim: the batch does not fit the model: \(message)"
        case .outOfMemory: return "torch shim: out of memory: \(message)"
        case .io: return "torch shim: checkpoint: \(message)"
        case .internal: return "torch shim: \(message)"
        case .peer: return "torch shim: data-parallel group: \(message)"
        case .unavailable: return "torch is unavailable: \(message)"
        }
    }
}
