import Foundation
import Logging
import Shared

/// The `persistent` synthesizer of an eval shard (docs/SYNTHESIZER.md): one process started once
/// per shard, sent one utterance after another as JSON lines on its stdin, each answered by one
/// JSON line on its stdout.
///
/// - **Start** (``start()``): the startup argv (`{checkpoint}`, `{output_dir}` substituted), then
///   a ready line `{"ready": true, …}` within the startup timeout. A process that exits, says
///   `{"ready": false, "error": …}`, breaks the protocol or stays silent instead does not start.
/// - **Utterances** (``synthesize(id:text:promptAudio:output:)``): one request line, one reply
///   line with the same `id` within the utterance timeout. `ok: false` is that utterance's error
///   and the process goes on. A timeout, an exit, a reply for another id or a malformed line is
///   also that utterance's error, and the process is stopped; the next utterance starts a new one,
///   at most ``Configuration/maxRestarts`` times per shard (after that, and after a restart that
///   does not come up, the remaining utterances fail at once, saying why).
/// - **End** (``shutdown()``): stdin closed, up to ``Configuration/exitGrace`` to exit by itself,
///   then SIGTERM to its process group and SIGKILL after ``Configuration/terminationGrace``. On
///   cancellation the same, without waiting for a voluntary exit.
actor PersistentSynthesizer {
    struct Configuration: Sendable {
        /// The startup argv, placeholders already substituted.
        var argv: [String]
        /// The whole environment of the process (default: the worker's).
        var environment: [String: String] = ProcessInfo.processInfo.environment
        /// How long one utterance may take, from its request to its reply.
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

    /// The protocol version this worker speaks (the ready line's `version`).
    static let protocolVersion = 1
    /// The default startup timeout (seconds): IndexTTS-2 loads for tens of seconds, more from a
    /// cold disk.
    static let defaultStartupTimeout = 600.0
    /// The default number of restarts per shard.
    static let defaultMaxRestarts = 2

    let configuration: Configuration
    private let logger: Logger
    private var process: SynthesizerProcess?
    /// Processes started in this shard (the first one and its restarts).
    private(set) var starts = 0
    /// Restarts after a failure so far.
    private(set) var restarts = 0
    /// Set when no further process will be started; why.
    private var unavailable: String?
    /// The last failure that stopped a process.
    private var lastProblem: String?
    /// The ready line of the running process.
    private(set) var ready: SynthesizerMessage?
    /// Seconds from the spawn to the ready line of each start.
    private(set) var startupSeconds: [Double] = []
    /// How the last process that ended ended.
    private(set) var lastExit: CommandExit?

    init(_ configuration: Configuration, logger: Logger = Logger(label: "tts.eval.synthesizer")) {
        self.configuration = configuration
        self.logger = logger
    }

    /// The startup argv of a `persistent` synthesizer: `{checkpoint}` and `{output_dir}` replaced.
    static func startupArgv(_ template: [String], checkpoint: String, outputDir: String) -> [String] {
        template.map { $0.replacingOccurrences(of: "{checkpoint}", with: checkpoint).replacingOccurrences(of: "{output_dir}", with: outputDir) }
    }

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
        let child = try SynthesizerProcess(argv: configuration.argv, environment: configuration.environment, logger: logger)
        starts += 1
        logger.info("synthesizer \(child.pid) started: \(configuration.argv.joined(separator: " "))")
        let deadline = began + configuration.startupTimeout
        do {
            let problem: String
            switch await child.next(until: deadline) {
            case .event(.message(let m)) where m.ready == true:
                if let v = m.version, v != Self.protocolVersion {
                    problem = "speaks protocol version \(v); this worker speaks version \(Self.protocolVersion) (docs/SYNTHESIZER.md)"
                    break
                }
                process = child
                ready = m
                let seconds = EvalExecutor.seconds(clock.now - began)
                startupSeconds.append(seconds)
                logger.info("synthesizer \(child.pid) ready in \(String(format: "%.1f", seconds)) s\(m.name.map { ": \($0)" } ?? "")\(m.sampleRate.map { ", \($0) Hz" } ?? "")")
                return
            case .event(.message(let m)) where m.ready == false:
                problem = "reported that it cannot start: \(m.error ?? "no reason given")"
            case .event(.message(let m)):
                problem = "broke the protocol: \(m.id.map { "a reply for '\($0)'" } ?? "a line without ready") before its ready line"
            case .event(.protocolError(let why)):
                problem = "broke the protocol before its ready line: \(why)"
            case .event(.closed):
                await stop(child, patient: false)
                throw ShardFailure("the persistent synthesizer \(exitSummary(child)) before it was ready\(tail(child))")
            case .timedOut:
                problem = "was not ready within \(Self.format(configuration.startupTimeout)) s (startup_timeout_seconds)"
            case .cancelled:
                await stop(child, patient: false)
                throw CancellationError()
            }
            await stop(child, patient: false)
            throw ShardFailure("the persistent synthesizer \(problem)\(tail(child))")
        }
    }

    /// Synthesizes one utterance into `output`. Returns nil on success, else the utterance's
    /// error, and the seconds from sending the request to the reply (no model loading).
    func synthesize(id: String, text: String, promptAudio: String?, output: String) async -> (problem: String?, seconds: Double) {
        if Task.isCancelled { return ("cancelled", 0) }
        if let unavailable { return ("the persistent synthesizer is not available: \(unavailable)", 0) }
        if process == nil, starts > 0 {
            guard restarts < configuration.maxRestarts else {
                unavailable = "it was restarted \(restarts) time(s) in this shard, the most allowed; the last problem: \(lastProblem ?? "?")"
                return ("the persistent synthesizer is not available: \(unavailable!)", 0)
            }
            restarts += 1
            logger.notice("restarting the synthesizer (\(restarts) of at most \(configuration.maxRestarts) in this shard) after: \(lastProblem ?? "?")")
        }
        if process == nil {
            do { try await start() } catch is CancellationError {
                return ("cancelled", 0)
            } catch {
                unavailable = "\(error)"
                return ("\(error)", 0)
            }
        }
        guard let child = process else { return ("the persistent synthesizer is not running", 0) }
        let request: [UInt8]
        do { request = try Self.encoder.encode(SynthesizerRequest(id: id, text: text, promptAudio: promptAudio, output: output)) + [UInt8(ascii: "\n")] } catch {
            return ("cannot encode the request for \(id): \(error)", 0)
        }
        let clock = ContinuousClock()
        let began = clock.now
        let deadline = began + configuration.utteranceTimeout
        var elapsed: Double { EvalExecutor.seconds(clock.now - began) }
        if let why = await child.send(request, deadline: deadline) {
            if why == "cancelled" {
                await stop(child, patient: false)
                return ("cancelled", elapsed)
            }
            return (await fail(child, "cannot send \(id) to the synthesizer: \(why)"), elapsed)
        }
        while true {
            switch await child.next(until: deadline) {
            case .event(.message(let m)) where m.id == id && m.ok != nil:
                if m.ok == true {
                    guard FileManager.default.fileExists(atPath: output) else {
                        return ("the synthesizer answered ok for \(id) but wrote no \(output)", elapsed)
                    }
                    return (nil, elapsed)
                }
                return ("the synthesizer failed on \(id): \(m.error ?? "no reason given")", elapsed)
            case .event(.message(let m)):
                let what = m.id == id ? "a reply for '\(id)' without ok" : m.ready != nil && m.id == nil ? "a second ready line" : "a reply for '\(m.id ?? "null")'"
                return (await fail(child, "protocol error: the synthesizer sent \(what) while \(id) was asked"), elapsed)
            case .event(.protocolError(let why)):
                return (await fail(child, "protocol error while synthesizing \(id): \(why)"), elapsed)
            case .event(.closed):
                await stop(child, patient: false)
                let problem = "the synthesizer \(exitSummary(child)) while synthesizing \(id)\(tail(child))"
                lastProblem = problem
                return (problem, elapsed)
            case .timedOut:
                return (await fail(child, "the synthesizer did not answer for \(id) within \(Self.format(configuration.utteranceTimeout)) s (timeout_seconds)"), elapsed)
            case .cancelled:
                await stop(child, patient: false)
                return ("cancelled", elapsed)
            }
        }
    }

    /// Stops the process at the end of the shard (or after a cancel): stdin closed, a grace to
    /// exit by itself (none when cancelled), then SIGTERM, then SIGKILL.
    func shutdown() async {
        guard let child = process else { return }
        await stop(child, patient: !Task.isCancelled)
        if let exit = child.exit, exit != .success {
            logger.warning("synthesizer \(child.pid) \(exit.summary) at the end of the shard")
        }
    }

    // MARK: Helpers

    /// Stops `child` after a failure and remembers why; returns `problem`.
    private func fail(_ child: SynthesizerProcess, _ problem: String) async -> String {
        lastProblem = problem
        logger.warning("synthesizer \(child.pid): \(problem); stopping it")
        await stop(child, patient: false)
        return problem
    }

    /// Closes stdin, optionally waits for a voluntary exit, then terminates the group and waits
    /// until everything of it is gone.
    private func stop(_ child: SynthesizerProcess, patient: Bool) async {
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

    private func exitSummary(_ child: SynthesizerProcess) -> String {
        child.exit.map { $0.summary } ?? "closed its stdout"
    }

    private func tail(_ child: SynthesizerProcess) -> String {
        let lines = child.stderrTail.suffix(5)
        return lines.isEmpty ? "" : "; its last stderr lines: " + lines.joined(separator: " | ")
    }

    private static func format(_ d: Duration) -> String {
        let s = EvalExecutor.seconds(d)
        return s == s.rounded() ? String(Int(s)) : String(format: "%.3g", s)
    }

    private static var encoder: JSONEncoder {
        let e = JSONEncoder()
        e.outputFormatting = [.withoutEscapingSlashes, .sortedKeys]
        return e
    }
}

/// One request line: `{"id", "text", "prompt_audio", "output"}` (`prompt_audio` null when the
/// manifest has none).
struct SynthesizerRequest: Encodable, Sendable {
    var id: String
    var text: String
    var promptAudio: String?
    var output: String

    enum CodingKeys: String, CodingKey {
        case id, text, output
        case promptAudio = "prompt_audio"
    }

    func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(id, forKey: .id)
        try c.encode(text, forKey: .text)
        try c.encode(promptAudio, forKey: .promptAudio)
        try c.encode(output, forKey: .output)
    }
}

