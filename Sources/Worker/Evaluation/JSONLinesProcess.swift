import Foundation
import Logging
import Shared
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// One running persistent program that speaks JSON lines: a `persistent` synthesizer
/// (docs/SYNTHESIZER.md) or a `persistent` ASR (docs/ASR.md). The child process, its stdin
/// (written to), its stdout (protocol lines, decoded as `Message`) and its stderr (logged).
/// Internal to ``PersistentProcess``, which decides what the lines mean for a request.
///
/// - **Start**: `posix_spawn` of the argv (no shell) as the leader of a new process group, every
///   signal at its default disposition, no descriptor of the worker inherited beyond 0, 1, 2. Its
///   stdin is one end of a Unix socket pair rather than a pipe, so that writing to a program
///   that died is an `EPIPE` error (`MSG_NOSIGNAL`), never a SIGPIPE that would kill the worker.
///   A ``ProcessGroupGuard`` kills the group if the worker dies first.
/// - **stdout**: split into lines on a dedicated thread. A line that is a JSON object with an `id`
///   or a `ready` key is a protocol ``Event/message(_:)``; any other line (libraries print to
///   stdout) is logged and ignored. A line longer than ``JSONLines/maximumLineBytes`` is a
///   ``Event/protocolError(_:)`` (never buffered without bound). End of file is ``Event/closed``.
/// - **stderr**: logged line by line; the last lines are kept for error messages.
/// - **Stop**: ``closeInput()`` ends stdin (the contract says the process then exits 0 by
///   itself); ``terminate(grace:)`` sends SIGTERM to the group, then SIGKILL once `grace` has
///   passed with a member still running. ``waitExit()`` returns once the leader is reaped, the group
///   is empty and the output threads are done.
final class JSONLinesProcess<Message: JSONLinesMessage>: Sendable {
    /// What the stdout of the process said.
    enum Event: Sendable, Equatable {
        /// A protocol line.
        case message(Message)
        /// A line that breaks the protocol (too long, or a JSON object that is not a valid message).
        case protocolError(String)
        /// stdout reached end of file: the process exited or closed it.
        case closed
    }

    /// What waiting for the next event gave.
    enum Wait: Sendable, Equatable {
        case event(Event)
        case timedOut
        case cancelled
    }

    /// The leader's pid, which is also the process group id.
    let pid: Int32

    private struct State: Sendable {
        var events: [Event] = []
        var waiter: (token: UInt64, continuation: CheckedContinuation<Wait, Never>)?
        var nextToken: UInt64 = 0
        var inputOpen = true
        var stderrTail: [String] = []
        var outOfMemoryLine: String?
        var waitStatus: Int32?
        var finished = false
        var exitWaiters: [CheckedContinuation<Void, Never>] = []
        var terminationRequested = false
    }

    private let state = Mutex(State())
    /// Our end of the stdin socket pair. Shut down (not closed) by ``closeInput()`` so the number
    /// is never reused while a write may still use it; closed in `deinit`.
    private let input: Int32
    private let groupGuard: ProcessGroupGuard?
    private let logger: Logger
    private let readerStop = Mutex<ContinuousClock.Instant?>(nil)
    private let readerDone = DispatchSemaphore(value: 0)
    private let terminationDone = DispatchSemaphore(value: 0)

