import Foundation
@testable import JobSpecs
@testable import Shared
import Testing

/// `eval.synthesizer` with `kind: persistent` (docs/SYNTHESIZER.md): parsed, validated, and
/// carried in the eval payload unchanged.
@Suite("Persistent synthesizer spec")
struct PersistentSynthesizerSpecTests {
    static let base = "name: e\nproject: p\ncommand: [t, \"{eval_every}\"]\neval_every: 500\n"

    static func error(_ yaml: String) -> JobSpecError? {
        do { _ = try JobSpecParser.parse(yaml: yaml); return nil } catch { return error }
    }

    @Test("kind: persistent takes a startup command with {checkpoint} and {output_dir}, timeouts and a restart bound")
    func parsesPersistent() throws {
        let spec = try JobSpecParser.parse(yaml: Self.base + """
            eval:
              manifests: [/d/val.jsonl::ko]
              synthesizer: {kind: persistent, command: [python, examples/synthesizers/indextts2_synth.py, --checkpoint, "{checkpoint}",
                            --model-dir, /models/IndexTTS-2, --log, "{output_dir}/synth.log"],
                            timeout_seconds: 120, startup_timeout_seconds: 600, max_restarts: 3}
            """)
        let synth = try #require(spec.evaluation?.synthesizer)
        #expect(synth == SynthesizerSpec(kind: "persistent",
                                         command: ["python", "examples/synthesizers/indextts2_synth.py", "--checkpoint", "{checkpoint}",
                                                   "--model-dir", "/models/IndexTTS-2", "--log", "{output_dir}/synth.log"],
                                         timeoutSeconds: 120, startupTimeoutSeconds: 600, maxRestarts: 3))
        let defaults = try JobSpecParser.parse(yaml: Self.base + "eval: {manifests: [v.jsonl], synthesizer: {kind: persistent, command: [synth, \"{checkpoint}\"]}}\n")
        #expect(defaults.evaluation?.synthesizer.startupTimeoutSeconds == nil && defaults.evaluation?.synthesizer.maxRestarts == nil)
    }

    @Test("a persistent synthesizer without a command, with a per-utterance placeholder, or with a non-positive startup timeout is refused at the field")
    func refusesBadPersistent() {
        let noCommand = Self.error(Self.base + "eval: {manifests: [v.jsonl], synthesizer: {kind: persistent}}\n")
        #expect(noCommand?.field == "eval.synthesizer.command")
        let perUtterance = Self.error(Self.base + "eval: {manifests: [v.jsonl], synthesizer: {kind: persistent, command: [synth, \"{text}\"]}}\n")
        #expect(perUtterance?.field == "eval.synthesizer.command")
        #expect(perUtterance.map { "\($0)" }?.contains("{text}") == true)
        let badTimeout = Self.error(Self.base + "eval: {manifests: [v.jsonl], synthesizer: {kind: persistent, command: [s], startup_timeout_seconds: 0}}\n")
        #expect(badTimeout?.field == "eval.synthesizer.startup_timeout_seconds")
        let badRestarts = Self.error(Self.base + "eval: {manifests: [v.jsonl], synthesizer: {kind: persistent, command: [s], max_restarts: -1}}\n")
        #expect(badRestarts?.field == "eval.synthesizer.max_restarts")
    }

    @Test("the new fields travel in the payload JSON, and a payload without them still decodes")
    func payloadRoundTrip() throws {
        let spec = SynthesizerSpec(kind: "persistent", command: ["s", "{checkpoint}"], timeoutSeconds: 30, startupTimeoutSeconds: 90, maxRestarts: 1)
        let json = String(decoding: try JSONCoding.encode(spec), as: UTF8.self)
        #expect(json.contains("\"startup_timeout_seconds\"") && json.contains("\"max_restarts\""))
        #expect(try JSONCoding.decode(SynthesizerSpec.self, from: Array(json.utf8)) == spec)
        let old = try JSONCoding.decode(SynthesizerSpec.self, from: Array(#"{"kind": "command", "command": ["x"], "timeout_seconds": 5}"#.utf8))
        #expect(old == SynthesizerSpec(kind: "command", command: ["x"], timeoutSeconds: 5))
        #expect(!String(decoding: try JSONCoding.encode(old), as: UTF8.self).contains("max_restarts"))
    }

    @Test("placeholders are found in words, with text around them and several per word")
    func placeholders() {
        #expect(SynthesizerSpec.placeholders(in: "--ckpt={checkpoint}") == ["checkpoint"])
        #expect(SynthesizerSpec.placeholders(in: "{output_dir}/a/{id}.wav") == ["output_dir", "id"])
        #expect(SynthesizerSpec.placeholders(in: "{\"json\": 1}").isEmpty)
        #expect(SynthesizerSpec.placeholders(in: "plain").isEmpty)
    }
}

extension PersistentSynthesizerSpecTests {
    @Test("the IndexTTS-2 eval spec in docs/SYNTHESIZER.md parses as written")
    func documentedSpecParses() throws {
        let doc = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/SYNTHESIZER.md")
        let text = try String(contentsOf: doc, encoding: .utf8)
        let blocks = text.components(separatedBy: "```yaml\n").dropFirst().map { $0.components(separatedBy: "```")[0] }
        let full = try #require(blocks.first { $0.hasPrefix("eval_every:") && $0.contains("kind: persistent") })
        let spec = try JobSpecParser.parse(yaml: "name: e\nproject: p\ncommand: [t]\n" + full)
        let synth = try #require(spec.evaluation?.synthesizer)
        #expect(synth.kind == "persistent" && synth.command?.contains("{checkpoint}") == true)
        #expect(synth.timeoutSeconds == 180 && synth.startupTimeoutSeconds == 900)
    }
}
