import ArgumentParser
import ClusterAdmin
import Coordinator
import CoordinatorHTTP
import Foundation
import Logging
import ServiceLifecycle
import Shared
import Slack
import WandB

@main
struct TTSCoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tts-coordinator",
        abstract: "Coordinates tts-cluster workers: leases training and evaluation shards, stores state, watches liveness.",
        version: TTSCluster.version,
        subcommands: [Serve.self, Workers.self, Shards.self, Status.self, Submit.self, Runs.self, Logs.self, Cancel.self, Eval.self, Evals.self,
                      Enqueue.self, Drain.self, Metrics.self, Alerts.self, Silence.self, APIToken.self],
        defaultSubcommand: Serve.self
    )
}

/// Prints the REST API's bearer token (derived from the cluster token; the cluster token itself
/// never crosses HTTP), for curl, Prometheus' `authorization` and scripts.
struct APIToken: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "api-token",
                                                    abstract: "Print the bearer token of the REST API and /metrics (derived from the cluster token).")
    @Option(help: "File holding the cluster token (env TTS_CLUSTER_TOKEN_FILE).")
    var tokenFile: String?

    func run() throws {
        guard let tokenFile = tokenFile ?? ProcessInfo.processInfo.environment["TTS_CLUSTER_TOKEN_FILE"] else { throw ValidationError("--token-file FILE (or TTS_CLUSTER_TOKEN_FILE) is required") }
        do { print(try ClusterToken.load(fromFile: tokenFile).apiBearer) } catch {
            FileHandle.standardError.write(Data("error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}

/// Options every client command shares.
struct ClientOptions: ParsableArguments {
    @Option(help: "The coordinator's REST API (env TTS_API; default http://127.0.0.1:8080). The CLI talks to it unless only --connect is given.")
    var api: String?

    @Option(help: "The coordinator's NNG admin endpoint instead of the REST API, tcp://HOST:PORT (env TTS_COORDINATOR).")
    var connect: String?

    @Option(help: "File holding the cluster token (env TTS_CLUSTER_TOKEN_FILE).")
    var tokenFile: String? = ProcessInfo.processInfo.environment["TTS_CLUSTER_TOKEN_FILE"]

    @Option(help: "CA certificate (PEM) to verify a tls+tcp:// coordinator.")
    var tlsCa: String?

    @Option(help: "Server name to verify in the coordinator's certificate.")
    var tlsServerName: String?

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func client() throws -> any ClusterClient {
        let token = try tokenFile.map { path throws(ConfigurationError) in try ClusterToken.load(fromFile: path) }
        let env = ProcessInfo.processInfo.environment
        let api = self.api ?? env["TTS_API"]
        if api == nil, let connect = connect ?? env["TTS_COORDINATOR"] {
            let tls = tlsCa.map { NNGTLSConfiguration(caFile: $0, serverName: tlsServerName) }
            return try NNGClusterClient(url: connect, token: token, tls: tls)
        }
        return try HTTPClusterClient(baseURL: api ?? "http://127.0.0.1:8080", token: token)
    }
}

/// Runs `body`, printing client errors as one clear line and exiting 1.
func runClient(_ body: () async throws -> Void) async throws {
    do {
        try await body()
    } catch let e as ClusterClientError {
        FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
        throw ExitCode(1)
    } catch let e as ConfigurationError {
        FileHandle.standardError.write(Data("error: \(e.message)\n".utf8))
        throw ExitCode(2)
    }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let e = JSONCoding.encoder
    e.outputFormatting = [.sortedKeys, .prettyPrinted]
    print(String(decoding: try e.encode(value), as: UTF8.self))
}

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Run the coordinator (zero-config: loopback, ./tts-coordinator.sqlite, no token).")

    @Option(help: "Listen address, tcp://HOST:PORT or tls+tcp://HOST:PORT (env TTS_LISTEN).")
    var listen: String = ProcessInfo.processInfo.environment["TTS_LISTEN"] ?? "tcp://127.0.0.1:5555"

    @Option(help: "SQLite database file (env TTS_DB).")
    var db: String = ProcessInfo.processInfo.environment["TTS_DB"] ?? "./tts-coordinator.sqlite"

    @Option(help: "File holding the cluster token (env TTS_CLUSTER_TOKEN_FILE). Required off loopback.")
    var tokenFile: String? = ProcessInfo.processInfo.environment["TTS_CLUSTER_TOKEN_FILE"]

    @Flag(help: "Allow a non-loopback listen address without a token (trusted networks only).")
    var insecure = false

    @Option(help: "Certificate and private key (one PEM file) for tls+tcp://.")
    var tlsCert: String?

    @Option(help: "CA (PEM) that worker client certificates must chain to (mutual TLS).")
    var tlsCa: String?

    @Option(help: "Heartbeat interval told to workers, in milliseconds.")
    var heartbeatMs = 2_000

    @Option(help: "Seconds a data-parallel gang (world: {gpus: N}) waits while later work uses idle workers, before it reserves the idle workers that fit it.")
    var gangReserveAfter = 600.0

    @Option(help: "A worker silent this long (ms) is lost and its shards are requeued.")
    var lostAfterMs = 10_000

    @Option(help: "Retries of a failed or lost shard before it fails for good.")
    var maxRetries = 3

    @Option(help: "Largest accepted message, in bytes.")
    var maxMessageBytes = 16 << 20

    @Option(help: "W&B mode: online (needs WANDB_API_KEY; WANDB_BASE_URL, WANDB_ENTITY, WANDB_PROJECT), offline (runs written for `wandb sync`) or disabled. Default: env WANDB_MODE, else online with a key and offline without.")
    var wandbMode: String?

    @Option(help: "Online: least milliseconds between two file_stream requests of a run (W&B's cadence: 15000).")
    var wandbStreamIntervalMs = 15_000

    @Option(help: "Online: milliseconds W&B delivery pauses after the API key is rejected (data stays queued).")
    var wandbUnauthorizedPauseMs = 60_000

    @Option(help: "W&B directory: offline runs go to DIR/wandb/offline-run-… (env WANDB_DIR; default: the working directory).")
    var wandbDir: String = ProcessInfo.processInfo.environment["WANDB_DIR"] ?? "."

    @Flag(help: "Turn W&B off (same as --wandb-mode disabled).")
    var noWandb = false

    @Option(help: "Where training runs write checkpoints when their job spec names no output_dir (<root>/<job>/<run>-<id>). Must be storage every worker can read and write, so a run can resume on another box.")
    var checkpointRoot = "./tts-runs"

    @Option(name: .customLong("output-root"), help: "A directory jobs and evaluations may write under (repeatable). When given, an output_dir, log_dir or eval output elsewhere is refused at submit.")
    var outputRoots: [String] = []

    @Option(help: "File holding the Slack incoming-webhook URL for alerts (default: env SLACK_WEBHOOK_URL). Without one, alerts go to the log only.")
    var slackWebhookFile: String?

    @Flag(help: "Alerts to the log only, even when SLACK_WEBHOOK_URL is set.")
    var noSlack = false

    @Option(help: "Milliseconds a new alert waits so that a burst of one run and rule becomes one message.")
    var alertGroupWaitMs = 300

    @Option(help: "Minutes after which a still-firing alert is sent again.")
    var alertRepeatMinutes = 240.0

    @Option(help: "Minutes between status digests of each active run (0: off).")
    var statusDigestMinutes = 60.0

    @Option(help: "HTTP address of the REST API, dashboard and /metrics, HOST:PORT (env TTS_HTTP; default 127.0.0.1:8080). Beyond loopback it needs --token-file (bearer auth).")
    var http = ProcessInfo.processInfo.environment["TTS_HTTP"] ?? "127.0.0.1:8080"
    @Flag(help: "No HTTP server (no REST API, dashboard or /metrics).")
    var noHttp = false
    @Option(help: "Base URL of the dashboard, for links in alerts.")
    var dashboardUrl: String?

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: Logger.Level = .info

    func run() async throws {
        let logger = LogSetup.bootstrap(label: "tts-coordinator", level: logLevel)
        var config = CoordinatorConfiguration()
        config.listen = listen
        config.databasePath = db
        config.insecure = insecure
        config.heartbeatIntervalMs = heartbeatMs
        config.gangReserveAfterSeconds = gangReserveAfter
        config.lostAfterMs = lostAfterMs
        config.defaultMaxRetries = maxRetries
        config.maxMessageBytes = maxMessageBytes
        if let tlsCert { config.tls = NNGTLSConfiguration(certificateKeyFile: tlsCert, caFile: tlsCa) }
        config.wandbDirectory = wandbDir
        config.wandbStreamIntervalMs = wandbStreamIntervalMs
        config.wandbUnauthorizedPauseMs = wandbUnauthorizedPauseMs
        var overrides = WandbSettings.Overrides(directory: wandbDir)
        if noWandb { overrides.mode = .disabled } else if let m = wandbMode {
            guard let mode = WandbSettings.Mode(rawValue: m.lowercased()) else {
                logger.critical("unknown W&B mode \(m): use online, offline or disabled")
                throw ExitCode(2)
            }
            overrides.mode = mode
        }
        let settings = WandbSettings(overrides: overrides)
        config.wandbSettings = settings
        config.wandbMode = settings.mode
        logger.info("W&B: \(settings.mode.rawValue) (\(settings.modeReason))")
        config.alertGroupWaitSeconds = Double(alertGroupWaitMs) / 1000
        config.alertRepeatIntervalSeconds = alertRepeatMinutes * 60
        config.alertRules.statusDigest.intervalMinutes = statusDigestMinutes
        config.dashboardURL = dashboardUrl
        config.checkpointRoot = checkpointRoot
        config.outputRoots = outputRoots
        let server: CoordinatorServer
        do {
            if !noSlack {
                var secret = ProcessInfo.processInfo.environment["SLACK_WEBHOOK_URL"]
                if let slackWebhookFile {
                    do {
                        secret = try String(contentsOfFile: slackWebhookFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                    } catch {
                        throw ConfigurationError("cannot read the Slack webhook file \(slackWebhookFile): \(error.localizedDescription)")
                    }
                }
                if let secret, !secret.isEmpty {
                    do { config.slackWebhook = try SlackWebhookURL(secret) } catch { throw ConfigurationError("the Slack webhook URL is not usable: \(error)") }
                }
            }
            if let tokenFile { config.token = try ClusterToken.load(fromFile: tokenFile) }
            server = try CoordinatorServer(configuration: config, logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode(2)
        }
        var httpServer: CoordinatorHTTPServer?
        if !noHttp {
            do {
                let (host, port) = try HTTPServerConfiguration.parse(address: http)
                httpServer = try CoordinatorHTTPServer(server: server, configuration: HTTPServerConfiguration(host: host, port: port, token: config.token, wandbBase: config.wandbAppURL),
                                                       logger: logger)
            } catch {
                logger.critical("\(error)")
                throw ExitCode(2)
            }
        }
        // The coordinator's services; SIGTERM/SIGINT shut them down in order (see
        // CoordinatorServer.services(http:)); a second signal during shutdown is ignored, as the
        // shutdown itself is bounded.
        var httpService: (any Service)?
        if let web = httpServer {
            httpService = ClosureService {
                do { try await web.run() } catch is CancellationError {} catch {
                    throw ConfigurationError("cannot serve HTTP on \(web.configuration.host):\(web.configuration.port): \(error). Is another coordinator running there? (--http HOST:PORT, or --no-http)")
                }
            }
        }
        var quiet = logger
        quiet.logLevel = .warning
        let group = ServiceGroup(configuration: ServiceGroupConfiguration(
            services: server.services(http: httpService), gracefulShutdownSignals: [.sigterm, .sigint], logger: quiet))
        do {
            try await group.run()
        } catch let e as ConfigurationError {
            logger.critical("\(e.message)")
            throw ExitCode(2)
        } catch let e as ServiceGroupError {
            logger.critical("\(e)")
            throw ExitCode(2)
        }
    }
}

struct Workers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List workers: name, host, device, memory, state, last seen, shard.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient {
            let workers = try await options.client().workers()
            if options.json { return try printJSON(workers) }
            let now = Date()
            Table.print(
                header: ["NAME", "HOST", "GPU", "DEVICE", "MEMORY", "STATE", "STATUS", "LAST SEEN", "SHARD"],
                rows: workers.map { w in
                    [w.name, w.host, "\(w.device.index)", w.device.name, Table.bytes(w.device.memoryBytes), w.state.rawValue, w.status.rawValue,
                     w.lastSeen.map { Table.ago(now.timeIntervalSince($0)) } ?? "-", w.currentShard.map { "\($0)" } ?? "-"]
                })
        }
    }
}

struct Shards: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "List shards with their attempts.")
    @OptionGroup var options: ClientOptions
    @Option(help: "Only shards in this state (queued, leased, running, succeeded, failed, cancelled).")
    var state: String?
    @Option(help: "Only shards of this job.")
    var job: Int64?
    @Flag(help: "Show every attempt of every shard.")
    var attempts = false

    func run() async throws {
        try await runClient {
            let shards = try await options.client().shards(state: state, jobId: job)
            if options.json { return try printJSON(shards) }
            var rows: [[String]] = []
            for s in shards {
                rows.append(["\(s.id)", "\(s.jobId)", s.kind, s.state.rawValue, "\(s.attempts)", s.workerName ?? "-", String(s.message.prefix(60))])
                if attempts {
                    for a in s.history {
                        rows.append(["", "", "  #\(a.attempt)", a.state.rawValue, "e\(a.leaseEpoch)", a.workerName, String(a.message.prefix(60))])
                    }
                }
            }
            Table.print(header: ["SHARD", "JOB", "KIND", "STATE", "ATTEMPTS", "WORKER", "MESSAGE"], rows: rows)
        }
    }
}

struct Status: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "The cluster at a glance.")
    @OptionGroup var options: ClientOptions

    func run() async throws {
        try await runClient {
            let s = try await options.client().status()
            if options.json { return try printJSON(s) }
            print("coordinator \(s.coordinatorVersion) on \(s.listen), database \(s.database), up \(Table.ago(s.uptimeSeconds))")
            print("workers: " + s.workersByState.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
            print("shards:  " + s.shardsByState.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(separator: ", "))
            print("jobs:    \(s.jobs)")
        }
    }
}

