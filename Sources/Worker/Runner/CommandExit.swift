#if canImport(Glibc)
import Glibc
#endif

/// How a command run by ``CommandRunner`` ended.
///
/// `lastLines` are the last lines the command printed (both streams, in arrival order), for the
/// user to see why it stopped.
public enum CommandExit: Sendable, Equatable {
    /// Exit status 0.
    case success
    /// It failed (non-zero status or a signal) after printing a CUDA out-of-memory error on stderr
    /// (``OutOfMemoryText``): `line` is the first such line.
    case outOfMemory(line: String, lastLines: [String])
    /// A signal ended it (SIGTERM/SIGKILL from ``CommandRunner/terminate(grace:)``, the kernel's
    /// out-of-memory killer, a crash).
    case killed(signal: Int32, lastLines: [String])
    /// It exited with a non-zero status.
    case failed(code: Int32, lastLines: [String])

    /// The last lines it printed (empty for ``success``).
    public var lastLines: [String] {
        switch self {
        case .success: return []
        case .outOfMemory(_, let lines), .killed(_, let lines), .failed(_, let lines): return lines
        }
    }

    /// A sentence for a shard report: `exited with status 3`, `killed by signal 9 (SIGKILL)`, ….
    public var summary: String {
        switch self {
        case .success: return "exited with status 0"
        case .outOfMemory(let line, _): return "ran out of CUDA memory: \(line)"
        case .killed(let signal, _): return "was killed by signal \(signal) (\(Self.signalName(signal)))"
        case .failed(let code, _): return "exited with status \(code)"
        }
    }

    /// Classifies a raw `waitpid` status. Out of memory wins over any other failure when
    /// `outOfMemoryLine` is set; a successful exit stays a success (the trainer recovered).
    public static func classify(waitStatus status: Int32, outOfMemoryLine: String?, lastLines: [String]) -> CommandExit {
        let signal = status & 0x7f
        let code = (status >> 8) & 0xff
        if signal == 0 && code == 0 { return .success }
        if let line = outOfMemoryLine { return .outOfMemory(line: line, lastLines: lastLines) }
        if signal == 0 { return .failed(code: code, lastLines: lastLines) }
        return .killed(signal: signal, lastLines: lastLines)
    }

    /// `SIGKILL`, `SIGTERM`, … for the usual signals, else `signal N`.
    public static func signalName(_ signal: Int32) -> String {
        switch signal {
        case SIGHUP: return "SIGHUP"
        case SIGINT: return "SIGINT"
        case SIGQUIT: return "SIGQUIT"
        case SIGILL: return "SIGILL"
        case SIGABRT: return "SIGABRT"
        case SIGBUS: return "SIGBUS"
        case SIGFPE: return "SIGFPE"
        case SIGKILL: return "SIGKILL"
        case SIGSEGV: return "SIGSEGV"
        case SIGPIPE: return "SIGPIPE"
        case SIGTERM: return "SIGTERM"
        default: return "signal \(signal)"
        }
    }
}
