import Foundation
import Logging
import Shared

/// Writes each completed evaluation's reports (`report.json`, `report.md`) into its output
/// directory. A consumer of the ingest log (`eval_done` entries) with its own durable cursor
/// (`consumer_cursors.eval_reports`): the files are written after the commit that completed the
/// evaluation, and the cursor moves only once they are, so a crash in between rewrites them at
/// the next start rather than losing them (writing them is idempotent: temp file, then rename).
public final class EvalReportWriter: Sendable {
    public static let consumerName = "eval_reports"
    private let store: Store
    private let logger: Logger
    private let wakes: AsyncStream<Void>
    private let continuation: AsyncStream<Void>.Continuation
    /// Reading the store and writing the files block: they run here, never on a thread of the
    /// cooperative pool.
    private let queue = DispatchQueue(label: "tts.eval-reports", qos: .utility)

    public init(store: Store, logger: Logger) {
        self.store = store
        self.logger = logger
        (wakes, continuation) = AsyncStream.makeStream(of: Void.self, bufferingPolicy: .bufferingNewest(1))
    }

    /// Something was committed (callable from any thread; never blocks).
    public func wake() { continuation.yield() }

    /// Writes until cancelled: once at start, then after each wake.
    public func run() async {
        await catchUpOffThePool()
        for await _ in wakes {
            if Task.isCancelled { break }
            await catchUpOffThePool()
        }
    }

    private func catchUpOffThePool() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            queue.async { [self] in
                catchUp()
                c.resume()
            }
        }
    }

    /// Writes the reports of every evaluation completed past the cursor (exposed for tests).
    public func catchUp() {
        do {
            var position = try store.consumerPosition(Self.consumerName)
            while true {
                let chunk = try store.ingestLog(after: position, limit: 100, evalsOnly: true)
                guard chunk.through > position else { return }
                for entry in chunk.entries {
                    guard case .evalCompleted(let id) = entry.fact else { continue }
                    write(evalId: id)
                }
                position = chunk.through
                try store.setConsumerPosition(Self.consumerName, position)
            }
        } catch {
            logger.error("evaluation reports: cannot read the ingest log (\(error)); retrying at the next commit")
        }
    }

    private func write(evalId: Int64) {
        do {
            // The reports are made again from the stored results (the same scores as stored).
            guard let r = try store.completedEval(evalId: evalId) else { return }
            let score = EvalAggregator.score(r.results)
            let outputDir = r.eval.outputDir
            try FileManager.default.createDirectory(atPath: outputDir, withIntermediateDirectories: true)
            try Data(EvalAggregator.reportJSON(score, eval: r.summary, notes: r.notes)).write(to: URL(fileURLWithPath: outputDir + "/report.json"), options: .atomic)
            try Data(EvalAggregator.reportMarkdown(score, eval: r.summary).utf8).write(to: URL(fileURLWithPath: outputDir + "/report.md"), options: .atomic)
            let s = r.summary
            logger.info("evaluation \(evalId)\(s.runId.map { " of run \($0)" } ?? "")\(s.step.map { " at step \($0)" } ?? ""): \(s.message); reports in \(outputDir)")
        } catch {
            // The scores are stored; a report that cannot be written is said once, not retried forever.
            logger.error("evaluation \(evalId): cannot write its reports: \(error) (the scores are stored; see `tts-coordinator evals`)")
        }
    }
}