struct Enqueue: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Queue built-in test shards (sleep, echo) for demos and tests.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Shard kind: sleep or echo.")
    var kind: String
    @Option(help: "How many shards.")
    var count = 1
    @Option(name: .customLong("param"), help: "A parameter KEY=VALUE, e.g. seconds=2 (repeatable).")
    var params: [String] = []
    @Option(help: "Retries before a shard fails for good (default: the coordinator's).")
    var maxRetries: Int?

    func run() async throws {
        var payload: [String: JSONValue] = [:]
        for p in params {
            guard let eq = p.firstIndex(of: "=") else { throw ValidationError("--param \(p): write it as KEY=VALUE") }
            payload[String(p[..<eq])] = JSONValue.parse(String(p[p.index(after: eq)...]))
        }
        try await runClient {
            let reply = try await options.client().enqueue(EnqueueRequest(kind: kind, count: count, payload: payload, maxRetries: maxRetries))
            if options.json { return try printJSON(reply) }
            print("job \(reply.jobId): queued \(reply.shardIds.count) \(kind) shard(s) \(reply.shardIds.first ?? 0)…\(reply.shardIds.last ?? 0)\(reply.runId.map { ", run \($0)" } ?? "")")
        }
    }
}

struct Metrics: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "A run's stored metrics: points per key, or one series.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Run id.")
    var run: String
    @Option(help: "Print this key's series (step, value).")
    var key: String?
    @Option(help: "First step of the series.")
    var from: Int64?
    @Option(help: "Last step of the series.")
    var to: Int64?

    func run() async throws {
        try await runClient {
            let report = try await options.client().metrics(run: run, key: key, fromStep: from, toStep: to)
            if options.json { return try printJSON(report) }
            if let series = report.series {
                Table.print(header: ["STEP", key ?? "VALUE"], rows: series.map { ["\($0.step)", $0.value.map { "\($0)" } ?? $0.text ?? "?"] })
            } else {
                Table.print(header: ["KEY", "POINTS"], rows: report.pointsByKey.sorted { $0.key < $1.key }.map { [$0.key, "\($0.value)"] })
                print("total: \(report.totalPoints) points")
            }
        }
    }
}

struct Drain: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Ask a worker to finish its shard, take no more work, and exit.")
    @OptionGroup var options: ClientOptions
    @Argument(help: "Worker name or id.")
    var worker: String

    func run() async throws {
        try await runClient {
            try await options.client().drain(worker: worker)
            print("drain requested for \(worker)")
        }
    }
}

extension Logger.Level: @retroactive ExpressibleByArgument {}
