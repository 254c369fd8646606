import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Reads a command's stdout and stderr pipes on a dedicated thread (never on Swift's cooperative
/// pool: the reads block) and splits them into lines. Internal to ``CommandRunner``.
///
/// Lines end at `\n`; a `\r` before it is dropped; a line longer than ``maximumLineBytes`` is
/// delivered in pieces (a progress bar redrawn with `\r` for hours cannot grow without bound); an
/// unterminated last line is delivered at end of file. Invalid UTF-8 is replaced with U+FFFD.
/// Each stream's lines come in order; between the two streams the order is the order the reads
/// saw them (a line written to stdout just before one to stderr may come after it).
final class OutputPipeReader: Sendable {
    static let maximumLineBytes = 64 << 10

    private let descriptors: [(fd: Int32, stream: CommandOutputLine.Stream)]
    private let onLine: @Sendable (CommandOutputLine) -> Void
    private let onFinish: @Sendable () -> Void
    /// When set, the reader stops at this time even without end of file (a process that left the
    /// group still holds the pipe open).
    private let stopDeadline = Mutex<ContinuousClock.Instant?>(nil)

    /// Takes ownership of the read ends and closes them when done.
    init(stdout: Int32, stderr: Int32, onLine: @escaping @Sendable (CommandOutputLine) -> Void,
         onFinish: @escaping @Sendable () -> Void) {
        descriptors = [(stdout, .stdout), (stderr, .stderr)]
        self.onLine = onLine
        self.onFinish = onFinish
    }

    func start(name: String) {
        let thread = Thread { [self] in self.loop() }
        thread.name = name
        thread.start()
    }

    /// Stop reading at `deadline` if the pipes are still open then.
    func stop(at deadline: ContinuousClock.Instant) {
        stopDeadline.withLock { current in current = min(current ?? deadline, deadline) }
    }

    private func loop() {
        var open = descriptors.map { $0.fd }
        var pending: [[UInt8]] = [[], []]
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while open.contains(where: { $0 >= 0 }) {
            if let deadline = stopDeadline.withLock({ $0 }), ContinuousClock.now >= deadline { break }
            var fds = open.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            let ready = poll(&fds, nfds_t(fds.count), 100)
            if ready < 0 && errno != EINTR { break }
            guard ready > 0 else { continue }
            for i in fds.indices where open[i] >= 0 && fds[i].revents != 0 {
                let n = chunk.withUnsafeMutableBytes { read(open[i], $0.baseAddress, $0.count) }
                if n > 0 {
                    pending[i].append(contentsOf: chunk[0..<n])
                    deliverLines(&pending[i], stream: descriptors[i].stream)
                } else if n == 0 || (errno != EINTR && errno != EAGAIN) {
                    close(open[i])
                    open[i] = -1
                }
            }
        }
        for i in open.indices where open[i] >= 0 { close(open[i]) }
        for i in pending.indices where !pending[i].isEmpty { emit(pending[i][...], stream: descriptors[i].stream) }
        onFinish()
    }

    private func deliverLines(_ buffer: inout [UInt8], stream: CommandOutputLine.Stream) {
        var start = 0
        while let nl = buffer[start...].firstIndex(of: UInt8(ascii: "\n")) {
            // A long line whose end arrived in the same read is cut like one still open.
            while nl - start > Self.maximumLineBytes {
                emit(buffer[start..<(start + Self.maximumLineBytes)], stream: stream)
                start += Self.maximumLineBytes
            }
            emit(buffer[start..<nl], stream: stream)
            start = nl + 1
        }
        while buffer.count - start >= Self.maximumLineBytes {
            emit(buffer[start..<(start + Self.maximumLineBytes)], stream: stream)
            start += Self.maximumLineBytes
        }
        if start > 0 { buffer.removeFirst(start) }
    }

    private func emit(_ bytes: ArraySlice<UInt8>, stream: CommandOutputLine.Stream) {
        var line = bytes
        if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
        onLine(CommandOutputLine(stream: stream, text: String(decoding: line, as: UTF8.self)))
    }
}
