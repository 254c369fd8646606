import CNNG
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Monotonic time in nanoseconds (`CLOCK_MONOTONIC`, cheap enough for the hot path).
@inline(__always)
func monotonicNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

/// What one phase of the load generator measured.
struct PhaseResult: Sendable {
    var wallSeconds: Double
    /// Round trips of every successful request, in nanoseconds.
    var latencies: [UInt64]
    var errors: Int
    /// Error descriptions with counts (first ones only, see ``ErrorLog``).
    var errorKinds: [String: Int]
    /// Successful requests completed between the end of the warm-up and the stop signal.
    var windowCompleted: Int
    var windowSeconds: Double
    /// Ticks of the 1 Hz schedule missed because the previous request was still in flight
    /// (thread pacing: the tick is skipped; sleep-aio: the next request goes out at once).
    var lateTicks: Int
    /// Generator CPU time (user + system, whole process) during the phase.
    var generatorCPUSeconds: Double

    var throughput: Double { windowSeconds > 0 ? Double(windowCompleted) / windowSeconds : 0 }
}

/// How the paced phase times its requests.
enum Pacing: String, Sendable, CaseIterable {
    /// One pacer thread for all simulated workers fires each worker's request on its tick.
    case thread
    /// Each worker sleeps on its own aio with `nng_sleep_aio`. In nng 1.5.2 this makes the aio
    /// expiry threads busy-wait: expiry is `a_expire < now` on a millisecond clock, and the
    /// expiry loop wakes at `now == a_expire`, so it rescans its whole list for the rest of that
    /// millisecond (src/core/aio.c `nni_aio_expire_loop`). With 1,000 workers there is a
    /// deadline almost every millisecond: measured ≈ 110 % CPU in the generator at 1,000 req/s.
    case sleepAIO = "sleep-aio"
}

/// Shared state of one load generator: the stop flag, counters and connection events. Touched
/// from nng's callback threads and the pacer thread, hence atomics only.
final class RunControl: Sendable {
    let stopping = Atomic<Bool>(false)
    /// Workers with an aio operation pending (a request, or a sleep), or about to start one.
    let armed = Atomic<Int>(0)
    /// Successful round trips since the generator was opened.
    let completed = Atomic<Int>(0)
    /// Ticks of the paced schedule that found the previous request still in flight.
    let lateTicks = Atomic<Int>(0)
    let pacerRunning = Atomic<Bool>(false)
    let connects = Atomic<Int>(0)
    let disconnects = Atomic<Int>(0)
}

/// Error descriptions and counts, for the report. Errors are rare, so a lock is fine.
final class ErrorLog: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func record(_ what: String) {
        counts.withLock { c in
            if c[what] != nil || c.count < 32 { c[what, default: 0] += 1 } else { c["(other)", default: 0] += 1 }
        }
    }

    func take() -> [String: Int] { counts.withLock { c in defer { c = [:] }; return c } }
}

/// A flag another task sets to end a phase early (e.g. the soak's sampler when the coordinator
/// has died).
final class StopSignal: Sendable {
    private let flag = Atomic<Bool>(false)
    func set() { flag.store(true, ordering: .releasing) }
    var isSet: Bool { flag.load(ordering: .acquiring) }
}

/// Round trips, errors and late ticks bucketed by the window of time in which they ended, and
/// readable while the phase runs: the soak takes each window as soon as it is over. Window `i`
/// covers `origin + i·window ..< origin + (i+1)·window` (monotonic nanoseconds); anything after
/// the last window counts in the last one. Touched from nng's callback threads and the pacer
/// thread at a few hundred events per second, so one lock is cheap enough; the control-plane
/// benchmark does not use it (its saturated phase runs at tens of thousands per second).
final class WindowRecorder: Sendable {
    /// What one window collected.
    struct Tally: Sendable {
        /// Round trips of the successful requests, in nanoseconds.
        var latencies: [UInt64] = []
        var errors = 0
        var errorKinds: [String: Int] = [:]
        /// Ticks that found the worker's previous request still in flight (skipped heartbeats).
        var lateTicks = 0
    }

    let originNs: UInt64
    let windowNs: UInt64
    let windowCount: Int
    private let windows: Mutex<[Tally]>

    init(originNs: UInt64, windowNs: UInt64, windowCount: Int) {
        precondition(windowNs > 0 && windowCount > 0)
        self.originNs = originNs
        self.windowNs = windowNs
        self.windowCount = windowCount
        windows = Mutex([Tally](repeating: Tally(), count: windowCount))
    }

    private func index(_ t: UInt64) -> Int {
        t <= originNs ? 0 : min(windowCount - 1, Int((t - originNs) / windowNs))
    }

