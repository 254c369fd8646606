import Foundation
import Shared
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Runs one command (a trainer) as the leader of its own process group and watches it.
///
/// - **Start**: `posix_spawn` of the argv (no shell) with a new process group, the working
///   directory and environment of its ``CommandSpec``, stdin from `/dev/null`, every signal at its
///   default disposition and no other descriptor of the worker inherited.
/// - **Output**: stdout and stderr are read on a dedicated thread and delivered line by line through
///   ``lines`` (which finishes once both pipes are closed and everything was delivered). The last
///   ``tailLineCount`` lines and the first CUDA out-of-memory line on stderr are kept for
///   ``CommandExit``.
/// - **Exit**: ``wait()`` returns once the leader has exited and been reaped, whatever it left
///   running in its group has been stopped (SIGTERM, then SIGKILL after ``leftoverGrace``: an
///   orphan must not keep holding a GPU), and its output has been delivered.
/// - **Stop**: ``terminate(grace:)`` sends SIGTERM to the whole group, then SIGKILL to the whole
///   group once `grace` has passed with any member still running.
///
/// - **Worker death**: a ``ProcessGroupGuard`` kills the group when the worker dies first, even
///   by SIGKILL, so no trainer outlives its worker and keeps a GPU.
///
/// A process that moves itself into another group or session (`setsid`) escapes the group and is
/// not stopped; the reads then stop one second after the leader's exit.
public final class CommandRunner: Sendable {
    /// The leader's process id, which is also its process group id.
    public let pid: Int32
    /// The process group of the command.
    public var group: ProcessGroup { ProcessGroup(id: pid) }
    /// The command's output, line by line: each stream in order, both streams interleaved as
    /// read. Iterate it once.
    public let lines: AsyncStream<CommandOutputLine>
    /// How many of the last lines a ``CommandExit`` carries.
    public let tailLineCount: Int
    /// How long members left in the group after the leader exited get between SIGTERM and SIGKILL.
    public let leftoverGrace: Duration

    private struct State: Sendable {
        var tail: [String] = []
        var outOfMemoryLine: String?
        var exit: CommandExit?
        var waiters: [CheckedContinuation<CommandExit, Never>] = []
        var terminationRequested = false
    }

    private let state = Mutex(State())
    /// Kills the group if the worker dies before it (see ``ProcessGroupGuard``); nil if it could not start.
    private let groupGuard: ProcessGroupGuard?
    /// True when the group is guarded: it dies with the worker, even on SIGKILL.
    public var diesWithWorker: Bool { groupGuard != nil }
    private let readerDone = DispatchSemaphore(value: 0)
    private let terminationDone = DispatchSemaphore(value: 0)

    /// Starts `spec`.
    /// - Parameters:
    ///   - tailLines: how many of the last output lines an unsuccessful ``CommandExit`` carries.
    ///   - leftoverGrace: SIGTERM-to-SIGKILL time for processes the leader leaves behind.
    ///   - workerEnvironment: the environment inherited (default: the worker's own).
    /// - Throws: ``CommandRunnerError`` when the program, its working directory or the pipes
    ///   cannot be set up; nothing is left running then.
    public init(_ spec: CommandSpec, tailLines: Int = 20, leftoverGrace: Duration = .seconds(2),
                workerEnvironment: [String: String] = ProcessInfo.processInfo.environment) throws(CommandRunnerError) {
        tailLineCount = max(0, tailLines)
        self.leftoverGrace = leftoverGrace
        let program = spec.argv.first ?? ""
        var out: [Int32] = [-1, -1]
        var err: [Int32] = [-1, -1]
        guard Self.makePipe(&out) else {
            throw CommandRunnerError(program: program, message: "cannot create a pipe: \(String(cString: strerror(errno))) (too many open files?)")
        }
        guard Self.makePipe(&err) else {
            let why = String(cString: strerror(errno))
            out.forEach { close($0) }
            throw CommandRunnerError(program: program, message: "cannot create a pipe: \(why) (too many open files?)")
        }
        do {
            pid = try ProcessSpawner.spawn(spec, environment: spec.resolvedEnvironment(worker: workerEnvironment),
                                           stdoutFD: out[1], stderrFD: err[1])
        } catch {
            (out + err).forEach { close($0) }
            throw error
        }
        close(out[1])
        close(err[1])
        groupGuard = ProcessGroupGuard(group: ProcessGroup(id: pid))
        let (stream, continuation) = AsyncStream.makeStream(of: CommandOutputLine.self, bufferingPolicy: .unbounded)
        lines = stream
        let reader = OutputPipeReader(stdout: out[0], stderr: err[0], onLine: { [self] line in
            state.withLock { s in
                if tailLineCount > 0 {
                    if s.tail.count == tailLineCount { s.tail.removeFirst() }
                    s.tail.append(line.text)
                }
                if line.stream == .stderr, s.outOfMemoryLine == nil, OutOfMemoryText.matches(line.text) {
                    s.outOfMemoryLine = line.text
                }
            }
            continuation.yield(line)
        }, onFinish: { [readerDone] in
            continuation.finish()
            readerDone.signal()
        })
        reader.start(name: "tts-output-\(pid)")
        let waiter = Thread { [self] in self.superviseExit(reader: reader) }
        waiter.name = "tts-wait-\(pid)"
        waiter.start()
    }