/// A protocol line from a `persistent` synthesizer: the ready line or a reply.
struct SynthesizerMessage: Decodable, Sendable, Equatable {
    /// Ready line: true once loaded; false (with `error`) when it cannot start.
    var ready: Bool?
    var sampleRate: Int?
    var name: String?
    var version: Int?
    /// Reply: the request's id, whether it worked, and why not.
    var id: String?
    var ok: Bool?
    var output: String?
    var seconds: Double?
    var error: String?

    enum CodingKeys: String, CodingKey {
        case ready, name, version, id, ok, output, seconds, error
        case sampleRate = "sample_rate"
    }

    enum Parsed: Equatable {
        case message(SynthesizerMessage)
        /// A JSON object with `id` or `ready` whose fields have the wrong types.
        case malformed(String)
        /// Anything else: not a protocol line (logged and ignored).
        case noise
    }

    /// Classifies one stdout line: a JSON object with an `id` or a `ready` key is a protocol
    /// line; anything else (library chatter, a Python dict's repr) is noise.
    static func parse(_ line: ArraySlice<UInt8>) -> Parsed {
        guard let first = line.first(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\t") }), first == UInt8(ascii: "{") else { return .noise }
        let data = Data(line)
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
              object["id"] != nil || object["ready"] != nil else { return .noise }
        do { return .message(try JSONDecoder().decode(SynthesizerMessage.self, from: data)) } catch {
            return .malformed("a protocol line with fields of the wrong type: \(String(decoding: line.prefix(200), as: UTF8.self))")
        }
    }
}
