import Foundation
import Shared

/// The SIM embedder as a program, like the ASR command backend: argv with `{audio}` (the audio
/// file as it is, any format libsndfile reads; no shell), run once per file with a timeout.
///
/// Contract: the program prints the embedding as one JSON array of numbers on stdout (e.g.
/// `[0.12, 0.03, …]`) and exits 0. A non-zero exit, the timeout, or output that is not such a
/// non-empty array of finite numbers is that file's ``SpeakerEmbeddingError`` (embeddings of
/// different sizes make that utterance's SIM a measure error). The program does its own resampling and level normalisation.
public struct CommandSpeakerEmbedder: SpeakerEmbedder {
    /// The argv template.
    public let argv: [String]
    /// Seconds one file may take.
    public let timeoutSeconds: Double

    public init(argv: [String], timeoutSeconds: Double = 120) {
        self.argv = argv
        self.timeoutSeconds = timeoutSeconds
    }

    public var summary: String { "the command \(argv.joined(separator: " "))" }

    public func embed(path: String, clip: AudioClip) async throws(SpeakerEmbeddingError) -> [Float] {
        let words = argv.map { $0.replacingOccurrences(of: "{audio}", with: path) }
        let runner: CommandRunner
        do { runner = try CommandRunner(CommandSpec(argv: words), tailLines: 5) } catch {
            throw SpeakerEmbeddingError("the speaker command cannot start: \(error)")
        }
        let collected = Task { () -> [String] in
            var out: [String] = []
            for await line in runner.lines where line.stream == .stdout { out.append(line.text) }
            return out
        }
        let timeout = timeoutSeconds
        let timer = Task {
            try await Task.sleep(for: .milliseconds(Int64(timeout * 1000)))
            runner.terminate(grace: .seconds(2))
        }
        let exit = await withTaskCancellationHandler { await runner.wait() } onCancel: { runner.terminate(grace: .seconds(2)) }
        timer.cancel()
        let text = await collected.value.joined(separator: "\n")
        guard exit == .success else { throw SpeakerEmbeddingError("the speaker command \(exit.summary) on \(path)") }
        guard let values = try? JSONDecoder().decode([Double].self, from: Data(text.utf8)), !values.isEmpty,
              values.allSatisfy(\.isFinite) else {
            throw SpeakerEmbeddingError("the speaker command printed no JSON array of finite numbers for \(path) (got \(text.prefix(200)))")
        }
        return values.map(Float.init)
    }
}
