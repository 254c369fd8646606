import CNNG
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A REP server that serves many requests at once on a pool of nng contexts, each driven by
/// an asynchronous-I/O state machine (receive → handle → send → receive) in nng's callbacks.
/// No thread is dedicated to a client; the pool grows while every context is busy (for example
/// with held long-polls), up to `maxContexts`.
///
/// The handler runs on an nng task thread: it must not block. It either replies at once (the
/// heartbeat fast path) or hands the request to a task that replies later.
public final class NNGReplyServer: Sendable {
    public typealias Handler = @Sendable (NNGIncomingRequest) -> Void

    let socket: NNGSocket
    let handler: Handler
    private let minIdle: Int
    private let maxContexts: Int
    private let pool = Mutex<Pool>(Pool())

    private struct Pool {
        var contexts: [ReplyContext] = []
        var idle = 0
        var closed = false
    }

    /// - Parameters:
    ///   - socket: an open REP socket (listen on it before or after `start`).
    ///   - initialContexts: contexts posted at start.
    ///   - minIdle: when fewer contexts than this wait for a request, another is opened.
    ///   - maxContexts: the pool never grows beyond this.
    public init(
        socket: NNGSocket, initialContexts: Int = 16, minIdle: Int = 4, maxContexts: Int = 65_536,
        handler: @escaping Handler
    ) {
        precondition(socket.role == .reply, "NNGReplyServer needs a REP socket")
        self.socket = socket
        self.handler = handler
        self.minIdle = minIdle
        self.maxContexts = max(maxContexts, initialContexts)
        self.initialContexts = initialContexts
    }

    private let initialContexts: Int

    /// Posts the initial receives.
    public func start() throws(NNGError) {
        for _ in 0..<initialContexts { try addContext() }
    }

    /// Number of contexts opened so far.
    public var contextCount: Int { pool.withLock { $0.contexts.count } }

    var isClosed: Bool { pool.withLock { $0.closed } }

    private func addContext() throws(NNGError) {
        let rc = try ReplyContext(server: self)
        let ok = pool.withLock { p -> Bool in
            guard !p.closed else { return false }
            p.contexts.append(rc)
            p.idle += 1
            return true
        }
        if ok { rc.postReceive() } else { rc.free() }
    }

    func contextBecameBusy() {
        let grow = pool.withLock { p -> Bool in
            p.idle -= 1
            return !p.closed && p.idle < minIdle && p.contexts.count < maxContexts
        }
        if grow { try? addContext() }
    }

    func contextBecameIdle() { pool.withLock { $0.idle += 1 } }

    /// Closes the socket and frees every context. Requests being handled are abandoned (their
    /// `reply` becomes a no-op). Must not be called from the handler.
    public func close() {
        let contexts = pool.withLock { p -> [ReplyContext] in
            p.closed = true
            return p.contexts
        }
        // Contexts first (each waits for its running callback, then closes), the socket last:
        // nng 1.5.2's nng_close could wait forever for a context whose receive it had aborted
        // while a callback was re-posting it (seen as a hang in closeDuringReplies).
        for rc in contexts { rc.free() }
        socket.close()
    }
}

/// A request received by ``NNGReplyServer``. Answer it exactly once with ``reply(_:)`` or
/// ``drop()``; later calls are ignored.
public struct NNGIncomingRequest: Sendable {
    /// The message as received.
    public let bytes: [UInt8]
    /// The connection it came on (see ``PipeEvent``).
    public let pipeID: UInt32
    let context: ReplyContext
    let generation: UInt64

    /// Sends `bytes` as the reply. Returns false when this request was already answered or the
    /// server is closed.
    @discardableResult
    public func reply(_ bytes: [UInt8]) -> Bool { context.reply(bytes, generation: generation) }

    /// Discards the request without answering (the requester times out and may retry).
    public func drop() { context.drop(generation: generation) }
}

/// One REP context and its aio. The server's pool holds the only strong reference until the
/// server closes; the C callback borrows it unretained, so the callback never releases the
/// object that frees the aio (nng 1.5.2's self-deadlock).
///
/// Threads: the aio callback runs on nng's task threads; `reply`/`drop` run on whatever thread
/// answers the request; `free` runs on the closing thread. The slot's mutex orders them: `reply`
/// and `drop` claim the slot and count themselves in under it, start their nng operation outside
/// it (so a completion delivered inline could take the lock), and count themselves out; `free`
/// marks the slot freed under it, waits until no such call is in flight, and only then calls
/// `nng_aio_free`.
final class ReplyContext: Sendable {
    private enum Phase { case receiving, handling, sending, freed }

    private struct Slot {
        var phase = Phase.receiving
        var generation: UInt64 = 0
        /// The aio pointer's bits (0 once freed).
        var aio: UInt = 0
        /// `reply`/`drop` calls between their claim and the end of their nng call.
        var inFlight = 0
    }

