import Foundation
@testable import JobSpecs
@testable import Shared
import Testing

/// `eval.asr` with `kind: persistent` (docs/ASR.md): parsed, validated, carried in the eval
/// payload, and run by `eval-command` shards (any worker: no Vosk needed).
@Suite("Persistent ASR spec")
struct PersistentASRSpecTests {
    static let base = "name: e\nproject: p\ncommand: [t, \"{eval_every}\"]\neval_every: 500\n"

    static func error(_ yaml: String) -> JobSpecError? {
        do { _ = try JobSpecParser.parse(yaml: yaml); return nil } catch { return error }
    }

    @Test("asr: {kind: persistent, command: [...]} takes a startup command, a per-file timeout, a startup timeout and a restart bound")
    func parsesPersistent() throws {
        let spec = try JobSpecParser.parse(yaml: Self.base + """
            eval:
              manifests: [/d/val.jsonl::ko]
              asr: {kind: persistent, command: [python, examples/asr/whisper_large_v3_asr.py, --model-dir, /models/faster-whisper-large-v3],
                    timeout_seconds: 60, startup_timeout_seconds: 900, max_restarts: 3}
            """)
        let plan = try #require(spec.evaluation)
        #expect(plan.asr == "persistent")
        #expect(plan.asrCommand == ["python", "examples/asr/whisper_large_v3_asr.py", "--model-dir", "/models/faster-whisper-large-v3"])
        #expect(plan.asrTimeoutSeconds == 60 && plan.asrStartupTimeoutSeconds == 900 && plan.asrMaxRestarts == 3)
        let command = try JobSpecParser.parse(yaml: Self.base + "eval: {manifests: [v.jsonl], asr: {command: [whisper-cli, \"{audio}\"]}}\n")
        #expect(command.evaluation?.asr == "command" && command.evaluation?.asrCommand == ["whisper-cli", "{audio}"])
        let vosk = try JobSpecParser.parse(yaml: Self.base + "eval: {manifests: [v.jsonl]}\n")
        #expect(vosk.evaluation?.asr == "vosk" && vosk.evaluation?.asrCommand == nil)
    }

    @Test("a persistent ASR without a command, with a placeholder, an unknown kind, or persistent-only keys on a command ASR is refused at the field")
    func refusesBadPersistent() {
        let noCommand = Self.error(Self.base + "eval: {manifests: [v.jsonl], asr: {kind: persistent}}\n")
        #expect(noCommand?.field == "eval.asr.command")
        #expect(noCommand.map { "\($0)" }?.contains("needs a command") == true)
        let placeholder = Self.error(Self.base + "eval: {manifests: [v.jsonl], asr: {kind: persistent, command: [asr, \"{audio}\"]}}\n")
        #expect(placeholder?.field == "eval.asr.command")
        #expect(placeholder.map { "\($0)" }?.contains("uses {audio}: it takes no placeholders") == true, "\(String(describing: placeholder))")
        let kind = Self.error(Self.base + "eval: {manifests: [v.jsonl], asr: {kind: whisper, command: [asr]}}\n")
        #expect(kind?.field == "eval.asr.kind")
        let onCommand = Self.error(Self.base + "eval: {manifests: [v.jsonl], asr: {command: [asr, \"{audio}\"], max_restarts: 1}}\n")
        #expect(onCommand?.field == "eval.asr")
        let badTimeout = Self.error(Self.base + "eval: {manifests: [v.jsonl], asr: {kind: persistent, command: [asr], startup_timeout_seconds: 0}}\n")
        #expect(badTimeout?.field == "eval.asr.startup_timeout_seconds")
        let badKey = Self.error(Self.base + "eval: {manifests: [v.jsonl], asr: {kind: persistent, command: [asr], beam: 5}}\n")
        #expect(badKey?.field == "eval.asr.beam")
    }

    @Test("the request validation names the problem: unknown backend, a command ASR without {audio}, a persistent one without a command")
    func asrProblems() {
        #expect(EvalPayload.asrProblem(kind: "vosk", command: nil) == nil)
        #expect(EvalPayload.asrProblem(kind: "persistent", command: ["python", "asr.py"]) == nil)
        #expect(EvalPayload.asrProblem(kind: "persistent", command: nil)?.contains("the persistent ASR needs a command") == true)
        #expect(EvalPayload.asrProblem(kind: "command", command: ["whisper-cli"])?.contains("{audio}") == true)
        #expect(EvalPayload.asrProblem(kind: "whisper", command: nil) == "unknown ASR backend 'whisper': use vosk, command, persistent")
    }

    @Test("persistent-ASR shards are eval-command shards (any worker), Vosk ones eval; the new fields travel in the payload and old payloads still decode")
    func payloadAndShardKind() throws {
        #expect(EvalPayload.shardKind(asr: "persistent") == "eval-command")
        #expect(EvalPayload.shardKind(asr: "command") == "eval-command")
        #expect(EvalPayload.shardKind(asr: "vosk") == "eval")
        let payload = EvalPayload(evalId: 1, checkpoint: "c", utterances: [], synthesizer: .reference, asr: "persistent", asrCommand: ["asr"],
                                  asrTimeoutSeconds: 30, asrStartupTimeoutSeconds: 90, asrMaxRestarts: 1, outputDir: "/o")
        let json = String(decoding: try JSONCoding.encode(payload), as: UTF8.self)
        #expect(json.contains("\"asr_startup_timeout_seconds\"") && json.contains("\"asr_max_restarts\""))
        #expect(try JSONCoding.decode(EvalPayload.self, from: Array(json.utf8)) == payload)
        let old = try JSONCoding.decode(EvalPayload.self, from: Array(#"{"eval_id": 1, "checkpoint": "c", "utterances": [], "synthesizer": {"kind": "reference", "timeout_seconds": 120}, "asr": "vosk", "output_dir": "/o", "with_floor": true}"#.utf8))
        #expect(old.asrStartupTimeoutSeconds == nil && old.asrMaxRestarts == nil)
    }

    @Test("the Whisper eval spec in docs/ASR.md parses as written")
    func documentedSpecParses() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/ASR.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        let blocks = text.components(separatedBy: "```yaml\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
        let full = try #require(blocks.first { $0.hasPrefix("eval_every:") && $0.contains("kind: persistent") })
        let spec = try JobSpecParser.parse(yaml: "name: e\nproject: p\ncommand: [t]\n" + full)
        let plan = try #require(spec.evaluation)
        #expect(plan.asr == "persistent" && plan.asrCommand?.contains("examples/asr/whisper_large_v3_asr.py") == true)
        #expect(plan.asrStartupTimeoutSeconds == 900)
    }
}
