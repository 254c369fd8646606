import CCurlShim
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A small HTTP/1.1 client over libcurl: the project's only HTTP stack.
///
/// A few worker threads (``Configuration/threads``) each own one libcurl easy handle and run
/// `curl_easy_perform` — which blocks — off the Swift cooperative pool; callers `await`
/// ``send(_:)`` and are resumed through a continuation. A handle is reused from one request
/// to the next (`curl_easy_reset` keeps its connection cache), so requests to the same host
/// reuse kept-alive connections. `CURLOPT_NOSIGNAL` is set (threads), `curl_global_init`
/// runs once per process, and cancelling the calling task aborts the transfer.
///
/// The client sends exactly the headers of the request: libcurl's defaults (`Accept: */*`,
/// `Expect: 100-continue`, the form `Content-Type` of a POST) are suppressed. It never follows
/// redirects and never logs; errors carry no header or body (so no credential).
public final class HTTPClient: Sendable {
    public struct Configuration: Sendable, Equatable {
        /// Requests in flight at once (one worker thread and one easy handle each).
        public var threads: Int
        /// A response body larger than this fails the transfer (`CURLE_WRITE_ERROR`).
        public var maxResponseBytes: Int
        /// A CA bundle to verify TLS peers with, instead of the system default.
        public var caInfoPath: String?

        public init(threads: Int = 4, maxResponseBytes: Int = 64 << 20, caInfoPath: String? = nil) {
            self.threads = max(1, threads)
            self.maxResponseBytes = maxResponseBytes
            self.caInfoPath = caInfoPath
        }
    }

    public let configuration: Configuration
    private let pool: HTTPWorkerPool

    /// `curl_global_init`, exactly once per process (Swift initialises a static `let` once,
    /// thread-safely), before the first easy handle exists.
    private static let globalInit: Int = Int(ccurl_global_init_default().rawValue)

    public init(configuration: Configuration = .init()) {
        _ = HTTPClient.globalInit
        self.configuration = configuration
        pool = HTTPWorkerPool(configuration: configuration)
        pool.start()
    }

    deinit { pool.shutdown() }

    /// Sends `request` and returns the response, whatever its status.
    /// - Throws: ``HTTPError`` when there is no response (connection refused, timeout, TLS …),
    ///   `.cancelled` when the calling task is cancelled, `.shutdown` after ``shutdown()``.
    public func send(_ request: HTTPRequest) async throws(HTTPError) -> HTTPResponse {
        let job = HTTPJob(request: request)
        let pool = self.pool
        let result = await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Result<HTTPResponse, HTTPError>, Never>) in
                job.setContinuation(c)
                pool.enqueue(job)
            }
        } onCancel: {
            job.cancel()
            pool.removeQueued(job)
        }
        return try result.get()
    }

    /// Fails queued requests with `.shutdown`, lets running ones finish, and stops the threads.
    /// Later ``send(_:)`` calls fail with `.shutdown`.
    public func shutdown() { pool.shutdown() }
}

// MARK: - Jobs and workers

/// One request on its way through the pool; resumes its caller exactly once.
final class HTTPJob: Sendable {
    private struct State {
        var continuation: CheckedContinuation<Result<HTTPResponse, HTTPError>, Never>?
        var result: Result<HTTPResponse, HTTPError>?
        var resumed = false
    }

    let request: HTTPRequest
    private let cancelled = Atomic<Bool>(false)
    private let state = Mutex(State())

    init(request: HTTPRequest) { self.request = request }

    var isCancelled: Bool { cancelled.load(ordering: .relaxed) }

    func cancel() { cancelled.store(true, ordering: .relaxed) }

    func setContinuation(_ c: CheckedContinuation<Result<HTTPResponse, HTTPError>, Never>) {
        let early: Result<HTTPResponse, HTTPError>? = state.withLock { s in
            if let r = s.result, !s.resumed {
                s.resumed = true
                return r
            }
            s.continuation = c
            return nil
        }
        if let early { c.resume(returning: early) }
    }

    func finish(_ result: Result<HTTPResponse, HTTPError>) {
        let c: CheckedContinuation<Result<HTTPResponse, HTTPError>, Never>? = state.withLock { s in
            guard !s.resumed else { return nil }
            guard let c = s.continuation else {
                if s.result == nil { s.result = result }
                return nil
            }
            s.resumed = true
            s.continuation = nil
            return c
        }
        c?.resume(returning: result)
    }
}