    private unowned let server: NNGReplyServer
    private let ctx: nng_ctx
    private let slot = Mutex(Slot())

    init(server: NNGReplyServer) throws(NNGError) {
        self.server = server
        var c = nng_ctx()
        try NNGError.check(nng_ctx_open(&c, server.socket.raw), "open REP context")
        ctx = c
        var aio: OpaquePointer?
        let rv = nng_aio_alloc(&aio, { arg in
            Unmanaged<ReplyContext>.fromOpaque(arg!).takeUnretainedValue().ioCompleted()
        }, Unmanaged.passUnretained(self).toOpaque())
        guard rv == 0, let aio else {
            nng_ctx_close(c)
            throw NNGError(rv, "allocate aio")
        }
        let bits = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(aio)))
        slot.withLock { $0.aio = bits }
    }

    func postReceive() {
        slot.withLock { s in
            guard s.phase != .freed, let aio = OpaquePointer(bitPattern: s.aio) else { return }
            s.phase = .receiving
            nng_ctx_recv(ctx, aio)
        }
    }

    private func ioCompleted() {
        // While this callback runs, nng_aio_free (in `free`) waits for it: the aio stays valid.
        let (phase, generation, bits) = slot.withLock { ($0.phase, $0.generation, $0.aio) }
        guard phase != .freed, let aio = OpaquePointer(bitPattern: bits) else { return }
        let rv = nng_aio_result(aio)
        switch phase {
        case .receiving:
            if rv != 0 {
                if rv == NNGError.Code.closed.rawValue || server.isClosed { return }
                postReceive()
                return
            }
            guard let msg = nng_aio_get_msg(aio) else {
                postReceive()
                return
            }
            let len = nng_msg_len(msg)
            let bytes: [UInt8] = len == 0 ? [] : [UInt8](UnsafeRawBufferPointer(start: nng_msg_body(msg), count: len))
            let pipe = nng_msg_get_pipe(msg).id
            nng_aio_set_msg(aio, nil)
            nng_msg_free(msg)
            let next = generation &+ 1
            let handling = slot.withLock { s -> Bool in
                guard s.phase == .receiving else { return false }
                s.phase = .handling
                s.generation = next
                return true
            }
            guard handling else { return }
            server.contextBecameBusy()
            server.handler(NNGIncomingRequest(bytes: bytes, pipeID: pipe, context: self, generation: next))
        case .sending:
            if rv != 0, let m = nng_aio_get_msg(aio) {
                nng_aio_set_msg(aio, nil)
                nng_msg_free(m)
            }
            if rv == NNGError.Code.closed.rawValue || server.isClosed { return }
            server.contextBecameIdle()
            postReceive()
        case .handling, .freed:
            return
        }
    }

    func reply(_ bytes: [UInt8], generation: UInt64) -> Bool {
        var msg: OpaquePointer?
        guard nng_msg_alloc(&msg, 0) == 0, let msg else {
            drop(generation: generation)
            return false
        }
        _ = bytes.withUnsafeBytes { nng_msg_append(msg, $0.baseAddress, $0.count) }
        guard let aio = claim(generation, next: .sending) else {
            nng_msg_free(msg)
            return false
        }
        nng_aio_set_msg(aio, msg)
        nng_ctx_send(ctx, aio)
        slot.withLock { $0.inFlight -= 1 }
        return true
    }

    func drop(generation: UInt64) {
        guard let aio = claim(generation, next: .receiving) else { return }
        server.contextBecameIdle()
        nng_ctx_recv(ctx, aio)
        slot.withLock { $0.inFlight -= 1 }
    }

    /// Moves a request being handled to `next` and counts the caller in; nil when the request
    /// was already answered or the context is being freed.
    private func claim(_ generation: UInt64, next: Phase) -> OpaquePointer? {
        slot.withLock { s -> OpaquePointer? in
            guard s.phase == .handling, s.generation == generation, let aio = OpaquePointer(bitPattern: s.aio) else { return nil }
            s.phase = next
            s.inFlight += 1
            return aio
        }
    }

    /// Frees the aio (waiting for a running callback) and closes the context. Called once, by
    /// the server, on a thread that is not an nng callback.
    func free() {
        var bits = slot.withLock { s -> UInt in
            s.phase = .freed
            return s.aio
        }
        // A reply or drop that claimed the slot just before finishes its (non-blocking) nng call.
        while slot.withLock({ $0.inFlight }) > 0 { sched_yield() }
        bits = slot.withLock { $0.aio }
        if let p = OpaquePointer(bitPattern: bits) { nng_aio_free(p) }
        slot.withLock { $0.aio = 0 }
        nng_ctx_close(ctx)
    }
}