    /// A close-on-exec pipe (`pipe2` is not visible through Swift's Glibc module). Another thread
    /// spawning between the two calls could inherit it; the reader's stop deadline bounds that.
    private static func makePipe(_ fds: inout [Int32]) -> Bool {
        guard pipe(&fds) == 0 else { return false }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return true
    }

    /// Waits until the command has exited, its group is empty and its output delivered. Not
    /// cancellable: call ``terminate(grace:)`` to make it end. Returns the same value every time.
    public func wait() async -> CommandExit {
        await withCheckedContinuation { (c: CheckedContinuation<CommandExit, Never>) in
            let done = state.withLock { s -> CommandExit? in
                if let exit = s.exit { return exit }
                s.waiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    /// The exit, once known.
    public var exit: CommandExit? { state.withLock { $0.exit } }

    /// Stops the command and everything in its group: SIGTERM to the group at once, SIGKILL to
    /// the group when a member still runs after `grace`. Returns at once (the escalation runs on
    /// its own thread); only the first call counts. Await ``wait()`` for the outcome.
    public func terminate(grace: Duration = .seconds(10)) {
        let first = state.withLock { s -> Bool in
            defer { s.terminationRequested = true }
            return !s.terminationRequested && s.exit == nil
        }
        guard first else { return }
        let group = self.group
        let done = terminationDone
        let thread = Thread {
            Self.stop(group, grace: grace)
            done.signal()
        }
        thread.name = "tts-term-\(pid)"
        thread.start()
    }

    /// SIGTERM to `group`, wait up to `grace` for it to empty, then SIGKILL (``ProcessGroup/stop(grace:)``).
    static func stop(_ group: ProcessGroup, grace: Duration) { group.stop(grace: grace) }

    /// The waiter thread: reap the leader, stop its leftovers, let the reader drain, resolve.
    private func superviseExit(reader: OutputPipeReader) {
        var status: Int32 = 0
        var reaped = false
        while true {
            let r = waitpid(pid, &status, 0)
            if r == pid { reaped = true; break }
            if r < 0 && errno == EINTR { continue }
            break // ECHILD: someone else reaped it (a SIGCHLD handler with waitpid(-1))
        }
        if state.withLock({ $0.terminationRequested }) {
            terminationDone.wait()
            terminationDone.signal()
        } else if group.hasLiveMembers {
            Self.stop(group, grace: leftoverGrace)
        }
        groupGuard?.dismiss()
        reader.stop(at: .now + .seconds(1))
        readerDone.wait()
        let (waiters, exit) = state.withLock { s -> ([CheckedContinuation<CommandExit, Never>], CommandExit) in
            let exit: CommandExit = reaped
                ? CommandExit.classify(waitStatus: status, outOfMemoryLine: s.outOfMemoryLine, lastLines: s.tail)
                : .failed(code: -1, lastLines: s.tail + ["(the exit status of process \(pid) was collected elsewhere)"])
            s.exit = exit
            defer { s.waiters = [] }
            return (s.waiters, exit)
        }
        waiters.forEach { $0.resume(returning: exit) }
    }
}
