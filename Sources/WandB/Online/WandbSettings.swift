import Foundation
import Shared

/// Where and how runs are logged to W&B, from the SDK's usual environment variables plus
/// explicit overrides (command-line flags, coordinator configuration).
///
/// | variable | meaning |
/// |---|---|
/// | `WANDB_API_KEY` | the key; without one the mode falls back to offline |
/// | `WANDB_MODE` | `online` (alias `run`), `offline` (alias `dryrun`) or `disabled` |
/// | `WANDB_DISABLED` | `true`/`1`: disabled |
/// | `WANDB_BASE_URL` | server, default `https://api.wandb.ai` |
/// | `WANDB_PROJECT`, `WANDB_ENTITY` | where runs go (no entity: the key's default entity) |
/// | `WANDB_RUN_NAME`, `WANDB_RUN_GROUP` | display name and group |
/// | `WANDB_JOB_TYPE`, `WANDB_TAGS` (comma-separated), `WANDB_NOTES` | run metadata |
/// | `WANDB_DIR` | root for offline run directories (default: the working directory) |
public struct WandbSettings: Sendable, Equatable, CustomStringConvertible {
    public enum Mode: String, Sendable, Equatable, Codable {
        case online, offline, disabled
    }

    public static let defaultBaseURL = "https://api.wandb.ai"

    /// The effective mode (online needs an API key).
    public var mode: Mode
    /// Why ``mode`` is what it is, for the startup log line (never contains the key).
    public var modeReason: String
    public var apiKey: WandbAPIKey?
    /// Without a trailing slash.
    public var baseURL: String
    public var project: String?
    public var entity: String?
    public var runName: String?
    public var runGroup: String?
    public var jobType: String?
    public var tags: [String]
    public var notes: String?
    public var directory: String
    /// Sent as `User-Agent` on GraphQL and file_stream requests (wandb-core sends `wandb-core`).
    public var userAgent: String

    /// Values that win over the environment; nil leaves the environment's value.
    public struct Overrides: Sendable, Equatable {
        public var mode: Mode?
        public var apiKey: WandbAPIKey?
        public var baseURL: String?
        public var project: String?
        public var entity: String?
        public var runName: String?
        public var runGroup: String?
        public var jobType: String?
        public var tags: [String]?
        public var notes: String?
        public var directory: String?

        public init(mode: Mode? = nil, apiKey: WandbAPIKey? = nil, baseURL: String? = nil, project: String? = nil,
                    entity: String? = nil, runName: String? = nil, runGroup: String? = nil, jobType: String? = nil,
                    tags: [String]? = nil, notes: String? = nil, directory: String? = nil) {
            self.mode = mode
            self.apiKey = apiKey
            self.baseURL = baseURL
            self.project = project
            self.entity = entity
            self.runName = runName
            self.runGroup = runGroup
            self.jobType = jobType
            self.tags = tags
            self.notes = notes
            self.directory = directory
        }
    }

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, overrides: Overrides = .init()) {
        func env(_ name: String) -> String? {
            guard let v = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !v.isEmpty else { return nil }
            return v
        }
        apiKey = overrides.apiKey ?? env("WANDB_API_KEY").flatMap(WandbAPIKey.init)
        var base = overrides.baseURL ?? env("WANDB_BASE_URL") ?? WandbSettings.defaultBaseURL
        while base.hasSuffix("/") { base.removeLast() }
        baseURL = base
        project = overrides.project ?? env("WANDB_PROJECT")
        entity = overrides.entity ?? env("WANDB_ENTITY")
        runName = overrides.runName ?? env("WANDB_RUN_NAME")
        runGroup = overrides.runGroup ?? env("WANDB_RUN_GROUP")
        jobType = overrides.jobType ?? env("WANDB_JOB_TYPE")
        tags = overrides.tags ?? (env("WANDB_TAGS")?.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty } ?? [])
        notes = overrides.notes ?? env("WANDB_NOTES")
        directory = overrides.directory ?? env("WANDB_DIR") ?? FileManager.default.currentDirectoryPath
        userAgent = "tts-cluster/\(TTSCluster.version)"

        // The requested mode, then the fallback to offline without a key.
        let requested: Mode
        var reason: String
        if let m = overrides.mode {
            requested = m
            reason = "configured \(m.rawValue)"
        } else if let raw = env("WANDB_MODE")?.lowercased() {
            switch raw {
            case "online", "run": requested = .online
            case "offline", "dryrun": requested = .offline
            case "disabled": requested = .disabled
            default: requested = .offline
            }
            reason = requested.rawValue == raw ? "WANDB_MODE=\(raw)" : "WANDB_MODE=\(raw) (read as \(requested.rawValue))"
        } else if let d = env("WANDB_DISABLED")?.lowercased(), ["true", "1", "yes"].contains(d) {
            requested = .disabled
            reason = "WANDB_DISABLED=\(d)"
        } else {
            requested = .online
            reason = "default"
        }
        if requested == .online && apiKey == nil {
            mode = .offline
            reason += "; no WANDB_API_KEY, so offline (run `wandb sync` later)"
        } else {
            mode = requested
        }
        modeReason = reason
    }

    /// The W&B app's base URL, for links to runs: the app lives at `https://wandb.ai` for the
    /// public API (`api.wandb.ai`); a self-hosted server serves both from its one URL.
    public var appURL: String { baseURL.contains("api.wandb.ai") ? "https://wandb.ai" : baseURL }

    /// `POST {base}/graphql`.
    public var graphQLURL: String { baseURL + "/graphql" }

    /// `POST {base}/files/{entity}/{project}/{run}/file_stream`.
    public func fileStreamURL(entity: String, project: String, runId: String) -> String {
        "\(baseURL)/files/\(Self.pathSegment(entity))/\(Self.pathSegment(project))/\(Self.pathSegment(runId))/file_stream"
    }

    /// Whether `url` is on the W&B server (the only place the API key may be sent).
    public func isUnderBaseURL(_ url: String) -> Bool {
        url == baseURL || url.hasPrefix(baseURL + "/") || url.hasPrefix(baseURL + "?")
    }

    public var description: String {
        "WandbSettings(mode: \(mode.rawValue) [\(modeReason)], baseURL: \(baseURL), project: \(project ?? "-"), entity: \(entity ?? "-"), apiKey: \(apiKey == nil ? "none" : "<redacted>"))"
    }

    static func pathSegment(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }
}