/// A FIFO of jobs served by a fixed set of threads.
final class HTTPWorkerPool: Sendable {
    private struct State {
        var queue: [HTTPJob] = []
        var closed = false
        var started = false
    }

    let configuration: HTTPClient.Configuration
    private let state = Mutex(State())
    private let available = DispatchSemaphore(value: 0)

    init(configuration: HTTPClient.Configuration) { self.configuration = configuration }

    func start() {
        let first = state.withLock { s -> Bool in
            defer { s.started = true }
            return !s.started
        }
        guard first else { return }
        for i in 0..<configuration.threads {
            let thread = Thread { [self] in self.workerLoop() }
            thread.name = "http-client-\(i)"
            thread.start()
        }
    }

    func enqueue(_ job: HTTPJob) {
        let accepted = state.withLock { s -> Bool in
            if s.closed { return false }
            s.queue.append(job)
            return true
        }
        if accepted { available.signal() } else { job.finish(.failure(.shutdown)) }
    }

    /// Fails `job` with `.cancelled` if no worker has picked it up yet.
    func removeQueued(_ job: HTTPJob) {
        let removed = state.withLock { s -> Bool in
            guard let i = s.queue.firstIndex(where: { $0 === job }) else { return false }
            s.queue.remove(at: i)
            return true
        }
        if removed { job.finish(.failure(.cancelled)) }
    }

    func shutdown() {
        let drained = state.withLock { s -> [HTTPJob]? in
            if s.closed { return nil }
            s.closed = true
            defer { s.queue.removeAll() }
            return s.queue
        }
        guard let drained else { return }
        for job in drained { job.finish(.failure(.shutdown)) }
        for _ in 0..<configuration.threads { available.signal() }
    }

    /// The next job, or nil once the pool is closed and drained.
    private func next() -> HTTPJob? {
        while true {
            available.wait()
            let (job, closed) = state.withLock { s -> (HTTPJob?, Bool) in
                if !s.queue.isEmpty { return (s.queue.removeFirst(), s.closed) }
                return (nil, s.closed)
            }
            if let job { return job }
            if closed { return nil }
        }
    }

    private func workerLoop() {
        guard let easy = curl_easy_init() else {
            // No handle: serve every job we get with an error rather than leaving callers hanging.
            while let job = next() { job.finish(.failure(.invalidRequest("curl_easy_init failed"))) }
            return
        }
        let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(ccurl_error_size()))
        defer {
            curl_easy_cleanup(easy)
            errorBuffer.deallocate()
        }
        while let job = next() {
            if job.isCancelled {
                job.finish(.failure(.cancelled))
                continue
            }
            let result = CurlTransfer.perform(easy: easy, job: job, errorBuffer: errorBuffer, configuration: configuration)
            curl_easy_reset(easy) // keeps the connection cache: keep-alive across requests
            job.finish(result)
        }
    }
}

// MARK: - One transfer

/// Per-transfer state the C callbacks see; lives on the worker thread only.
final class CurlTransferContext {
    let job: HTTPJob
    let maxBytes: Int
    var body: [UInt8] = []
    var headers = HTTPHeaders()
    var overflow = false
    // Streamed file body.
    var fd: Int32 = -1
    var fileBase: Int64 = 0
    var fileLength: Int64 = 0
    var fileSent: Int64 = 0
    var readFailed = false

    init(job: HTTPJob, maxBytes: Int) {
        self.job = job
        self.maxBytes = maxBytes
    }
}

