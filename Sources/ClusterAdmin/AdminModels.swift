import Foundation
import Shared

/// A worker as the CLI (and later the REST API) shows it.
public struct WorkerSummary: Codable, Sendable, Equatable {
    public var id: String
    public var name: String
    public var host: String
    public var device: DeviceInfo
    public var capabilities: [String]
    public var version: String
    /// `live`, `lost` or `gone` (drained and exited).
    public var state: State
    /// `idle`, `busy`, `draining`, `stopping` as last reported.
    public var status: Status
    public var lastSeen: Date?
    public var registeredAt: Date?
    public var currentShard: Int64?
    public var progress: ShardProgress?
    public var telemetry: DeviceTelemetry?

    public init(
        id: String, name: String, host: String, device: DeviceInfo, capabilities: [String], version: String,
        state: State, status: Status, lastSeen: Date?, registeredAt: Date?, currentShard: Int64?,
        progress: ShardProgress?, telemetry: DeviceTelemetry?
    ) {
        self.id = id
        self.name = name
        self.host = host
        self.device = device
        self.capabilities = capabilities
        self.version = version
        self.state = state
        self.status = status
        self.lastSeen = lastSeen
        self.registeredAt = registeredAt
        self.currentShard = currentShard
        self.progress = progress
        self.telemetry = telemetry
    }
}

/// One attempt at running a shard.
public struct ShardAttemptSummary: Codable, Sendable, Equatable {
    public var attempt: Int
    public var leaseEpoch: Int64
    public var workerId: String
    public var workerName: String
    /// `leased`, `running`, `succeeded`, `failed`, `lost`, `cancelled`, `requeued`, `oom`.
    public var state: State
    public var leasedAt: Date?
    public var startedAt: Date?
    public var endedAt: Date?
    public var message: String

    public init(attempt: Int, leaseEpoch: Int64, workerId: String, workerName: String, state: State, leasedAt: Date?, startedAt: Date?, endedAt: Date?, message: String) {
        self.attempt = attempt
        self.leaseEpoch = leaseEpoch
        self.workerId = workerId
        self.workerName = workerName
        self.state = state
        self.leasedAt = leasedAt
        self.startedAt = startedAt
        self.endedAt = endedAt
        self.message = message
    }
}

/// A shard as the CLI shows it, with its attempt history.
public struct ShardSummary: Codable, Sendable, Equatable {
    public var id: Int64
    public var jobId: Int64
    public var kind: String
    public var state: State
    public var attempts: Int
    public var failures: Int
    public var maxRetries: Int
    public var leaseEpoch: Int64
    public var workerId: String?
    public var workerName: String?
    public var createdAt: Date?
    public var finishedAt: Date?
    public var message: String
    public var output: String
    public var history: [ShardAttemptSummary]
    /// The run it belongs to (nil for a shard of no run).
    public var runId: String?
    /// Its rank in the run's data-parallel gang (nil: not a gang).
    public var rank: Int?

    public init(id: Int64, jobId: Int64, kind: String, state: State, attempts: Int, failures: Int, maxRetries: Int, leaseEpoch: Int64, workerId: String?, workerName: String?, createdAt: Date?, finishedAt: Date?, message: String, output: String, history: [ShardAttemptSummary],
                runId: String? = nil, rank: Int? = nil) {
        self.runId = runId
        self.rank = rank
        self.id = id
        self.jobId = jobId
        self.kind = kind
        self.state = state
        self.attempts = attempts
        self.failures = failures
        self.maxRetries = maxRetries
        self.leaseEpoch = leaseEpoch
        self.workerId = workerId
        self.workerName = workerName
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.message = message
        self.output = output
        self.history = history
    }
}

/// The cluster at a glance.
public struct ClusterStatus: Codable, Sendable, Equatable {
    public var coordinatorVersion: String
    public var listen: String
    public var database: String
    public var uptimeSeconds: Double
    public var workersByState: [String: Int]
    public var shardsByState: [String: Int]
    public var jobs: Int

    public init(coordinatorVersion: String, listen: String, database: String, uptimeSeconds: Double, workersByState: [String: Int], shardsByState: [String: Int], jobs: Int) {
        self.coordinatorVersion = coordinatorVersion
        self.listen = listen
        self.database = database
        self.uptimeSeconds = uptimeSeconds
        self.workersByState = workersByState
        self.shardsByState = shardsByState
        self.jobs = jobs
    }
}

