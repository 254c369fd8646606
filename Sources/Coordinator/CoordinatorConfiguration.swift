import Foundation
import Shared
import Slack
import WandB

/// Everything `tts-coordinator serve` can be told. The defaults run a single-machine cluster
/// with no configuration at all: loopback, `./tts-coordinator.sqlite`, no token.
public struct CoordinatorConfiguration: Sendable {
    /// Where workers dial in.
    public var listen = "tcp://127.0.0.1:5555"
    public var databasePath = "./tts-coordinator.sqlite"
    /// Required for any non-loopback listen address unless `insecure`.
    public var token: ClusterToken?
    /// Allow a non-loopback listen address without a token (a trusted lab network).
    public var insecure = false
    public var tls: NNGTLSConfiguration?
    public var heartbeatIntervalMs = 2_000
    /// A worker silent for this long is lost and its shards are requeued.
    public var lostAfterMs = 10_000
    /// Largest message accepted; a larger one drops that connection.
    public var maxMessageBytes = 16 << 20
    /// Retries of a shard after failures or losses before it fails for good.
    public var defaultMaxRetries = 3
    /// How long a data-parallel gang waits while later work uses the idle workers before it
    /// reserves the idle workers that fit it (seconds; `--gang-reserve-after`).
    public var gangReserveAfterSeconds = 600.0
    /// Longest a poll is held when there is no work.
    public var maxPollWaitMs = 30_000
    /// How often in-memory heartbeat state is written to the database.
    public var heartbeatFlushMs = 1_000
    /// Accepted clock skew of token proofs.
    public var proofWindowSeconds = 300.0
    /// Where training runs write checkpoints when their job spec names no `output_dir`
    /// (`<root>/<job name>/<run name>-<run id>`). Must be a path every worker can read and write
    /// (a shared filesystem): a run resumed on another box reads its checkpoint from there.
    public var checkpointRoot = "./tts-runs"
    /// When not empty, every directory a job or an evaluation writes to (output_dir, log_dir,
    /// the default checkpoint directory, an evaluation's output) must lie under one of these.
    public var outputRoots: [String] = []

    /// Whether `path` (made absolute against the working directory and normalised) lies under an
    /// output root; always true without roots.
    public func isAllowedOutput(_ path: String) -> Bool {
        guard !outputRoots.isEmpty else { return true }
        let cwd = FileManager.default.currentDirectoryPath
        func absolute(_ p: String) -> String {
            URL(fileURLWithPath: p.hasPrefix("/") ? p : cwd + "/" + p).standardizedFileURL.path
        }
        let target = absolute(path)
        return outputRoots.map(absolute).contains { root in target == root || target.hasPrefix(root.hasSuffix("/") ? root : root + "/") }
    }

    /// W&B delivery: `online` streams to the W&B API (`wandbSettings`), `offline` writes
    /// `.wandb` runs under `wandbDirectory` for `wandb sync`, `disabled` keeps metrics in the store only.
    public var wandbMode: WandbOutbox.Mode = .offline
    /// API key, base URL, entity and project defaults (from `WANDB_*`), for online mode.
    public var wandbSettings: WandbSettings?
    /// The W&B app's base URL for run links (Slack alerts, the dashboard): online mode only.
    public var wandbAppURL: String? { wandbMode == .online ? wandbSettings?.appURL : nil }
    /// Online: least time between two `file_stream` requests of a run.
    public var wandbStreamIntervalMs = 15_000
    /// Online: how long delivery pauses after W&B rejects the API key.
    public var wandbUnauthorizedPauseMs = 60_000
    /// `WANDB_DIR`: offline runs go to `<dir>/wandb/offline-run-…`.
    public var wandbDirectory = "."

    /// Slack incoming webhook for alerts (`SLACK_WEBHOOK_URL`); nil: alerts go to the log only.
    public var slackWebhook: SlackWebhookURL?
    /// Seconds a new alert notification waits so a burst of one run and rule is one message.
    public var alertGroupWaitSeconds = 0.3
    /// Seconds after which a still-firing alert is notified again (Alertmanager's default, 4 h).
    public var alertRepeatIntervalSeconds = 4 * 3600.0
    /// Default rule settings (jobs may override per run).
    public var alertRules = AlertRulesConfiguration()
    /// Base URL of the dashboard, for links in alerts (e.g. `http://coordinator:8080`).
    public var dashboardURL: String?

    public init() {}

    /// Checks the combination of settings before anything is opened.
    public func validate() throws(ConfigurationError) {
        let endpoint = try Endpoint(listen)
        if !endpoint.isLoopback && token == nil && !insecure {
            throw ConfigurationError(
                "refusing to listen on \(listen) without a cluster token: anyone who can reach it could join. "
                    + "Pass --token-file FILE (or TTS_CLUSTER_TOKEN_FILE), or --insecure on a trusted network.")
        }
        if endpoint.isTLS && tls?.certificateKeyFile == nil {
            throw ConfigurationError("\(listen) is a TLS address: pass --tls-cert FILE (certificate and key in one PEM file)")
        }
        guard heartbeatIntervalMs > 0, lostAfterMs > heartbeatIntervalMs else {
            throw ConfigurationError("--lost-after (\(lostAfterMs) ms) must be longer than the heartbeat interval (\(heartbeatIntervalMs) ms)")
        }
    }
}
