import ClusterAdmin
import Foundation
import JobSpecs
import Logging
import Shared

/// Answers the CLI's admin commands (`workers`, `shards`, `status`, `enqueue`, `drain`) with
/// JSON documents.
public struct AdminService: Sendable {
    let store: Store
    let registry: WorkerRegistry
    let scheduler: Scheduler
    let configuration: CoordinatorConfiguration
    let startedAt: Date

    public func handle(_ request: AdminRequest) async throws(ProtocolError) -> [UInt8] {
        guard let command = AdminCommand(rawValue: request.command) else {
            throw ProtocolError(.invalidRequest, "unknown admin command \(request.command); known: \(AdminCommand.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        do {
            switch command {
            case .workers:
                return try JSONCoding.encode(try store.workers())
            case .shards:
                let args = request.arguments.isEmpty ? [:] : (try? JSONCoding.decode([String: JSONValue].self, from: request.arguments)) ?? [:]
                let state = args["state"]?.stringValue
                let job = args["job"]?.doubleValue.map { Int64($0) }
                return try JSONCoding.encode(try store.shards(state: state, jobId: job))
            case .status:
                let c = try store.counts()
                let status = ClusterStatus(
                    coordinatorVersion: TTSCluster.version, listen: configuration.listen, database: store.path,
                    uptimeSeconds: Date().timeIntervalSince(startedAt), workersByState: c.workers, shardsByState: c.shards, jobs: c.jobs)
                return try JSONCoding.encode(status)
            case .enqueue:
                let req: EnqueueRequest
                do {
                    req = try JSONCoding.decode(EnqueueRequest.self, from: request.arguments)
                } catch {
                    throw ProtocolError(.invalidRequest, "enqueue needs {kind, count, payload}: \(error)")
                }
                guard ["sleep", "echo", "synthetic"].contains(req.kind) else {
                    throw ProtocolError(.invalidRequest, "unknown shard kind \(req.kind): the built-in kinds are sleep, echo and synthetic")
                }
                guard (1...100_000).contains(req.count) else {
                    throw ProtocolError(.invalidRequest, "count must be between 1 and 100000 (got \(req.count))")
                }
                let reply = try store.enqueue(req, defaultMaxRetries: configuration.defaultMaxRetries,
                                              defaultProject: configuration.wandbSettings?.project ?? "tts-cluster")
                await scheduler.workAvailable()
                return try JSONCoding.encode(reply)
            case .metrics:
                let args = (try? JSONCoding.decode([String: JSONValue].self, from: request.arguments)) ?? [:]
                guard let run = args["run"]?.stringValue else { throw ProtocolError(.invalidRequest, "metrics needs {\"run\": RUN_ID}") }
                let byKey = try store.pointCounts(runId: run)
                let key = args["key"]?.stringValue
                let series = try key.map { k in
                    try store.metricSeries(runId: run, key: k, fromStep: args["from"]?.doubleValue.map { Int64($0) }, toStep: args["to"]?.doubleValue.map { Int64($0) })
                        .map { MetricsReport.Point(step: $0.step, value: $0.value, wallTime: $0.wallTime) }
                }
                return try JSONCoding.encode(MetricsReport(run: run, pointsByKey: byKey, totalPoints: byKey.values.reduce(0, +), key: key, series: series))
            case .alerts:
                let args = (try? JSONCoding.decode([String: JSONValue].self, from: request.arguments)) ?? [:]
                let limit = Int(args["limit"]?.doubleValue ?? 50)
                return try JSONCoding.encode(try store.alerts(limit: max(1, min(limit, 1_000))))
            case .silenceAdd:
                let req: SilenceRequest
                do { req = try JSONCoding.decode(SilenceRequest.self, from: request.arguments) } catch {
                    throw ProtocolError(.invalidRequest, "silence-add needs {runId, rule?, seconds, comment}: \(error)")
                }
                guard req.seconds > 0, req.seconds <= 90 * 86_400 else {
                    throw ProtocolError(.invalidRequest, "a silence lasts between 1 second and 90 days (got \(req.seconds) s)")
                }
                if let rule = req.rule, AlertRule(rawValue: rule) == nil {
                    throw ProtocolError(.invalidRequest, "unknown rule \(rule); rules: \(AlertRule.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                return try JSONCoding.encode(try store.addSilence(runId: req.runId, rule: req.rule, comment: req.comment, seconds: req.seconds))
            case .silenceList:
                return try JSONCoding.encode(try store.silences())
            case .silenceExpire:
                let args = (try? JSONCoding.decode([String: JSONValue].self, from: request.arguments)) ?? [:]
                guard let id = args["id"]?.doubleValue.map({ Int64($0) }) else { throw ProtocolError(.invalidRequest, "silence-expire needs {\"id\": N}") }
                guard try store.expireSilence(id: id) else { throw ProtocolError(.notFound, "no active silence \(id); see `tts-coordinator silence list`") }
                return try JSONCoding.encode(["expired": id])
            case .submit:
                let req: SubmitRequest
                do { req = try JSONCoding.decode(SubmitRequest.self, from: request.arguments) } catch {
                    throw ProtocolError(.invalidRequest, "submit needs {spec: TEXT}: \(error)")
                }
                let spec: JobSpec
                do { spec = try JobSpecParser.parse(yaml: req.spec) } catch {
                    throw ProtocolError(.invalidRequest, "\(req.source.map { "\($0): " } ?? "")\(error)")
                }
                if let alerts = spec.alerts {
                    do { _ = try AlertRulesConfiguration.validated(alerts) } catch {
                        throw ProtocolError(.invalidRequest, "\(req.source.map { "\($0): " } ?? "")\(error); see docs/ALERTS.md for each rule's settings")
                    }
                }
                for run in spec.runs() {
                    for dir in [TrainingDispatch.outputDirectory(spec: spec, run: run, runId: "RUNID", root: configuration.checkpointRoot), spec.logDir].compactMap({ $0 })
                    where !configuration.isAllowedOutput(dir) {
                        throw ProtocolError(.invalidRequest, "\(req.source.map { "\($0): " } ?? "")run \(run.name) would write to \(dir), outside the coordinator's output roots (\(configuration.outputRoots.joined(separator: ", "))); choose an output_dir under one of them")
                    }
                }
                let reply = try store.submit(spec, text: req.spec, checkpointRoot: configuration.checkpointRoot)
                await scheduler.workAvailable()
                return try JSONCoding.encode(reply)
            case .runs:
                return try JSONCoding.encode(try RunSummaries.list(store))
            case .logs:
                let req: LogsRequest
                do { req = try JSONCoding.decode(LogsRequest.self, from: request.arguments) } catch {
                    throw ProtocolError(.invalidRequest, "logs needs {run, after, limit}: \(error)")
                }
                return try JSONCoding.encode(try RunLogFormatter.logs(store, req))
            case .cancel:
                let args = (try? JSONCoding.decode([String: String].self, from: request.arguments)) ?? [:]
                guard let run = args["run"] else { throw ProtocolError(.invalidRequest, "cancel needs {\"run\": RUN_ID}") }
                let (reply, stopping) = try store.cancelRun(run)
                for s in stopping { registry.requestCancel(s.shard, reason: "cancelled by the user") }
                return try JSONCoding.encode(reply)
            case .eval:
                let req: EvalRequest
                do { req = try JSONCoding.decode(EvalRequest.self, from: request.arguments) } catch {
                    throw ProtocolError(.invalidRequest, "eval needs {checkpoint, manifests, synthesizer}: \(error)")
                }
                if let dir = req.outputDir, !configuration.isAllowedOutput(dir) {
                    throw ProtocolError(.invalidRequest, "the evaluation would write to \(dir), outside the coordinator's output roots (\(configuration.outputRoots.joined(separator: ", "))); choose --output under one of them")
                }
                if req.outputDir == nil, !configuration.isAllowedOutput(URL(fileURLWithPath: req.checkpoint).deletingLastPathComponent().path) {
                    throw ProtocolError(.invalidRequest, "the evaluation would write beside \(req.checkpoint), outside the coordinator's output roots (\(configuration.outputRoots.joined(separator: ", "))); pass --output under one of them")
                }
                let summary = try store.createEval(req)
                await scheduler.workAvailable()
                return try JSONCoding.encode(summary)
            case .evals:
                return try JSONCoding.encode(try store.evals())
            case .drain:
                let args = (try? JSONCoding.decode([String: String].self, from: request.arguments)) ?? [:]
                guard let target = args["worker"] else { throw ProtocolError(.invalidRequest, "drain needs {\"worker\": NAME or ID}") }
                let match = try store.workers().first { $0.id == target || $0.name == target }
                guard let match, registry.requestDrain(workerId: match.id) else {
                    throw ProtocolError(.notFound, "no worker named \(target)")
                }
                // Durable at once: a gang member's peers may fail on its planned stop before the
                // next heartbeat flush, and are judged by it.
                try store.flushHeartbeats(registry.takeDirty())
                return try JSONCoding.encode(["drain": match.name])
            }
        } catch let e as ProtocolError {
            throw e
        } catch {
            throw ProtocolError(.internal, "\(command.rawValue) failed: \(error)", retryable: true)
        }
    }
}