    func recordLatency(_ ns: UInt64, endedAt t: UInt64) {
        let i = index(t)
        windows.withLock { $0[i].latencies.append(ns) }
    }

    func recordError(_ what: String, at t: UInt64) {
        let i = index(t)
        windows.withLock { w in
            w[i].errors += 1
            if w[i].errorKinds[what] != nil || w[i].errorKinds.count < 8 { w[i].errorKinds[what, default: 0] += 1 }
        }
    }

    func recordLateTick(at t: UInt64) {
        let i = index(t)
        windows.withLock { $0[i].lateTicks += 1 }
    }

    /// Window `i`'s tally, which is cleared (its latencies are not kept twice).
    func take(_ i: Int) -> Tally {
        windows.withLock { w in
            defer { w[i] = Tally() }
            return w[i]
        }
    }
}

/// One simulated worker: a REQ context and one aio driven by a C callback.
///
/// States: waiting (for the pacer thread) or sleeping (`nng_sleep_aio`) → sending → receiving →
/// record → waiting/sleeping, or straight back to sending when unpaced. `@unchecked Sendable`:
/// `state` is atomic; the other mutable fields are touched by whoever moved the worker out of
/// `waiting`/`idle` (the pacer or the owner) and then by this aio's callback chain, which nng runs
/// one at a time, each handing over through the atomic state or nng's own locks. `recorder` is
/// set by the owner only while the worker is idle (before the phase arms it).
final class SimWorker: @unchecked Sendable {
    enum State: UInt8 { case idle, waiting, sleeping, sending, receiving }
    enum Mode { case saturate, pacer, sleepAIO }

    let index: Int
    let ctx: nng_ctx
    private(set) var aio: OpaquePointer?
    let request: [UInt8]
    let expectedReplyType: UInt8
    let control: RunControl
    let errorLog: ErrorLog
    let timeoutMs: Int32

    private let stateBits = Atomic<UInt8>(State.idle.rawValue)
    var state: State {
        get { State(rawValue: stateBits.load(ordering: .acquiring))! }
        set { stateBits.store(newValue.rawValue, ordering: .releasing) }
    }
    var mode = Mode.saturate
    var intervalNs: UInt64 = 0
    var nextTick: UInt64 = 0
    var sentAt: UInt64 = 0
    var latencies: [UInt64] = []
    var errors = 0
    var lastReplyBytes = 0
    /// Where this phase's round trips and errors also go, by time window (the soak), if anywhere.
    var recorder: WindowRecorder?

    init(index: Int, socket: nng_socket, request: [UInt8], expectedReplyType: UInt8, control: RunControl,
         errorLog: ErrorLog, timeoutMs: Int32) throws(BenchError) {
        self.index = index
        self.request = request
        self.expectedReplyType = expectedReplyType
        self.control = control
        self.errorLog = errorLog
        self.timeoutMs = timeoutMs
        var c = nng_ctx()
        let rv = nng_ctx_open(&c, socket)
        guard rv == 0 else { throw BenchError("open REQ context: \(nngText(rv))") }
        ctx = c
    }

    /// Allocates the aio with an unretained pointer to self: the generator keeps this object
    /// alive until after `nng_aio_free`.
    func allocateAIO() throws(BenchError) {
        var a: OpaquePointer?
        let rv = nng_aio_alloc(&a, simWorkerCallback, Unmanaged.passUnretained(self).toOpaque())
        guard rv == 0, let a else { throw BenchError("allocate aio: \(nngText(rv))") }
        aio = a
    }

    // MARK: arming (owner thread, worker idle)

    func startSaturate() {
        mode = .saturate
        control.armed.add(1, ordering: .relaxed)
        send()
    }

    func startPaced() {
        mode = .pacer
        state = .waiting
    }

    func startSleeping(intervalNs: UInt64, firstDelayNs: UInt64, now: UInt64) {
        mode = .sleepAIO
        self.intervalNs = intervalNs
        control.armed.add(1, ordering: .relaxed)
        nextTick = now &+ firstDelayNs
        sleep(untilNs: nextTick, now: now)
    }

    /// The pacer's tick: sends if the previous request is over. Returns false when it is not.
    func fire() -> Bool {
        guard stateBits.compareExchange(
            expected: State.waiting.rawValue, desired: State.sending.rawValue, ordering: .acquiringAndReleasing
        ).exchanged else { return false }
        control.armed.add(1, ordering: .relaxed)
        send()
        return true
    }

    /// After the phase: back to idle (owner thread, nothing pending).
    func reset() { state = .idle }

