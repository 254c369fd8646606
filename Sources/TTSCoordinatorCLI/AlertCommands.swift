import ArgumentParser
import ClusterAdmin
import Foundation
import Shared

struct Alerts: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Firing alerts first, then recent ones (resolved, notices).")
    @OptionGroup var options: ClientOptions
    @Option(help: "How many to list.")
    var limit = 50

    func run() async throws {
        try await runClient {
            let alerts = try await options.client().alerts(limit: limit)
            if options.json { return try printJSON(alerts) }
            let now = Date()
            Table.print(header: ["ID", "STATE", "RULE", "SEVERITY", "RUN", "SERIES", "SINCE", "SENT", "SUMMARY"], rows: alerts.map { a in
                [String(a.id), a.state.rawValue + (a.silenced ? " (silenced)" : ""), a.rule, a.severity, a.runId ?? "-", a.series.isEmpty ? "-" : a.series,
                 Table.ago(now.timeIntervalSince(a.startedAt)), String(a.notifications), String(a.summary.prefix(80))]
            })
        }
    }
}

struct Silence: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Hold back the alerts of a run (or of one rule of it) for a while.",
        subcommands: [Add.self, List.self, Expire.self])

    struct Add: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Silence a run's alerts, e.g. `silence add --run r1 --rule loss_spike --for 2h --comment \"lr warmup\"`.")
        @OptionGroup var options: ClientOptions
        @Option(help: "Run id.") var run: String
        @Option(help: "Only this rule (loss_spike, non_finite, stalled, oom, worker_lost, shard_failed, …).") var rule: String?
        @Option(name: .customLong("for"), help: "How long: 90s, 30m, 2h, 1d.") var duration: String
        @Option(help: "Why (shown in `silence list`).") var comment = ""

        func run() async throws {
            guard let seconds = Self.seconds(duration) else {
                throw ValidationError("--for \(duration): use a number with s, m, h or d, e.g. 2h")
            }
            try await runClient {
                let s = try await options.client().addSilence(SilenceRequest(runId: run, rule: rule, seconds: seconds, comment: comment))
                if options.json { return try printJSON(s) }
                print("silence \(s.id): run \(s.runId)\(s.rule.map { " rule \($0)" } ?? " (every rule)") until \(s.expiresAt)")
            }
        }

        static func seconds(_ text: String) -> Double? {
            guard let unit = text.last, let n = Double(text.dropLast()), n > 0 else { return Double(text).flatMap { $0 > 0 ? $0 : nil } }
            switch unit {
            case "s": return n
            case "m": return n * 60
            case "h": return n * 3600
            case "d": return n * 86_400
            default: return nil
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Active silences.")
        @OptionGroup var options: ClientOptions

        func run() async throws {
            try await runClient {
                let list = try await options.client().silences()
                if options.json { return try printJSON(list) }
                let now = Date()
                Table.print(header: ["ID", "RUN", "RULE", "ENDS IN", "COMMENT"], rows: list.map {
                    [String($0.id), $0.runId, $0.rule ?? "(all)", Table.ago($0.expiresAt.timeIntervalSince(now)), $0.comment]
                })
            }
        }
    }

    struct Expire: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "End a silence now.")
        @OptionGroup var options: ClientOptions
        @Argument(help: "Silence id (see `silence list`).") var id: Int64

        func run() async throws {
            try await runClient {
                try await options.client().expireSilence(id: id)
                print("silence \(id) expired")
            }
        }
    }
}
