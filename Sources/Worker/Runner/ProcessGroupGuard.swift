import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Makes a trainer's process group die with the worker. A worker killed with SIGKILL (or
/// crashing) cannot stop its trainer, and `PR_SET_PDEATHSIG` would reach only the trainer itself,
/// not its data-loader workers. So next to each group runs a tiny guard, `/bin/sh` blocked reading
/// a pipe whose only write end the worker holds: when the worker dies for any reason the kernel
/// closes that end, the read returns, and the guard sends SIGKILL to the whole group.
///
/// On a normal end (the group is empty) the worker stops the guard first and only then closes the
/// pipe, so the guard never signals a group id that may have been reused.
struct ProcessGroupGuard: Sendable {
    /// The guard's pid.
    let pid: Int32
    /// The worker's end of the lifeline (close-on-exec: no other child inherits it).
    private let lifeline: Int32

    /// Starts a guard for `group`. Nil when it cannot be started (the trainer then runs without
    /// one; the caller logs that the group will not die with the worker).
    init?(group: ProcessGroup) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { return nil }
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[0], 0)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addclose(&actions, fds[1])
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own group: signals to the trainer's group (or the terminal's) do not reach it.
        ProcessSpawner.leadNewGroupWithDefaultSignals(&attributes)
        // `read` returns at end of file, which is the worker's death; then the group is killed.
        let words: [String] = ["sh", "-c", "read -r _; exec /bin/kill -s KILL -- -\"$1\"", "tts-group-guard", String(group.id)]
        let args = words.map { strdup($0) }
        defer { args.forEach { free($0) } }
        var env: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/bin:/bin"), nil]
        defer { env.forEach { free($0) } }
        var child: pid_t = 0
        let rc = (args + [nil]).withUnsafeBufferPointer { a in
            env.withUnsafeMutableBufferPointer { e in posix_spawn(&child, "/bin/sh", &actions, &attributes, a.baseAddress!, e.baseAddress!) }
        }
        close(fds[0])
        guard rc == 0 else {
            close(fds[1])
            return nil
        }
        pid = child
        lifeline = fds[1]
    }

    /// Stops the guard without letting it signal anything (the group has ended), then closes the
    /// lifeline.
    func dismiss() {
        kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        close(lifeline)
    }

    /// What the kernel does when the worker dies: closes the worker's end (tests).
    func closeLifeline() { close(lifeline) }
}