    // MARK: the state machine

    private func sleep(untilNs target: UInt64, now: UInt64) {
        let ms = target > now ? Int32(clamping: (target - now + 500_000) / 1_000_000) : 0
        if ms == 0 {
            send()
            return
        }
        state = .sleeping
        nng_sleep_aio(ms, aio)
    }

    private func send() {
        var msg: OpaquePointer?
        guard nng_msg_alloc(&msg, 0) == 0, let msg else {
            fail("allocate message")
            requestOver()
            return
        }
        _ = request.withUnsafeBytes { nng_msg_append(msg, $0.baseAddress, $0.count) }
        state = .sending
        nng_aio_set_msg(aio, msg)
        nng_aio_set_timeout(aio, timeoutMs)
        sentAt = monotonicNanos()
        nng_ctx_send(ctx, aio)
    }

    private func fail(_ what: String) {
        errors += 1
        errorLog.record(what)
        recorder?.recordError(what, at: monotonicNanos())
    }

    /// The current request is over: stop, wait for the next tick, or send again.
    private func requestOver() {
        if control.stopping.load(ordering: .acquiring) {
            state = .idle
            control.armed.subtract(1, ordering: .releasing)
            return
        }
        switch mode {
        case .saturate:
            send()
        case .pacer:
            state = .waiting
            control.armed.subtract(1, ordering: .releasing)
        case .sleepAIO:
            let now = monotonicNanos()
            nextTick &+= intervalNs
            if nextTick <= now {
                control.lateTicks.add(1, ordering: .relaxed)
                nextTick = now // resume the rhythm from here
            }
            sleep(untilNs: nextTick, now: now)
        }
    }

    /// The aio callback (an nng task thread): must not block.
    fileprivate func ioCompleted() {
        guard let aio else { return }
        let rv = nng_aio_result(aio)
        switch state {
        case .idle, .waiting:
            return
        case .sleeping:
            if control.stopping.load(ordering: .acquiring) {
                state = .idle
                control.armed.subtract(1, ordering: .releasing)
                return
            }
            send()
        case .sending:
            if rv != 0 {
                if let m = nng_aio_get_msg(aio) {
                    nng_aio_set_msg(aio, nil)
                    nng_msg_free(m)
                }
                fail("send: \(nngText(rv))")
                requestOver()
                return
            }
            state = .receiving
            nng_aio_set_timeout(aio, timeoutMs)
            nng_ctx_recv(ctx, aio)
        case .receiving:
            let t = monotonicNanos()
            if rv != 0 {
                fail("receive: \(nngText(rv))")
            } else if let m = nng_aio_get_msg(aio) {
                nng_aio_set_msg(aio, nil)
                let len = nng_msg_len(m)
                let type: UInt8? = len >= 4 ? nng_msg_body(m)!.load(fromByteOffset: 3, as: UInt8.self) : nil
                lastReplyBytes = len
                if type == expectedReplyType {
                    latencies.append(t &- sentAt)
                    recorder?.recordLatency(t &- sentAt, endedAt: t)
                    control.completed.add(1, ordering: .relaxed)
                } else {
                    let bytes = [UInt8](UnsafeRawBufferPointer(start: nng_msg_body(m), count: len))
                    fail("unexpected reply: \(describeReply(bytes))")
                }
                nng_msg_free(m)
            } else {
                fail("receive: no message")
            }
            requestOver()
        }
    }
}

/// The C callback of every simulated worker's aio.
private let simWorkerCallback: @convention(c) (UnsafeMutableRawPointer?) -> Void = { arg in
    Unmanaged<SimWorker>.fromOpaque(arg!).takeUnretainedValue().ioCompleted()
}

/// Connection events of the generator's socket (runs with nng's socket lock held: record only).
private let pipeEventCallback: @convention(c) (nng_pipe, nng_pipe_ev, UnsafeMutableRawPointer?) -> Void = { _, ev, arg in
    let control = Unmanaged<RunControl>.fromOpaque(arg!).takeUnretainedValue()
    if ev == NNG_PIPE_EV_ADD_POST { control.connects.add(1, ordering: .relaxed) }
    if ev == NNG_PIPE_EV_REM_POST { control.disconnects.add(1, ordering: .relaxed) }
}

func nngText(_ rv: Int32) -> String { String(cString: nng_strerror(rv)) }

/// Sleeps the calling thread until `deadline` (monotonic nanoseconds) or for at most `capNs`.
private func sleepUntil(_ deadline: UInt64, capNs: UInt64) {
    let now = monotonicNanos()
    guard deadline > now else { return }
    let target = min(deadline, now + capNs)
    var ts = timespec(tv_sec: Int(target / 1_000_000_000), tv_nsec: Int(target % 1_000_000_000))
    while clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nil) == EINTR {}
}