    /// Starts `argv` with `environment` (the whole environment of the process).
    /// - Throws: ``ShardFailure`` when the program cannot be found or started; nothing runs then.
    init(argv: [String], environment: [String: String], logger: Logger) throws(ShardFailure) {
        self.logger = logger
        let noun = Message.role.noun
        guard let program = argv.first, !program.isEmpty else { throw ShardFailure("the persistent \(noun)'s command is empty") }
        let path: String
        do { path = try ProcessSpawner.resolve(program, workingDirectory: nil, path: environment["PATH"]) } catch {
            throw ShardFailure("cannot start the \(noun) \(program): \(error.message)")
        }
        var stdinPair: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &stdinPair) == 0 else {
            throw ShardFailure("cannot create the \(noun)'s stdin: \(String(cString: strerror(errno))) (too many open files?)")
        }
        var out: [Int32] = [-1, -1], err: [Int32] = [-1, -1]
        guard Self.makePipe(&out) else {
            let why = String(cString: strerror(errno))
            stdinPair.forEach { close($0) }
            throw ShardFailure("cannot create a pipe: \(why) (too many open files?)")
        }
        guard Self.makePipe(&err) else {
            let why = String(cString: strerror(errno))
            (stdinPair + out).forEach { close($0) }
            throw ShardFailure("cannot create a pipe: \(why) (too many open files?)")
        }
        let spawned = Self.spawn(path: path, argv: argv, environment: environment, stdin: stdinPair[1], stdout: out[1], stderr: err[1])
        close(stdinPair[1])
        close(out[1])
        close(err[1])
        guard case .success(let child) = spawned else {
            [stdinPair[0], out[0], err[0]].forEach { close($0) }
            if case .failure(let why) = spawned { throw ShardFailure("cannot start the \(noun) \(program): \(why)") }
            throw ShardFailure("cannot start the \(noun) \(program)")
        }
        pid = child
        input = stdinPair[0]
        groupGuard = ProcessGroupGuard(group: ProcessGroup(id: child))
        if groupGuard == nil {
            logger.warning("\(noun) \(child): the process group guard could not start; the \(noun) will not die with the worker")
        }
        let stdoutFD = out[0], stderrFD = err[0]
        let reader = Thread { [self] in self.readLoop(stdout: stdoutFD, stderr: stderrFD) }
        reader.name = "tts-\(Message.role.tag)-out-\(child)"
        reader.start()
        let waiter = Thread { [self] in self.superviseExit() }
        waiter.name = "tts-\(Message.role.tag)-wait-\(child)"
        waiter.start()
    }

    deinit { close(input) }

    // MARK: Talking to it

    /// Writes `bytes` (one request line) to stdin. Returns nil once written, else why not.
    func send(_ bytes: [UInt8], deadline: ContinuousClock.Instant) async -> String? {
        var offset = 0
        while offset < bytes.count {
            guard state.withLock({ $0.inputOpen }) else { return "its stdin is closed" }
            let n = bytes.withUnsafeBytes { raw in
                Glibc.send(input, raw.baseAddress! + offset, raw.count - offset, Int32(MSG_NOSIGNAL) | Int32(MSG_DONTWAIT))
            }
            if n > 0 {
                offset += n
                continue
            }
            let e = errno
            guard n < 0, e == EAGAIN || e == EWOULDBLOCK || e == EINTR else {
                return e == EPIPE || e == ECONNRESET ? "it no longer reads its stdin (exited?)" : "cannot write to its stdin: \(String(cString: strerror(e)))"
            }
            if Task.isCancelled { return "cancelled" }
            if ContinuousClock.now >= deadline { return "it did not read its stdin in time" }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return nil
    }

    /// The next event from stdout, waiting at most until `deadline`; `.cancelled` at once when the
    /// task is cancelled (the process is left as it is: the caller stops it).
    func next(until deadline: ContinuousClock.Instant) async -> Wait {
        if let e = state.withLock({ s -> Event? in s.events.isEmpty ? nil : s.events.removeFirst() }) { return .event(e) }
        let token = state.withLock { s -> UInt64 in
            s.nextToken += 1
            return s.nextToken
        }
        let timer = Task { [self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            resumeWaiter(token: token, with: .timedOut)
        }
        defer { timer.cancel() }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Wait, Never>) in
                let immediate = state.withLock { s -> Wait? in
                    if !s.events.isEmpty { return .event(s.events.removeFirst()) }
                    if Task.isCancelled { return .cancelled }
                    if ContinuousClock.now >= deadline { return .timedOut }
                    s.waiter = (token, c)
                    return nil
                }
                if let immediate { c.resume(returning: immediate) }
            }
        } onCancel: {
            resumeWaiter(token: token, with: .cancelled)
        }
    }

    private func resumeWaiter(token: UInt64, with value: Wait) {
        let c = state.withLock { s -> CheckedContinuation<Wait, Never>? in
            guard let w = s.waiter, w.token == token else { return nil }
            s.waiter = nil
            return w.continuation
        }
        c?.resume(returning: value)
    }

    private func deliver(_ event: Event) {
        let c = state.withLock { s -> CheckedContinuation<Wait, Never>? in
            if let w = s.waiter {
                s.waiter = nil
                return w.continuation
            }
            s.events.append(event)
            return nil
        }
        c?.resume(returning: .event(event))
    }

    /// Ends its stdin: a well-behaved program exits 0 at end of file. Idempotent.
    func closeInput() {
        let first = state.withLock { s -> Bool in
            defer { s.inputOpen = false }
            return s.inputOpen
        }
        if first { shutdown(input, Int32(SHUT_WR)) }
    }

    /// True once the leader has exited, its group is empty and its output was read.
    var hasFinished: Bool { state.withLock { $0.finished } }

    /// The last lines it wrote to stderr.
    var stderrTail: [String] { state.withLock { $0.stderrTail } }

    /// How it ended (nil while it runs, or when someone else reaped it).
    var exit: CommandExit? {
        state.withLock { s in
            s.waitStatus.map { CommandExit.classify(waitStatus: $0, outOfMemoryLine: s.outOfMemoryLine, lastLines: s.stderrTail) }
        }
    }

    /// Waits until it has finished (see ``hasFinished``). Not cancellable: call
    /// ``terminate(grace:)`` first to bound it.
    func waitExit() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let done = state.withLock { s -> Bool in
                if s.finished { return true }
                s.exitWaiters.append(c)
                return false
            }
            if done { c.resume() }
        }
    }

    /// Waits until it has finished or `timeout` has passed; true if it finished. Works in a
    /// cancelled task too (the shutdown after a cancel needs it).
    func waitExit(timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !hasFinished && ContinuousClock.now < deadline {
            // A detached sleep: Task.sleep in a cancelled task would return at once.
            await Task.detached { try? await Task.sleep(for: .milliseconds(20)) }.value
        }
        return hasFinished
    }

    /// SIGTERM to the whole group now, SIGKILL to it once `grace` has passed with any member still
    /// running. Returns at once; only the first call counts.
    func terminate(grace: Duration) {
        let first = state.withLock { s -> Bool in
            defer { s.terminationRequested = true }
            return !s.terminationRequested && !s.finished
        }
        guard first else { return }
        let group = ProcessGroup(id: pid)
        let done = terminationDone
        let thread = Thread {
            Self.stop(group, grace: grace)
            done.signal()
        }
        thread.name = "tts-\(Message.role.tag)-term-\(pid)"
        thread.start()
    }

    // MARK: Threads

    /// SIGTERM to `group`, up to `grace` for it to empty, then SIGKILL (``ProcessGroup/stop(grace:)``).
    private static func stop(_ group: ProcessGroup, grace: Duration) { group.stop(grace: grace) }

    /// Reaps the leader, stops what it left in its group, lets the reader finish, resolves waiters.
    private func superviseExit() {
        var status: Int32 = 0
        var reaped = false
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid { reaped = true; break }
            if r < 0 && errno == EINTR { continue }
            break
        }
        let group = ProcessGroup(id: pid)
        if state.withLock({ $0.terminationRequested }) {
            terminationDone.wait()
            terminationDone.signal()
        } else if group.hasLiveMembers {
            Self.stop(group, grace: .seconds(2))
        }
        groupGuard?.dismiss()
        readerStop.withLock { $0 = ContinuousClock.now + .seconds(1) }
        readerDone.wait()
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            s.waitStatus = reaped ? status : nil
            s.finished = true
            defer { s.exitWaiters = [] }
            return s.exitWaiters
        }
        waiters.forEach { $0.resume() }
    }

    /// Reads stdout (protocol lines) and stderr (logged) until both end or the stop deadline.
    private func readLoop(stdout: Int32, stderr: Int32) {
        var fds: [Int32] = [stdout, stderr]
        var outLine = BoundedLine(limit: JSONLines.maximumLineBytes)
        var errLine = BoundedLine(limit: JSONLines.maximumStderrLineBytes)
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while fds.contains(where: { $0 >= 0 }) {
            if let deadline = readerStop.withLock({ $0 }), ContinuousClock.now >= deadline { break }
            var polled = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&polled, nfds_t(polled.count), 100)
            if ready < 0 && errno != EINTR { break }
            guard ready > 0 else { continue }
            for i in fds.indices where fds[i] >= 0 && polled[i].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(fds[i], $0.baseAddress, $0.count) }
                if n > 0 {
                    if i == 0 {
                        outLine.append(chunk[0..<n], onLine: stdoutLine, onOverflow: {
                            self.deliver(.protocolError("a stdout line longer than \(JSONLines.maximumLineBytes >> 20) MiB"))
                        })
                    } else {
                        errLine.append(chunk[0..<n], onLine: stderrLine, onOverflow: nil)
                    }
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(fds[i])
                    fds[i] = -1
                    if i == 0 {
                        // End of stdout: whatever it still says on stderr, it can no longer answer.
                        if let rest = outLine.remainder { stdoutLine(rest) }
                        deliver(.closed)
                    }
                }
            }
        }
        if fds[0] >= 0 {
            if let rest = outLine.remainder { stdoutLine(rest) }
            deliver(.closed)
        }
        for fd in fds where fd >= 0 { close(fd) }
        if let rest = errLine.remainder { stderrLine(rest) }
        readerDone.signal()
    }

    private func stdoutLine(_ bytes: ArraySlice<UInt8>) {
        var line = bytes
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        switch Message.parse(line) {
        case .message(let m): deliver(.message(m))
        case .malformed(let why): deliver(.protocolError(why))
        case .noise:
            let text = String(decoding: line, as: UTF8.self)
            if !text.trimmingCharacters(in: .whitespaces).isEmpty { logger.info("\(Message.role.noun) \(pid) (stdout, not a protocol line): \(text)") }
        }
    }

    private func stderrLine(_ bytes: ArraySlice<UInt8>) {
        var line = bytes
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        let text = String(decoding: line, as: UTF8.self)
        state.withLock { s in
            if s.stderrTail.count == JSONLines.tailLines { s.stderrTail.removeFirst() }
            s.stderrTail.append(text)
            if s.outOfMemoryLine == nil, OutOfMemoryText.matches(text) { s.outOfMemoryLine = text }
        }
        logger.info("\(Message.role.noun) \(pid): \(text)")
    }

    // MARK: Spawning

    /// A close-on-exec pipe (see ``CommandRunner``: `pipe2` is not visible through Glibc).
    private static func makePipe(_ fds: inout [Int32]) -> Bool {
        guard pipe(&fds) == 0 else { return false }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return true
    }

    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    /// `posix_spawn` with the given descriptors as 0, 1, 2, in a new process group, every signal at
    /// its default disposition and unblocked.
    private static func spawn(path: String, argv: [String], environment: [String: String],
                              stdin: Int32, stdout: Int32, stderr: Int32) -> Result<Int32, SpawnError> {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        posix_spawn_file_actions_adddup2(&actions, stdout, 1)
        posix_spawn_file_actions_adddup2(&actions, stderr, 2)
        if let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, "posix_spawn_file_actions_addclosefrom_np") {
            _ = unsafeBitCast(sym, to: AddCloseFrom.self)(&actions, 3)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        ProcessSpawner.leadNewGroupWithDefaultSignals(&attributes)
        let args = argv.map { strdup($0) }
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
        defer {
            args.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = (args + [nil]).withUnsafeBufferPointer { a in
            (envp + [nil]).withUnsafeBufferPointer { e in posix_spawn(&pid, path, &actions, &attributes, a.baseAddress!, e.baseAddress!) }
        }
        guard rc == 0 else { return .failure(SpawnError(message: "posix_spawn failed: \(String(cString: strerror(rc)))")) }
        return .success(pid)
    }

    struct SpawnError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }
}

/// The limits of ``JSONLinesProcess`` (shared by every message type).
enum JSONLines {
    /// The longest stdout line accepted (a protocol line is a few hundred bytes).
    static let maximumLineBytes = 1 << 20
    /// The longest stderr line logged as one (longer ones are logged in pieces).
    static let maximumStderrLineBytes = 64 << 10
    /// How many of the last stderr lines ``JSONLinesProcess/stderrTail`` keeps.
    static let tailLines = 12
}
