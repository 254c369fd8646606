import CNNG

/// An error from libnng, with the operation that failed and nng's own text.
public struct NNGError: Error, Sendable, Equatable, CustomStringConvertible {
    /// nng's error number (`NNG_E*`).
    public struct Code: RawRepresentable, Hashable, Sendable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }

        public static let interrupted = Code(rawValue: Int32(NNG_EINTR.rawValue))
        public static let outOfMemory = Code(rawValue: Int32(NNG_ENOMEM.rawValue))
        public static let invalid = Code(rawValue: Int32(NNG_EINVAL.rawValue))
        public static let busy = Code(rawValue: Int32(NNG_EBUSY.rawValue))
        public static let timedOut = Code(rawValue: Int32(NNG_ETIMEDOUT.rawValue))
        public static let connectionRefused = Code(rawValue: Int32(NNG_ECONNREFUSED.rawValue))
        public static let closed = Code(rawValue: Int32(NNG_ECLOSED.rawValue))
        public static let tryAgain = Code(rawValue: Int32(NNG_EAGAIN.rawValue))
        public static let notSupported = Code(rawValue: Int32(NNG_ENOTSUP.rawValue))
        public static let addressInUse = Code(rawValue: Int32(NNG_EADDRINUSE.rawValue))
        public static let badState = Code(rawValue: Int32(NNG_ESTATE.rawValue))
        public static let cancelled = Code(rawValue: Int32(NNG_ECANCELED.rawValue))
        public static let connectionReset = Code(rawValue: Int32(NNG_ECONNRESET.rawValue))
        public static let messageTooLarge = Code(rawValue: Int32(NNG_EMSGSIZE.rawValue))
        public static let addressInvalid = Code(rawValue: Int32(NNG_EADDRINVAL.rawValue))
        public static let cryptoError = Code(rawValue: Int32(NNG_ECRYPTO.rawValue))
        public static let peerAuth = Code(rawValue: Int32(NNG_EPEERAUTH.rawValue))
    }

    public let code: Code
    /// What we were doing, e.g. `listen tcp://0.0.0.0:5555`.
    public let operation: String

    public init(code: Code, operation: String) {
        self.code = code
        self.operation = operation
    }

    init(_ rv: Int32, _ operation: String) {
        self.init(code: Code(rawValue: rv), operation: operation)
    }

    /// Throws unless `rv` is 0.
    @inline(__always)
    static func check(_ rv: Int32, _ operation: @autoclosure () -> String) throws(NNGError) {
        if rv != 0 { throw NNGError(rv, operation()) }
    }

    public var description: String {
        "\(operation): \(String(cString: nng_strerror(code.rawValue)))"
    }
}
