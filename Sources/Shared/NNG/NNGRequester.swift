import CNNG
import Synchronization

/// The client side of REQ/REP: one socket that dials the coordinator (and keeps redialing with
/// backoff), and any number of concurrent requests, each on its own nng context.
///
/// NNG's automatic resend is switched off: a request is sent at most once per call, a lost
/// connection fails it with `connectionReset`, and the caller retries with the same
/// envelope sequence so the coordinator can deduplicate.
public final class NNGRequester: Sendable {
    public let socket: NNGSocket
    public let url: String
    /// The ids of the connections (pipes) the socket has now.
    private let pipes = PipeIDs()

    /// Opens a REQ socket and starts dialing `url` in the background.
    public init(
        url: String, maxMessageBytes: Int = 64 << 20, tls: NNGTLSConfiguration? = nil,
        reconnectMinMs: Int32 = 100, reconnectMaxMs: Int32 = 5000
    ) throws(NNGError) {
        self.url = url
        socket = try NNGSocket(.request)
        try socket.setDuration(NNG_OPT_REQ_RESENDTIME, milliseconds: nil)
        let pipes = self.pipes
        try socket.onPipeEvent { event in
            pipes.ids.withLock { p in
                if event.kind == .connected { p.insert(event.pipeID) } else { p.remove(event.pipeID) }
            }
        }
        try socket.dial(url, maxMessageBytes: maxMessageBytes, reconnectMinMs: reconnectMinMs, reconnectMaxMs: reconnectMaxMs, tls: tls)
    }

    public func close() { socket.close() }

    /// Closes the socket's connections; the dialer then connects again (with its backoff).
    ///
    /// For a connection that looks alive but carries nothing: after a network partition a TCP
    /// connection can stay open on both ends while its retransmission timer backs off to a
    /// minute or more, so replies would resume long after the network did. A fresh connection
    /// works as soon as the network does. Requests in flight on a closed connection fail or are
    /// sent again on the new one; callers retry with the same sequence, so nothing is doubled.
    /// - Returns: how many connections were closed.
    @discardableResult
    public func dropConnections() -> Int {
        let ids = pipes.ids.withLock { $0 }
        for id in ids { nng_pipe_close(nng_pipe(id: id)) }
        return ids.count
    }

    /// Sends `bytes` and waits for the reply, for at most `timeoutMs` in total.
    /// - Throws: ``NNGError`` (`timedOut` when there is no connection or no reply in time,
    ///   `connectionReset` when the connection dropped, `cancelled` when the task was cancelled).
    public func request(_ bytes: [UInt8], timeoutMs: Int) async throws(NNGError) -> [UInt8] {
        var ctx = nng_ctx()
        try NNGError.check(nng_ctx_open(&ctx, socket.raw), "open REQ context")
        defer { nng_ctx_close(ctx) }
        let op = RequestOperation(ctx: ctx, timeoutMs: timeoutMs)
        let arg = Unmanaged.passRetained(op).toOpaque() // the C side's own reference
        var aio: OpaquePointer?
        let rv = nng_aio_alloc(&aio, { arg in
            Unmanaged<RequestOperation>.fromOpaque(arg!).takeUnretainedValue().ioCompleted()
        }, arg)
        guard rv == 0, let aio else {
            Unmanaged<RequestOperation>.fromOpaque(arg).release()
            throw NNGError(rv, "allocate aio")
        }
        op.setAIO(aio)
        // Free the aio on this (Swift) thread, then drop the C side's reference: the callback
        // never releases the object that frees the aio.
        defer {
            nng_aio_free(aio)
            Unmanaged<RequestOperation>.fromOpaque(arg).release()
        }
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<[UInt8], NNGError>, Never>) in
                op.start(c, bytes)
            }
        } onCancel: {
            op.cancel()
        }
        return try result.get()
    }
}

