import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// A process group started by ``CommandRunner``: the trainer is its leader, and everything the
/// trainer starts (data-loader workers, `subprocess` children) belongs to it unless it moves itself
/// out with `setsid`/`setpgid`. Signalling the group reaches the whole tree at once.
public struct ProcessGroup: Sendable, Equatable {
    /// The group id: the leader's process id.
    public let id: Int32

    public init(id: Int32) { self.id = id }

    /// SIGTERM to the group, up to `grace` for it to empty, then SIGKILL and a bounded wait (5 s)
    /// for the kernel to finish the kills. Blocks the calling thread: call it off the cooperative pool.
    public func stop(grace: Duration) {
        guard send(SIGTERM) || hasLiveMembers else { return }
        let clock = ContinuousClock()
        let deadline = clock.now + grace
        while clock.now < deadline && hasLiveMembers { usleep(20_000) }
        guard hasLiveMembers else { return }
        send(SIGKILL)
        let killDeadline = clock.now + .seconds(5)
        while clock.now < killDeadline && hasLiveMembers { usleep(20_000) }
    }

    /// Sends `signal` to every process of the group. Returns false when the group has no member
    /// left (`ESRCH`) or the signal could not be sent.
    @discardableResult
    public func send(_ signal: Int32) -> Bool {
        guard id > 1 else { return false } // never signal group 0 (our own) or 1
        return kill(-id, signal) == 0
    }

    /// True while a member of the group is still running. Zombies (exited, not yet reaped by their
    /// parent — orphans whose new parent never reaps them, as under some container init
    /// processes) do not count: they hold no resources and cannot be killed any further.
    public var hasLiveMembers: Bool {
        guard id > 1 else { return false }
        if kill(-id, 0) != 0 { return errno == EPERM } // ESRCH: nobody left
        return !Self.liveMembers(of: id).isEmpty
    }

    /// The running (non-zombie) processes whose process group is `group`, from `/proc`.
    public static func liveMembers(of group: Int32) -> [Int32] {
        guard let dir = opendir("/proc") else { return [] }
        defer { closedir(dir) }
        var found: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            guard let pid = Int32(name), let stat = ProcessStat.read(pid: pid) else { continue }
            if stat.processGroup == group && stat.isRunning { found.append(pid) }
        }
        return found
    }
}

/// The fields of `/proc/PID/stat` the runner needs.
public struct ProcessStat: Sendable, Equatable {
    /// The one-letter state (`R`, `S`, `D`, `Z` zombie, `X` dead, …).
    public var state: Character
    public var parent: Int32
    public var processGroup: Int32

    /// False for zombies and dead processes.
    public var isRunning: Bool { state != "Z" && state != "X" && state != "x" }

    /// Reads `/proc/PID/stat`; nil when the process does not exist (any more).
    public static func read(pid: Int32) -> ProcessStat? {
        let fd = open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 1024)
        let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return parse(String(decoding: buffer[0..<n], as: UTF8.self))
    }

    /// Parses the text of `/proc/PID/stat`: `pid (comm) state ppid pgrp …`. The command name may
    /// hold spaces and parentheses, so the fields are read after the last `)`.
    public static func parse(_ text: String) -> ProcessStat? {
        guard let close = text.lastIndex(of: ")") else { return nil }
        let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
        guard fields.count >= 3, let state = fields[0].first,
              let parent = Int32(fields[1]), let group = Int32(fields[2]) else { return nil }
        return ProcessStat(state: state, parent: parent, processGroup: group)
    }
}