/// Arguments of the `enqueue` admin command: `count` shards of a built-in kind.
public struct EnqueueRequest: Codable, Sendable, Equatable {
    public var kind: String
    public var count: Int
    /// The shard parameters (e.g. `{"seconds": 2}` for `sleep`, `{"text": "hi"}` for `echo`).
    public var payload: [String: JSONValue]
    public var maxRetries: Int?
    public var name: String?

    public init(kind: String, count: Int, payload: [String: JSONValue], maxRetries: Int? = nil, name: String? = nil) {
        self.kind = kind
        self.count = count
        self.payload = payload
        self.maxRetries = maxRetries
        self.name = name
    }
}

public struct EnqueueReply: Codable, Sendable, Equatable {
    public var jobId: Int64
    public var shardIds: [Int64]
    /// The run created for the job (jobs that train or log metrics).
    public var runId: String?
    public init(jobId: Int64, shardIds: [Int64], runId: String? = nil) {
        self.jobId = jobId
        self.shardIds = shardIds
        self.runId = runId
    }
}

/// A run's stored metrics: points per key, and one series when asked.
public struct MetricsReport: Codable, Sendable, Equatable {
    public struct Point: Codable, Sendable, Equatable {
        public var step: Int64
        /// nil for NaN and ±Inf (JSON has no such numbers); see `text`.
        public var value: Double?
        /// `NaN`, `Infinity` or `-Infinity` when `value` is nil.
        public var text: String?
        public var wallTime: Double

        public init(step: Int64, value: Double, wallTime: Double) {
            self.step = step
            self.wallTime = wallTime
            if value.isFinite {
                self.value = value
            } else {
                self.text = value.isNaN ? "NaN" : value > 0 ? "Infinity" : "-Infinity"
            }
        }
    }

    public var run: String
    public var pointsByKey: [String: Int]
    public var totalPoints: Int
    public var key: String?
    public var series: [Point]?

    public init(run: String, pointsByKey: [String: Int], totalPoints: Int, key: String?, series: [Point]?) {
        self.run = run
        self.pointsByKey = pointsByKey
        self.totalPoints = totalPoints
        self.key = key
        self.series = series
    }
}

/// Admin commands the coordinator understands over NNG.
public enum AdminCommand: String, Sendable, CaseIterable {
    case workers, shards, status, enqueue, drain, metrics
    case alerts
    case silenceAdd = "silence-add"
    case silenceList = "silence-list"
    case silenceExpire = "silence-expire"
    case submit, runs, logs, cancel
    case eval, evals
}

/// An alert as `tts-coordinator alerts` shows it.
public struct AlertSummary: Sendable, Equatable, Codable {
    public var id: Int64
    public var runId: String?
    public var rule: String
    public var series: String
    public var severity: String
    /// `firing`, `resolved` or `notice` (a one-shot message such as `run_completed`).
    public var state: State
    public var summary: String
    public var startedAt: Date
    public var updatedAt: Date
    public var resolvedAt: Date?
    public var lastNotifiedAt: Date?
    /// Notifications delivered for it (first, repeats, resolved).
    public var notifications: Int
    /// A silence covers it now.
    public var silenced: Bool

    public init(id: Int64, runId: String?, rule: String, series: String, severity: String, state: State, summary: String,
                startedAt: Date, updatedAt: Date, resolvedAt: Date?, lastNotifiedAt: Date?, notifications: Int, silenced: Bool) {
        self.id = id
        self.runId = runId
        self.rule = rule
        self.series = series
        self.severity = severity
        self.state = state
        self.summary = summary
        self.startedAt = startedAt
        self.updatedAt = updatedAt
        self.resolvedAt = resolvedAt
        self.lastNotifiedAt = lastNotifiedAt
        self.notifications = notifications
        self.silenced = silenced
    }
}

/// A silence: the alerts of a run (optionally one rule of it) are not notified until it expires.
public struct SilenceSummary: Sendable, Equatable, Codable {
    public var id: Int64
    public var runId: String
    /// nil: every rule of the run.
    public var rule: String?
    public var comment: String
    public var createdAt: Date
    public var expiresAt: Date

    public init(id: Int64, runId: String, rule: String?, comment: String, createdAt: Date, expiresAt: Date) {
        self.id = id
        self.runId = runId
        self.rule = rule
        self.comment = comment
        self.createdAt = createdAt
        self.expiresAt = expiresAt
    }
}

/// `silence-add` arguments.
public struct SilenceRequest: Sendable, Equatable, Codable {
    public var runId: String
    public var rule: String?
    public var seconds: Double
    public var comment: String

    public init(runId: String, rule: String?, seconds: Double, comment: String) {
        self.runId = runId
        self.rule = rule
        self.seconds = seconds
        self.comment = comment
    }
}