enum CurlTransfer {
    static func perform(
        easy: UnsafeMutableRawPointer, job: HTTPJob, errorBuffer: UnsafeMutablePointer<CChar>,
        configuration: HTTPClient.Configuration
    ) -> Result<HTTPResponse, HTTPError> {
        let request = job.request
        let lowerURL = request.url.lowercased()
        guard lowerURL.hasPrefix("http://") || lowerURL.hasPrefix("https://") else {
            // The URL itself is not echoed: signed upload URLs carry credentials in the query.
            return .failure(.invalidRequest("the URL must start with http:// or https://"))
        }
        let ctx = CurlTransferContext(job: job, maxBytes: configuration.maxResponseBytes)
        defer { if ctx.fd >= 0 { _ = Glibc.close(ctx.fd) } }
        let ctxPointer = Unmanaged.passUnretained(ctx).toOpaque()

        var failed: CURLcode = CURLE_OK
        func check(_ code: CURLcode) { if code != CURLE_OK && failed == CURLE_OK { failed = code } }

        errorBuffer[0] = 0
        check(request.url.withCString { ccurl_setopt_ptr(easy, CURLOPT_URL, $0) })
        check(ccurl_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer))
        check(ccurl_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
        check(ccurl_setopt_long(easy, CURLOPT_TCP_KEEPALIVE, 1))
        check(ccurl_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, milliseconds(request.connectTimeout)))
        check(ccurl_setopt_long(easy, CURLOPT_TIMEOUT_MS, request.timeout.map(milliseconds) ?? 0))
        check(ccurl_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0))
        if let stall = request.stallTimeout {
            check(ccurl_setopt_long(easy, CURLOPT_LOW_SPEED_LIMIT, 1))
            check(ccurl_setopt_long(easy, CURLOPT_LOW_SPEED_TIME, max(1, milliseconds(stall) / 1000)))
        }
        if let ca = configuration.caInfoPath { check(ca.withCString { ccurl_setopt_ptr(easy, CURLOPT_CAINFO, $0) }) }

        // Headers: exactly the request's, with libcurl's own defaults switched off.
        var list: UnsafeMutablePointer<curl_slist>?
        var headers = request.headers
        if let encoding = headers["Accept-Encoding"] {
            // Let libcurl send it *and* decode the response.
            check(encoding.withCString { ccurl_setopt_ptr(easy, CURLOPT_ACCEPT_ENCODING, $0) })
            headers.remove("Accept-Encoding")
        }
        for field in headers {
            let line = field.value.isEmpty ? "\(field.name);" : "\(field.name): \(field.value)"
            list = curl_slist_append(list, line)
        }
        for name in ["Expect", "Accept", "Content-Type"] where !request.headers.contains(name) {
            list = curl_slist_append(list, "\(name):")
        }
        defer { curl_slist_free_all(list) }
        check(ccurl_setopt_ptr(easy, CURLOPT_HTTPHEADER, list))

        // Response callbacks.
        check(ccurl_setopt_write_function(easy) { data, size, count, context in
            let ctx = Unmanaged<CurlTransferContext>.fromOpaque(context!).takeUnretainedValue()
            let n = size * count
            if ctx.body.count + n > ctx.maxBytes {
                ctx.overflow = true
                return 0
            }
            if n > 0, let data {
                data.withMemoryRebound(to: UInt8.self, capacity: n) { ctx.body.append(contentsOf: UnsafeBufferPointer(start: $0, count: n)) }
            }
            return n
        })
        check(ccurl_setopt_ptr(easy, CURLOPT_WRITEDATA, ctxPointer))
        check(ccurl_setopt_header_function(easy) { data, size, count, context in
            let ctx = Unmanaged<CurlTransferContext>.fromOpaque(context!).takeUnretainedValue()
            let n = size * count
            guard n > 0, let data else { return n }
            let line = data.withMemoryRebound(to: UInt8.self, capacity: n) { String(decoding: UnsafeBufferPointer(start: $0, count: n), as: UTF8.self) }
            if line.hasPrefix("HTTP/") {
                ctx.headers = HTTPHeaders() // a new response (after 100 Continue): start over
            } else if line.contains(":") {
                let parsed = HTTPHeaders.parseNameColonValue([line])
                for f in parsed { ctx.headers.add(f.name, f.value) }
            }
            return n
        })
        check(ccurl_setopt_ptr(easy, CURLOPT_HEADERDATA, ctxPointer))
        check(ccurl_setopt_long(easy, CURLOPT_NOPROGRESS, 0))
        check(ccurl_setopt_xferinfo_function(easy) { context, _, _, _, _ in
            let ctx = Unmanaged<CurlTransferContext>.fromOpaque(context!).takeUnretainedValue()
            return ctx.job.isCancelled ? 1 : 0
        })
        check(ccurl_setopt_ptr(easy, CURLOPT_XFERINFODATA, ctxPointer))

        // Method and body.
        let method = request.method
        switch method {
        case .get where request.body == .none:
            check(ccurl_setopt_long(easy, CURLOPT_HTTPGET, 1))
        case .head:
            check(ccurl_setopt_long(easy, CURLOPT_NOBODY, 1))
        default:
            break
        }

        let code: CURLcode
        switch request.body {
        case .none where method == .get || method == .head:
            code = failed == CURLE_OK ? curl_easy_perform(easy) : failed
        case .none:
            code = "".withCString { empty in
                configureBytesBody(easy, method: method, pointer: UnsafeRawPointer(empty), count: 0, check: check)
                return failed == CURLE_OK ? curl_easy_perform(easy) : failed
            }
        case .bytes(let bytes):
            code = bytes.withUnsafeBytes { raw in
                "".withCString { empty in
                    configureBytesBody(easy, method: method, pointer: raw.baseAddress ?? UnsafeRawPointer(empty), count: raw.count, check: check)
                    return failed == CURLE_OK ? curl_easy_perform(easy) : failed
                }
            }
        case .file(let path, let offset, let length):
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return .failure(.invalidRequest("cannot open the body file \(path): \(String(cString: strerror(errno)))")) }
            ctx.fd = fd
            ctx.fileBase = offset
            ctx.fileLength = length
            guard lseek(fd, off_t(offset), SEEK_SET) == off_t(offset) else {
                return .failure(.invalidRequest("cannot seek in the body file \(path)"))
            }
            if method == .put {
                check(ccurl_setopt_long(easy, CURLOPT_UPLOAD, 1))
                check(ccurl_setopt_off(easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(length)))
            } else {
                check(ccurl_setopt_long(easy, CURLOPT_POST, 1))
                check(ccurl_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(length)))
                if method != .post { check(method.rawValue.withCString { ccurl_setopt_ptr(easy, CURLOPT_CUSTOMREQUEST, $0) }) }
            }
            check(ccurl_setopt_read_function(easy) { buffer, size, count, context in
                let ctx = Unmanaged<CurlTransferContext>.fromOpaque(context!).takeUnretainedValue()
                let want = min(Int64(size * count), ctx.fileLength - ctx.fileSent)
                guard want > 0, let buffer else { return 0 }
                while true {
                    let n = Glibc.read(ctx.fd, buffer, Int(want))
                    if n < 0 && errno == EINTR { continue }
                    if n <= 0 {
                        ctx.readFailed = true
                        return 0x1000_0000 // CURL_READFUNC_ABORT
                    }
                    ctx.fileSent += Int64(n)
                    return n
                }
            })
            check(ccurl_setopt_ptr(easy, CURLOPT_READDATA, ctxPointer))
            check(ccurl_setopt_seek_function(easy) { context, offset, origin in
                let ctx = Unmanaged<CurlTransferContext>.fromOpaque(context!).takeUnretainedValue()
                guard origin == SEEK_SET, offset >= 0, Int64(offset) <= ctx.fileLength else { return 2 } // CANTSEEK
                let target = ctx.fileBase + Int64(offset)
                guard lseek(ctx.fd, off_t(target), SEEK_SET) == off_t(target) else { return 1 } // FAIL
                ctx.fileSent = Int64(offset)
                return 0 // CURL_SEEKFUNC_OK
            })
            check(ccurl_setopt_ptr(easy, CURLOPT_SEEKDATA, ctxPointer))
            code = failed == CURLE_OK ? curl_easy_perform(easy) : failed
        }

        if code == CURLE_OK {
            var status = 0
            _ = ccurl_getinfo_long(easy, CURLINFO_RESPONSE_CODE, &status)
            return .success(HTTPResponse(status: status, headers: ctx.headers, body: ctx.body))
        }
        if job.isCancelled && code == CURLE_ABORTED_BY_CALLBACK { return .failure(.cancelled) }
        if ctx.readFailed { return .failure(.invalidRequest("reading the request body file failed")) }
        if ctx.overflow {
            return .failure(.transport(code: Int(code.rawValue), message: "response body larger than \(ctx.maxBytes) bytes"))
        }
        var message = String(cString: errorBuffer)
        if message.isEmpty { message = String(cString: curl_easy_strerror(code)) }
        return .failure(.transport(code: Int(code.rawValue), message: message))
    }

    /// A body from memory: POST as such, other methods as a custom request carrying the body.
    /// libcurl does not copy `pointer` (CURLOPT_POSTFIELDS); it must outlive the perform.
    private static func configureBytesBody(
        _ easy: UnsafeMutableRawPointer, method: HTTPRequest.Method, pointer: UnsafeRawPointer, count: Int,
        check: (CURLcode) -> Void
    ) {
        check(ccurl_setopt_long(easy, CURLOPT_POST, 1))
        check(ccurl_setopt_off(easy, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(count)))
        check(ccurl_setopt_ptr(easy, CURLOPT_POSTFIELDS, pointer))
        if method != .post { check(method.rawValue.withCString { ccurl_setopt_ptr(easy, CURLOPT_CUSTOMREQUEST, $0) }) }
    }

    private static func milliseconds(_ d: Duration) -> Int {
        let (s, atto) = d.components
        return max(1, Int(s) * 1000 + Int(atto / 1_000_000_000_000_000))
    }
}