/// N simulated workers, each a context on ONE REQ socket that dials the server.
///
/// Use from one thread (the bench's main task): `runPhase` arms every worker, waits, then stops
/// them and waits until each is idle; `close` frees the aios from that thread, never from a
/// callback, and only then drops the workers.
final class LoadGenerator {
    let url: String
    private var socket = nng_socket()
    private let control = RunControl()
    private let errorLog = ErrorLog()
    private(set) var workers: [SimWorker] = []
    let connections: Int
    private var closed = false

    /// - Parameters:
    ///   - requests: one pre-encoded request per simulated worker.
    ///   - expectedReplyType: byte 3 of a good reply (the envelope's type byte).
    init(url: String, requests: [[UInt8]], expectedReplyType: UInt8, timeoutMs: Int32, connections: Int = 1) throws(BenchError) {
        self.connections = max(1, connections)
        self.url = url
        var rv = nng_req0_open(&socket)
        guard rv == 0 else { throw BenchError("open REQ socket: \(nngText(rv))") }
        do throws(BenchError) {
            // At most once: no automatic resend (contexts copy this at nng_ctx_open).
            rv = nng_socket_set_ms(socket, NNG_OPT_REQ_RESENDTIME, -1)
            guard rv == 0 else { throw BenchError("disable REQ resend: \(nngText(rv))") }
            let arg = Unmanaged.passUnretained(control).toOpaque()
            _ = nng_pipe_notify(socket, NNG_PIPE_EV_ADD_POST, pipeEventCallback, arg)
            _ = nng_pipe_notify(socket, NNG_PIPE_EV_REM_POST, pipeEventCallback, arg)
            for (i, req) in requests.enumerated() {
                let w = try SimWorker(index: i, socket: socket, request: req, expectedReplyType: expectedReplyType,
                                      control: control, errorLog: errorLog, timeoutMs: timeoutMs)
                workers.append(w)
                try w.allocateAIO()
            }
            // One dialer per connection, all on this socket: REQ spreads requests over them.
            for _ in 0..<max(1, connections) {
                var d = nng_dialer()
                rv = nng_dialer_create(&d, socket, url)
                guard rv == 0 else { throw BenchError("dial \(url): \(nngText(rv))") }
                _ = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, 16 << 20)
                _ = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 100)
                _ = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 1000)
                rv = nng_dialer_start(d, Int32(NNG_FLAG_NONBLOCK))
                guard rv == 0 else { throw BenchError("dial \(url): \(nngText(rv))") }
            }
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    var connects: Int { control.connects.load(ordering: .relaxed) }
    var disconnects: Int { control.disconnects.load(ordering: .relaxed) }

    /// Waits until the dialer has connected.
    func waitConnected(timeoutSeconds: Double) async throws(BenchError) {
        let deadline = monotonicNanos() + UInt64(timeoutSeconds * 1e9)
        while control.connects.load(ordering: .relaxed) < connections {
            if monotonicNanos() > deadline { throw BenchError("could not connect to \(url) within \(timeoutSeconds) s") }
            try? await Task.sleep(for: .milliseconds(10))
        }
    }

    /// Runs one phase: every worker paced at `intervalMs` (worker i's ticks offset by
    /// i/N of an interval), or back to back when `intervalMs` is 0, for `seconds`; throughput
    /// counts the completions after `warmupSeconds`. With a `recorder`, every round trip, error
    /// and late tick is also recorded by time window; a set `stop` ends the phase early.
    func runPhase(intervalMs: Int, pacing: Pacing, seconds: Double, warmupSeconds: Double,
                  recorder: WindowRecorder? = nil, stop: StopSignal? = nil) async throws(BenchError) -> PhaseResult {
        precondition(!closed)
        control.stopping.store(false, ordering: .releasing)
        for w in workers {
            nng_aio_wait(w.aio) // a callback that just went idle has fully returned
            w.reset()
            w.recorder = recorder
            w.latencies.removeAll(keepingCapacity: true)
            w.latencies.reserveCapacity(intervalMs > 0 ? Int(seconds * 1000 / Double(intervalMs)) + 4 : 1024)
            w.errors = 0
        }
        control.lateTicks.store(0, ordering: .relaxed)
        _ = errorLog.take()
        let cpu0 = processCPUSeconds()
        let t0 = monotonicNanos()
        let intervalNs = UInt64(intervalMs) * 1_000_000
        let n = UInt64(workers.count)
        if intervalMs == 0 {
            for w in workers { w.startSaturate() }
        } else if pacing == .sleepAIO {
            for w in workers {
                w.startSleeping(intervalNs: intervalNs, firstDelayNs: intervalNs * UInt64(w.index) / max(n, 1), now: monotonicNanos())
            }
        } else {
            for w in workers { w.startPaced() }
            startPacer(workers: workers, intervalNs: intervalNs, t0: t0, recorder: recorder)
        }
        try? await Task.sleep(for: .milliseconds(Int(warmupSeconds * 1000)))
        let tw = monotonicNanos()
        let cw = control.completed.load(ordering: .relaxed)
        let end = t0 + UInt64(seconds * 1e9)
        while monotonicNanos() < end, !(stop?.isSet ?? false) {
            try? await Task.sleep(for: .milliseconds(max(1, min(100, Int((end - min(end, monotonicNanos())) / 1_000_000)))))
        }
        let te = monotonicNanos()
        let ce = control.completed.load(ordering: .relaxed)
        control.stopping.store(true, ordering: .releasing)
        try await waitIdle(timeoutSeconds: Double(intervalMs) / 1000 + Double(workers.first?.timeoutMs ?? 5000) / 1000 + 5)
        let cpu1 = processCPUSeconds()

        var all: [UInt64] = []
        all.reserveCapacity(workers.reduce(0) { $0 + $1.latencies.count })
        var errors = 0
        for w in workers {
            all.append(contentsOf: w.latencies)
            errors += w.errors
        }
        return PhaseResult(
            wallSeconds: Double(te - t0) / 1e9, latencies: all, errors: errors, errorKinds: errorLog.take(),
            windowCompleted: ce - cw, windowSeconds: Double(te - tw) / 1e9,
            lateTicks: control.lateTicks.load(ordering: .relaxed), generatorCPUSeconds: cpu1 - cpu0)
    }

    /// One thread paces every worker: worker i is due at t0 + k·interval + i·interval/N. A
    /// worker whose previous request is still in flight skips that tick (counted as late).
    private func startPacer(workers: [SimWorker], intervalNs: UInt64, t0: UInt64, recorder: WindowRecorder?) {
        let control = self.control
        control.pacerRunning.store(true, ordering: .releasing)
        let thread = Thread {
            let n = UInt64(workers.count)
            var k: UInt64 = 0
            outer: while true {
                for w in workers {
                    let due = t0 + k * intervalNs + intervalNs * UInt64(w.index) / max(n, 1)
                    while monotonicNanos() < due {
                        if control.stopping.load(ordering: .acquiring) { break outer }
                        sleepUntil(due, capNs: 50_000_000)
                    }
                    if control.stopping.load(ordering: .acquiring) { break outer }
                    if !w.fire() {
                        control.lateTicks.add(1, ordering: .relaxed)
                        recorder?.recordLateTick(at: monotonicNanos())
                    }
                }
                k += 1
            }
            control.pacerRunning.store(false, ordering: .releasing)
        }
        thread.name = "tts-bench pacer"
        thread.start()
    }

    /// Waits until the pacer has exited and no worker has an operation pending; cancels what
    /// is still pending after `timeoutSeconds` (sleeps, or requests never answered).
    private func waitIdle(timeoutSeconds: Double) async throws(BenchError) {
        let deadline = monotonicNanos() + UInt64(timeoutSeconds * 1e9)
        while control.pacerRunning.load(ordering: .acquiring) || control.armed.load(ordering: .acquiring) > 0 {
            if monotonicNanos() > deadline {
                for w in workers { nng_aio_cancel(w.aio) }
                try? await Task.sleep(for: .milliseconds(500))
                if control.pacerRunning.load(ordering: .acquiring) || control.armed.load(ordering: .acquiring) > 0 {
                    throw BenchError("\(control.armed.load(ordering: .acquiring)) simulated workers did not stop")
                }
                break
            }
            try? await Task.sleep(for: .milliseconds(20))
        }
        for w in workers {
            nng_aio_wait(w.aio)
            w.reset()
        }
    }

    /// Frees every aio (this thread, not a callback), then closes the socket. Idempotent.
    func close() {
        if closed { return }
        closed = true
        control.stopping.store(true, ordering: .releasing)
        for w in workers where w.aio != nil { nng_aio_cancel(w.aio) }
        for w in workers where w.aio != nil { nng_aio_free(w.aio) }
        nng_close(socket)
        workers = []
    }
}

/// CPU time (user + system) of this process so far.
func processCPUSeconds() -> Double {
    var ru = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &ru)
    return Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6
        + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
}
