import Foundation
import Logging
import Shared

/// A persistent program of an eval shard that speaks JSON lines: one process started once per
/// shard, sent one request after another on its stdin, each answered by one JSON line on its
/// stdout. The `persistent` synthesizer (``PersistentSynthesizer``, docs/SYNTHESIZER.md) and the
/// `persistent` ASR (``PersistentASR``, docs/ASR.md) are this with their own `Message`.
///
/// - **Start** (``start()``): the startup argv, then a ready line `{"ready": true, …}` within the
///   startup timeout. A process that exits, says `{"ready": false, "error": …}`, breaks the
///   protocol or stays silent instead does not start.
/// - **Requests** (``exchange(id:request:)``): one request line, one reply line with the same
///   `id` within the request timeout. A timeout, an exit, a reply for another id or a malformed
///   line is that request's error, and the process is stopped; the next request starts a new
///   one, at most ``Configuration/maxRestarts`` times per shard (after that, and after a restart
///   that does not come up, the remaining requests fail at once, saying why).
/// - **End** (``shutdown()``): stdin closed, up to ``Configuration/exitGrace`` to exit by itself,
///   then SIGTERM to its process group and SIGKILL after ``Configuration/terminationGrace``. On
///   cancellation the same, without waiting for a voluntary exit.
actor PersistentProcess<Message: JSONLinesMessage> {
    struct Configuration: Sendable {
        /// The startup argv, placeholders already substituted.
        var argv: [String]
        /// The whole environment of the process (default: the worker's).
        var environment: [String: String] = ProcessInfo.processInfo.environment
        /// How long one utterance's request may take, from the request to its reply.
        var utteranceTimeout: Duration
        /// How long loading may take, from the start to the ready line.
        var startupTimeout: Duration
        /// How many times a shard restarts the process after a failure.
        var maxRestarts: Int = 2
        /// After stdin is closed at the end, how long it gets to exit by itself.
        var exitGrace: Duration = .seconds(5)
        /// SIGTERM-to-SIGKILL time.
        var terminationGrace: Duration = .seconds(5)
    }

    /// What one request gave: the reply (nil when there is none), else why not, and the seconds
    /// from sending the request to the reply (no model loading).
    struct Exchange: Sendable {
        var reply: Message?
        var problem: String?
        var seconds: Double
    }

    /// The protocol version this worker speaks (the ready line's `version`).
    static var protocolVersion: Int { 1 }
    /// The default startup timeout (seconds): models load for tens of seconds, more from a cold disk.
    static var defaultStartupTimeout: Double { 600 }
    /// The default number of restarts per shard.
    static var defaultMaxRestarts: Int { 2 }

    let configuration: Configuration
    private let logger: Logger
    private var process: JSONLinesProcess<Message>?
    /// Processes started in this shard (the first one and its restarts).
    private(set) var starts = 0
    /// Restarts after a failure so far.
    private(set) var restarts = 0
    /// Set when no further process will be started; why.
    private var unavailable: String?
    /// The last failure that stopped a process.
    private var lastProblem: String?
    /// The ready line of the running process.
    private(set) var ready: Message?
    /// Seconds from the spawn to the ready line of each start.
    private(set) var startupSeconds: [Double] = []
    /// How the last process that ended ended.
    private(set) var lastExit: CommandExit?

    init(_ configuration: Configuration, logger: Logger? = nil) {
        self.configuration = configuration
        self.logger = logger ?? Logger(label: "tts.eval.\(Message.role.noun.lowercased())")
    }

    private var noun: String { Message.role.noun }

    /// The pid of the running process, if one runs.
    var pid: Int32? { process?.pid }

    /// Starts the process and waits for its ready line, unless it already runs.
    /// - Throws: ``ShardFailure`` saying why it did not become ready (nothing is left running
    ///   then); `CancellationError` when the task was cancelled meanwhile.
    func start() async throws {
        if process != nil { return }
        if let unavailable { throw ShardFailure(unavailable) }
        let clock = ContinuousClock()
        let began = clock.now
        let child = try JSONLinesProcess<Message>(argv: configuration.argv, environment: configuration.environment, logger: logger)
        starts += 1
        logger.info("\(noun) \(child.pid) started: \(configuration.argv.joined(separator: " "))")
        let deadline = began + configuration.startupTimeout
        do {
            let problem: String
            switch await child.next(until: deadline) {
            case .event(.message(let m)) where m.ready == true:
                if let v = m.version, v != Self.protocolVersion {
                    problem = "speaks protocol version \(v); this worker speaks version \(Self.protocolVersion) (\(Message.role.contract))"
                    break
                }
                process = child
                ready = m
                let seconds = EvalExecutor.seconds(clock.now - began)
                startupSeconds.append(seconds)
                logger.info("\(noun) \(child.pid) ready in \(String(format: "%.1f", seconds)) s\(m.name.map { ": \($0)" } ?? "")\(m.sampleRate.map { ", \($0) Hz" } ?? "")")
                return
            case .event(.message(let m)) where m.ready == false:
                problem = "reported that it cannot start: \(m.error ?? "no reason given")"
            case .event(.message(let m)):
                problem = "broke the protocol: \(m.id.map { "a reply for '\($0)'" } ?? "a line without ready") before its ready line"
            case .event(.protocolError(let why)):
                problem = "broke the protocol before its ready line: \(why)"
            case .event(.closed):
                await stop(child, patient: false)
                throw ShardFailure("the persistent \(noun) \(exitSummary(child)) before it was ready\(tail(child))")
            case .timedOut:
                problem = "was not ready within \(Self.format(configuration.startupTimeout)) s (startup_timeout_seconds)"
            case .cancelled:
                await stop(child, patient: false)
                throw CancellationError()
            }
            await stop(child, patient: false)
            throw ShardFailure("the persistent \(noun) \(problem)\(tail(child))")
        }
    }

    /// Sends one request for `id` and waits for its reply, (re)starting the process first when
    /// needed. A reply with the right `id` and the fields ``JSONLinesMessage/isReply`` asks for
    /// is returned as it is (what it says is the caller's to judge); anything else is `problem`.
    func exchange(id: String, request: some Encodable & Sendable) async -> Exchange {
        if Task.isCancelled { return Exchange(problem: "cancelled", seconds: 0) }
        if let unavailable { return Exchange(problem: "the persistent \(noun) is not available: \(unavailable)", seconds: 0) }
        if process == nil, starts > 0 {
            guard restarts < configuration.maxRestarts else {
                let why = "it was restarted \(restarts) time(s) in this shard, the most allowed; the last problem: \(lastProblem ?? "?")"
                unavailable = why
                return Exchange(problem: "the persistent \(noun) is not available: \(why)", seconds: 0)
            }
            restarts += 1
            logger.notice("restarting the \(noun) (\(restarts) of at most \(configuration.maxRestarts) in this shard) after: \(lastProblem ?? "?")")
        }
        if process == nil {
            do { try await start() } catch is CancellationError {
                return Exchange(problem: "cancelled", seconds: 0)
            } catch {
                unavailable = "\(error)"
                return Exchange(problem: "\(error)", seconds: 0)
            }
        }
        guard let child = process else { return Exchange(problem: "the persistent \(noun) is not running", seconds: 0) }
        let line: [UInt8]
        do { line = try Self.encoder.encode(request) + [UInt8(ascii: "\n")] } catch {
            return Exchange(problem: "cannot encode the request for \(id): \(error)", seconds: 0)
        }
        let clock = ContinuousClock()
        let began = clock.now
        let deadline = began + configuration.utteranceTimeout
        var elapsed: Double { EvalExecutor.seconds(clock.now - began) }
        if let why = await child.send(line, deadline: deadline) {
            if why == "cancelled" {
                await stop(child, patient: false)
                return Exchange(problem: "cancelled", seconds: elapsed)
            }
            return Exchange(problem: await fail(child, "cannot send \(id) to the \(noun): \(why)"), seconds: elapsed)
        }
        switch await child.next(until: deadline) {
        case .event(.message(let m)) where m.id == id && m.isReply:
            return Exchange(reply: m, seconds: elapsed)
        case .event(.message(let m)):
            let what = m.id == id ? "a reply for '\(id)' without \(Message.replyFields)" : m.ready != nil && m.id == nil ? "a second ready line" : "a reply for '\(m.id ?? "null")'"
            return Exchange(problem: await fail(child, "protocol error: the \(noun) sent \(what) while \(id) was asked"), seconds: elapsed)
        case .event(.protocolError(let why)):
            return Exchange(problem: await fail(child, "protocol error while \(Message.role.doing) \(id): \(why)"), seconds: elapsed)
        case .event(.closed):
            await stop(child, patient: false)
            let problem = "the \(noun) \(exitSummary(child)) while \(Message.role.doing) \(id)\(tail(child))"
            lastProblem = problem
            return Exchange(problem: problem, seconds: elapsed)
        case .timedOut:
            return Exchange(problem: await fail(child, "the \(noun) did not answer for \(id) within \(Self.format(configuration.utteranceTimeout)) s (timeout_seconds)"), seconds: elapsed)
        case .cancelled:
            await stop(child, patient: false)
            return Exchange(problem: "cancelled", seconds: elapsed)
        }
    }

    /// Stops the process at the end of the shard (or after a cancel): stdin closed, a grace to
    /// exit by itself (none when cancelled), then SIGTERM, then SIGKILL.
    func shutdown() async {
        guard let child = process else { return }
        await stop(child, patient: !Task.isCancelled)
        if let exit = child.exit, exit != .success {
            logger.warning("\(noun) \(child.pid) \(exit.summary) at the end of the shard")
        }
    }

    // MARK: Helpers

    /// Stops `child` after a failure and remembers why; returns `problem`.
    private func fail(_ child: JSONLinesProcess<Message>, _ problem: String) async -> String {
        lastProblem = problem
        logger.warning("\(noun) \(child.pid): \(problem); stopping it")
        await stop(child, patient: false)
        return problem
    }

    /// Closes stdin, optionally waits for a voluntary exit, then terminates the group and waits
    /// until everything of it is gone.
    private func stop(_ child: JSONLinesProcess<Message>, patient: Bool) async {
        child.closeInput()
        if !(patient ? await child.waitExit(timeout: configuration.exitGrace) : child.hasFinished) {
            child.terminate(grace: configuration.terminationGrace)
        }
        await child.waitExit()
        lastExit = child.exit
        if process === child {
            process = nil
            ready = nil
        }
    }

    private func exitSummary(_ child: JSONLinesProcess<Message>) -> String {
        child.exit.map { $0.summary } ?? "closed its stdout"
    }

    private func tail(_ child: JSONLinesProcess<Message>) -> String {
        let lines = child.stderrTail.suffix(5)
        return lines.isEmpty ? "" : "; its last stderr lines: " + lines.joined(separator: " | ")
    }

    static func format(_ d: Duration) -> String {
        let s = EvalExecutor.seconds(d)
        return s == s.rounded() ? String(Int(s)) : String(format: "%.3g", s)
    }

    private static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return e
    }
}
