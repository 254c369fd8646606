import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Starts a program with `posix_spawn` in a new process group, stdin from `/dev/null` and
/// stdout/stderr into the given pipe write ends. Internal to ``CommandRunner``.
enum ProcessSpawner {
    /// `posix_spawn_file_actions_addchdir_np` (glibc ≥ 2.29) and `…_addclosefrom_np` (≥ 2.34) are
    /// not visible through Swift's Glibc module, so they are looked up at run time.
    private typealias AddChdir = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>) -> Int32
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32

    private static func symbol<T>(_ name: String, as _: T.Type) -> T? {
        guard let handle = dlopen(nil, RTLD_NOW), let sym = dlsym(handle, name) else { return nil }
        return unsafeBitCast(sym, to: T.self)
    }

    /// Starts `spec` and returns the child's pid (= its process group id).
    /// The pipe descriptors must be close-on-exec: the child gets them only as its fds 1 and 2.
    /// Spawn attributes for a child that leads a new process group, with no signal blocked and
    /// every signal at its default disposition: the worker ignores or handles SIGTERM/SIGINT itself
    /// (drain), and ignored dispositions would survive exec.
    static func leadNewGroupWithDefaultSignals(_ attributes: inout posix_spawnattr_t) {
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        posix_spawnattr_setpgroup(&attributes, 0) // a new group led by the child
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for s in 1..<32 where s != SIGKILL && s != SIGSTOP { sigaddset(&defaults, Int32(s)) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
    }

    static func spawn(_ spec: CommandSpec, environment: [String: String], stdoutFD: Int32, stderrFD: Int32) throws(CommandRunnerError) -> Int32 {
        guard let program = spec.argv.first, !program.isEmpty else {
            throw CommandRunnerError(program: "", message: "argv is empty (give the program and its arguments)")
        }
        if let dir = spec.workingDirectory {
            var isDir: ObjCBool = false
            guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
                throw CommandRunnerError(program: program, message: "the working directory \(dir) does not exist (create it or fix the job's workdir)")
            }
        }
        let path = try resolve(program, workingDirectory: spec.workingDirectory, path: environment["PATH"])

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, stdoutFD, 1)
        posix_spawn_file_actions_adddup2(&actions, stderrFD, 2)
        if let closeFrom = symbol("posix_spawn_file_actions_addclosefrom_np", as: AddCloseFrom.self) {
            _ = closeFrom(&actions, 3) // no descriptor of the worker (sockets, the spool) leaks into the trainer
        }
        if let dir = spec.workingDirectory {
            guard let chdir = symbol("posix_spawn_file_actions_addchdir_np", as: AddChdir.self) else {
                throw CommandRunnerError(program: program, message: "setting a working directory needs glibc 2.29 or later")
            }
            let rc = dir.withCString { chdir(&actions, $0) }
            guard rc == 0 else { throw CommandRunnerError(program: program, message: "working directory \(dir): \(String(cString: strerror(rc)))") }
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        leadNewGroupWithDefaultSignals(&attributes)

        let argv = spec.argv.map { strdup($0) }
        let envp = environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") }
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var pid: pid_t = 0
        let rc = (argv + [nil]).withUnsafeBufferPointer { a in
            (envp + [nil]).withUnsafeBufferPointer { e in
                posix_spawn(&pid, path, &actions, &attributes, a.baseAddress!, e.baseAddress!)
            }
        }
        guard rc == 0 else {
            let hint = rc == ENOENT ? " (check the program path and the working directory)"
                : rc == EACCES ? " (is it executable?)" : ""
            throw CommandRunnerError(program: program, message: "posix_spawn failed: \(String(cString: strerror(rc)))\(hint)")
        }
        return pid
    }

    /// The path to execute: `program` itself when it holds a `/` (relative to the working
    /// directory), else the first executable `PATH` entry.
    static func resolve(_ program: String, workingDirectory: String?, path: String?) throws(CommandRunnerError) -> String {
        if program.contains("/") {
            let full = program.hasPrefix("/") || workingDirectory == nil ? program : workingDirectory! + "/" + program
            guard access(full, X_OK) == 0 else {
                throw CommandRunnerError(program: program, message: "\(full) does not exist or is not executable")
            }
            return program
        }
        let searched = (path ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map(String.init)
        for dir in searched where !dir.isEmpty {
            let base = dir.hasPrefix("/") || workingDirectory == nil ? dir : workingDirectory! + "/" + dir
            let candidate = base + "/" + program
            var isDir: ObjCBool = false
            if access(candidate, X_OK) == 0, FileManager.default.fileExists(atPath: candidate, isDirectory: &isDir), !isDir.boolValue {
                return candidate
            }
        }
        throw CommandRunnerError(program: program, message: "not found in PATH \(searched.joined(separator: ":")) (give its full path or fix PATH in the job's env)")
    }
}