/// The ids of a socket's open connections, kept by its pipe callback.
final class PipeIDs: Sendable {
    let ids = Mutex<Set<UInt32>>([])
}

/// One request's state machine: send, then receive, then resume the waiting task.
final class RequestOperation: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Result<[UInt8], NNGError>, Never>?
        var phase = 0 // 0 idle, 1 sending, 2 receiving, 3 done
        var cancelled = false
    }

    private let ctx: nng_ctx
    private let deadline: ContinuousClock.Instant
    private let aioBits = Atomic<UInt>(0)
    private let state = Mutex(State())

    init(ctx: nng_ctx, timeoutMs: Int) {
        self.ctx = ctx
        deadline = .now + .milliseconds(timeoutMs)
    }

    func setAIO(_ aio: OpaquePointer) {
        aioBits.store(UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(aio))), ordering: .releasing)
    }

    private var aio: OpaquePointer { OpaquePointer(bitPattern: aioBits.load(ordering: .acquiring))! }

    private var remainingMs: Int32 {
        let left = deadline - .now
        let ms = left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000
        return Int32(clamping: max(ms, 1))
    }

    func start(_ c: CheckedContinuation<Result<[UInt8], NNGError>, Never>, _ bytes: [UInt8]) {
        let cancelled = state.withLock { s -> Bool in
            s.continuation = c
            if s.cancelled { return true }
            s.phase = 1
            return false
        }
        if cancelled {
            finish(.failure(NNGError(code: .cancelled, operation: "request")))
            return
        }
        var msg: OpaquePointer?
        guard nng_msg_alloc(&msg, 0) == 0, let msg else {
            finish(.failure(NNGError(code: .outOfMemory, operation: "allocate message")))
            return
        }
        _ = bytes.withUnsafeBytes { nng_msg_append(msg, $0.baseAddress, $0.count) }
        nng_aio_set_msg(aio, msg)
        nng_aio_set_timeout(aio, remainingMs)
        nng_ctx_send(ctx, aio)
    }

    func ioCompleted() {
        let rv = nng_aio_result(aio)
        let phase = state.withLock { $0.phase }
        if phase == 1 {
            if rv != 0 {
                if let m = nng_aio_get_msg(aio) {
                    nng_aio_set_msg(aio, nil)
                    nng_msg_free(m)
                }
                finish(.failure(NNGError(rv, "send request")))
                return
            }
            let cancelled = state.withLock { s -> Bool in
                s.phase = 2
                return s.cancelled
            }
            if cancelled {
                finish(.failure(NNGError(code: .cancelled, operation: "request")))
                return
            }
            nng_aio_set_timeout(aio, remainingMs)
            nng_ctx_recv(ctx, aio)
        } else if phase == 2 {
            if rv != 0 {
                finish(.failure(NNGError(rv, "receive reply")))
                return
            }
            guard let msg = nng_aio_get_msg(aio) else {
                finish(.failure(NNGError(code: .invalid, operation: "receive reply")))
                return
            }
            let len = nng_msg_len(msg)
            let bytes: [UInt8] = len == 0 ? [] : [UInt8](UnsafeRawBufferPointer(start: nng_msg_body(msg), count: len))
            nng_aio_set_msg(aio, nil)
            nng_msg_free(msg)
            finish(.success(bytes))
        }
    }

    private func finish(_ result: Result<[UInt8], NNGError>) {
        let c = state.withLock { s -> CheckedContinuation<Result<[UInt8], NNGError>, Never>? in
            s.phase = 3
            defer { s.continuation = nil }
            return s.continuation
        }
        c?.resume(returning: result)
    }

    func cancel() {
        let inFlight = state.withLock { s -> Bool in
            s.cancelled = true
            return s.phase == 1 || s.phase == 2
        }
        // nng_aio_cancel, never nng_aio_stop: stop would silently refuse later operations.
        if inFlight { nng_aio_cancel(aio) }
    }
}
