import CNNG
import Synchronization

/// An open nng socket (REQ or REP, protocol version 0) with its listeners, dialers and pipe
/// notifications. Thread-safe: nng's socket calls may be made from any thread.
public final class NNGSocket: Sendable {
    /// The socket's protocol.
    public enum Role: Sendable { case request, reply }

    let raw: nng_socket
    public let role: Role
    private let closed = Atomic<Bool>(false)
    private let notifier = Mutex<PipeNotifier?>(nil)

    /// Opens a socket.
    public init(_ proto: Role) throws(NNGError) {
        var s = nng_socket()
        switch proto {
        case .request: try NNGError.check(nng_req0_open(&s), "open REQ socket")
        case .reply: try NNGError.check(nng_rep0_open(&s), "open REP socket")
        }
        raw = s
        self.role = proto
    }

    deinit { close() }

    /// Closes the socket: pending operations fail with `closed`. Idempotent.
    public func close() {
        if closed.exchange(true, ordering: .acquiringAndReleasing) { return }
        nng_close(raw)
    }

    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Sets a duration option (milliseconds; `nil` = infinite).
    public func setDuration(_ option: String, milliseconds: Int32?) throws(NNGError) {
        try NNGError.check(nng_socket_set_ms(raw, option, milliseconds ?? -1), "set \(option)")
    }

    /// Listens on `url` (`tcp://host:port`, `tls+tcp://host:port`, `ipc://path`).
    /// - Parameters:
    ///   - maxMessageBytes: largest message accepted; a larger one drops that connection
    ///     (nng 1.5.2 defaults to unlimited, so this is always set).
    ///   - tls: required for `tls+tcp://`.
    public func listen(_ url: String, maxMessageBytes: Int, tls: NNGTLSConfiguration? = nil) throws(NNGError) {
        var l = nng_listener()
        try NNGError.check(nng_listener_create(&l, raw, url), "listen on \(url)")
        do throws(NNGError) {
            try NNGError.check(nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, maxMessageBytes), "set receive limit on \(url)")
            if url.hasPrefix("tls+") {
                guard let tls else {
                    throw NNGError(code: .invalid, operation: "listen on \(url) (tls+tcp:// needs a certificate and key)")
                }
                let cfg = try tls.make(.server)
                defer { nng_tls_config_free(cfg) }
                try NNGError.check(nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, UnsafeMutableRawPointer(cfg)), "attach TLS configuration to \(url)")
            }
            try NNGError.check(nng_listener_start(l, 0), "listen on \(url)")
        } catch {
            nng_listener_close(l)
            throw error
        }
    }

    /// Dials `url` in the background: the first attempt does not have to succeed, and nng keeps
    /// reconnecting with exponential backoff between `reconnectMinMs` and `reconnectMaxMs`.
    public func dial(
        _ url: String, maxMessageBytes: Int, reconnectMinMs: Int32 = 100, reconnectMaxMs: Int32 = 5000,
        tls: NNGTLSConfiguration? = nil
    ) throws(NNGError) {
        var d = nng_dialer()
        try NNGError.check(nng_dialer_create(&d, raw, url), "dial \(url)")
        do throws(NNGError) {
            try NNGError.check(nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, maxMessageBytes), "set receive limit for \(url)")
            try NNGError.check(nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, reconnectMinMs), "set reconnect minimum")
            try NNGError.check(nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, reconnectMaxMs), "set reconnect maximum")
            if url.hasPrefix("tls+") {
                let cfg = try (tls ?? NNGTLSConfiguration()).make(.client)
                defer { nng_tls_config_free(cfg) }
                try NNGError.check(nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, UnsafeMutableRawPointer(cfg)), "attach TLS configuration to \(url)")
            }
            try NNGError.check(nng_dialer_start(d, Int32(NNG_FLAG_NONBLOCK)), "dial \(url)")
        } catch {
            nng_dialer_close(d)
            throw error
        }
    }

    /// Calls `handler` when a peer connects or disconnects.
    ///
    /// nng runs pipe callbacks with the socket lock held, so the handler must only record and
    /// hand off: it must not touch the socket.
    public func onPipeEvent(_ handler: @escaping @Sendable (PipeEvent) -> Void) throws(NNGError) {
        let box = PipeNotifier(handler: handler)
        notifier.withLock { $0 = box }
        let arg = Unmanaged.passUnretained(box).toOpaque()
        let cb: nng_pipe_cb = { pipe, ev, arg in
            guard let arg else { return }
            let box = Unmanaged<PipeNotifier>.fromOpaque(arg).takeUnretainedValue()
            switch ev {
            case NNG_PIPE_EV_ADD_POST:
                box.handler(PipeEvent(kind: .connected, pipeID: pipe.id, remoteAddress: PipeEvent.remoteAddress(of: pipe)))
            case NNG_PIPE_EV_REM_POST:
                box.handler(PipeEvent(kind: .disconnected, pipeID: pipe.id, remoteAddress: nil))
            default:
                break
            }
        }
        try NNGError.check(nng_pipe_notify(raw, NNG_PIPE_EV_ADD_POST, cb, arg), "register pipe notification")
        try NNGError.check(nng_pipe_notify(raw, NNG_PIPE_EV_REM_POST, cb, arg), "register pipe notification")
    }
}

/// Holds the pipe handler alive for as long as the socket (the socket owns it).
private final class PipeNotifier: Sendable {
    let handler: @Sendable (PipeEvent) -> Void
    init(handler: @escaping @Sendable (PipeEvent) -> Void) { self.handler = handler }
}

/// A connection (pipe) coming or going.
public struct PipeEvent: Sendable, Equatable {
    public enum Kind: Sendable { case connected, disconnected }
    public var kind: Kind
    public var pipeID: UInt32
    /// `host:port` of the peer (only known on connect; nng cannot read it at disconnect).
    public var remoteAddress: String?

    static func remoteAddress(of pipe: nng_pipe) -> String? {
        var sa = nng_sockaddr()
        guard nng_pipe_get_addr(pipe, NNG_OPT_REMADDR, &sa) == 0 else { return nil }
        switch Int32(sa.s_family) {
        case Int32(NNG_AF_INET.rawValue):
            let a = UInt32(bigEndian: sa.s_in.sa_addr)
            let port = UInt16(bigEndian: sa.s_in.sa_port)
            return "\(a >> 24).\((a >> 16) & 255).\((a >> 8) & 255).\(a & 255):\(port)"
        case Int32(NNG_AF_INET6.rawValue):
            let port = UInt16(bigEndian: sa.s_in6.sa_port)
            return withUnsafeBytes(of: sa.s_in6.sa_addr) { raw in
                let groups = stride(from: 0, to: 16, by: 2).map { String(UInt16(raw[$0]) << 8 | UInt16(raw[$0 + 1]), radix: 16) }
                return "[\(groups.joined(separator: ":"))]:\(port)"
            }
        case Int32(NNG_AF_IPC.rawValue):
            return "ipc"
        default:
            return nil
        }
    }
}

/// An `nng_aio*`. nng's aio calls are thread-safe; this wrapper only makes the pointer
/// Sendable so that the owning objects can be.
struct AIOHandle: @unchecked Sendable { // safe: the pointer is immutable, and nng serializes use of the aio.
    let pointer: OpaquePointer
}
