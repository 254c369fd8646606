import Foundation
import Shared
import Yams

/// Reads a job spec from YAML and validates it; every error names the field and its line.
///
/// ```yaml
/// name: ko-finetune
/// project: indextts-korean
/// kind: train                 # default
/// runner: command             # default
/// workdir: /srv/index-tts
/// env: {PYTHONUNBUFFERED: "1"}
/// command: python trainers/train_gpt_v2.py --output-dir {output_dir} --batch-size {batch_size}
///          --grad-accumulation {grad_accum} --learning-rate {lr} --resume {resume_checkpoint}
/// train_manifests: [/data/ko/gpt_pairs_train.jsonl::ko]
/// val_manifests: /data/ko/gpt_pairs_val.jsonl::ko
/// hyperparameters: {lr: 1e-5, warmup: 30000}
/// checkpoint_every: 1000      # default
/// eval_every: 1000
/// max_steps: 240000
/// max_retries: 3              # default
/// min_batch_size: 2           # OOM downshift floor, default 1
/// presets:
///   a6000: {match: {name: A6000, min_memory_gb: 40}, batch_size: 16, grad_accum: 1}
///   "4090": {match: {name: "4090"}, batch_size: 8, grad_accum: 2}
/// sweep: {grid: {lr: [1e-5, 2e-5], warmup: [1000, 30000]}}
/// world: {gpus: 2}            # data-parallel ranks per run (default 1; see WorldSpec)
/// ```
///
/// Numbers are read from the text as written, so `1e-5` (a string to YAML 1.1) is a number here
/// and keeps its spelling on the command line. Unknown keys are errors (a misspelt `max_step`
/// must not silently mean "no limit"). All presets must have the same effective batch
/// (`batch_size × grad_accum`); a spec whose presets disagree is refused.
public enum JobSpecParser {
    /// Top-level keys, for the unknown-key check.
    public static let topLevelKeys: [String] = [
        "name", "project", "kind", "runner", "command", "workdir", "env", "train_manifests", "val_manifests",
        "hyperparameters", "checkpoint_every", "eval_every", "max_steps", "max_retries", "batch_size",
        "grad_accum", "min_batch_size", "presets", "sweep", "group", "output_dir", "log_dir", "model", "eval",
        "python", "resume", "stop_grace", "keep", "same_effective_batch", "world", "alerts",
    ]

    /// The most runs one sweep may make.
    public static let maximumSweepRuns = 256

    /// Parses and validates a spec read from a file (`path` names it in errors).
    public static func parse(contentsOf path: String) throws(JobSpecError) -> JobSpec {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw JobSpecError(field: "", message: "cannot read \(path): \(error.localizedDescription)")
        }
        return try parse(yaml: text)
    }

    /// Parses and validates a spec.
    public static func parse(yaml: String) throws(JobSpecError) -> JobSpec {
        let root: Node
        do {
            guard let node = try Yams.compose(yaml: yaml) else {
                throw JobSpecError(field: "", message: "the document is empty; a job spec needs at least name, project and command")
            }
            root = node
        } catch let e as JobSpecError {
            throw e
        } catch let e as YamlError {
            throw yamlError(e)
        } catch {
            throw JobSpecError(field: "", message: "not valid YAML: \(error)")
        }
        return try Reader().spec(root)
    }

    private static func yamlError(_ e: YamlError) -> JobSpecError {
        switch e {
        case let .scanner(context, problem, mark, _), let .parser(context, problem, mark, _), let .composer(context, problem, mark, _):
            let started = context.map { " (\($0.text) that starts at line \($0.mark.line), column \($0.mark.column))" } ?? ""
            return JobSpecError(field: "", line: mark.line, column: mark.column, message: "not valid YAML: \(problem)\(started)")
        case let .reader(problem, offset, _, yaml):
            // Bad characters (controls, invalid UTF-8): Yams gives a character offset; say which line.
            let place = offset.map { characterPosition($0, in: yaml) }
            return JobSpecError(field: "", line: place?.line, column: place?.column, message: "not valid YAML: \(problem)")
        case let .duplicatedKeysInMapping(duplicates, context):
            return JobSpecError(field: duplicates.joined(separator: ", "), line: context.mark.line, column: context.mark.column,
                                message: "the key is written twice; keep one")
        default:
            return JobSpecError(field: "", message: "not valid YAML: \(e)")
        }
    }

    /// The 1-based line and column of the character at `offset` (line breaks as YAML counts them).
    private static func characterPosition(_ offset: Int, in text: String) -> (line: Int, column: Int) {
        var line = 1, column = 1
        for c in text.prefix(offset) {
            if c.isNewline {
                line += 1
                column = 1
            } else {
                column += 1
            }
        }
        return (line, column)
    }

    /// The validation walk; `fail` builds errors located at a node.
    private struct Reader {
        func fail(_ field: String, _ node: Node?, _ message: String) -> JobSpecError {
            JobSpecError(field: field, line: node?.mark?.line, column: node?.mark?.column, message: message)
        }

        func mapping(_ node: Node, _ field: String) throws(JobSpecError) -> [(key: String, keyNode: Node, value: Node)] {
            guard case .mapping(let m) = node else {
                throw fail(field, node, "expected a mapping (key: value lines), found \(describe(node))")
            }
            var out: [(key: String, keyNode: Node, value: Node)] = []
            for (k, v) in m {
                guard case .scalar(let s) = k else { throw fail(field, k, "keys must be plain names") }
                out.append((s.string, k, v))
            }
            return out
        }

        /// `alerts:`: a mapping of rule names to mappings of settings, kept as JSON. Plain
        /// scalars that read as numbers or booleans become numbers and booleans; quoted ones stay
        /// strings (the coordinator's decoder then names a wrong type).
        func alertSettings(_ node: Node) throws(JobSpecError) -> [String: JSONValue] {
            var out: [String: JSONValue] = [:]
            for (rule, ruleNode, value) in try mapping(node, "alerts") {
                guard case .mapping = value else {
                    throw fail("alerts.\(rule)", ruleNode, "expected a mapping of the rule's settings (e.g. alerts: {stalled: {floor_seconds: 120}}), found \(describe(value))")
                }
                out[rule] = try json(value, "alerts.\(rule)")
            }
            return out
        }

        func json(_ node: Node, _ field: String) throws(JobSpecError) -> JSONValue {
            switch node {
            case .scalar(let s):
                guard s.style == .plain else { return .string(s.string) }
                switch s.string {
                case "true", "True", "TRUE", "yes", "on": return .bool(true)
                case "false", "False", "FALSE", "no", "off": return .bool(false)
                case "null", "~", "": return .null
                default: return Double(s.string).flatMap { $0.isFinite ? JSONValue.number($0) : nil } ?? .string(s.string)
                }
            case .sequence(let items):
                var out: [JSONValue] = []
                for (i, item) in items.enumerated() { out.append(try json(item, "\(field)[\(i)]")) }
                return .array(out)
            case .mapping:
                var out: [String: JSONValue] = [:]
                for (k, _, v) in try mapping(node, field) { out[k] = try json(v, "\(field).\(k)") }
                return .object(out)
            case .alias:
                throw fail(field, node, "aliases are not supported; write the value out")
            }
        }

        func describe(_ node: Node) -> String {
            switch node {
            case .scalar(let s): return "'\(s.string)'"
            case .mapping: return "a mapping"
            case .sequence: return "a list"
            case .alias: return "an alias"
            }
        }

        func string(_ node: Node, _ field: String) throws(JobSpecError) -> String {
            guard case .scalar(let s) = node else { throw fail(field, node, "expected a single value, found \(describe(node))") }
            return s.string
        }

        func nonEmpty(_ node: Node, _ field: String) throws(JobSpecError) -> String {
            let s = try string(node, field).trimmingCharacters(in: .whitespaces)
            guard !s.isEmpty else { throw fail(field, node, "must not be empty") }
            return s
        }

        /// A directory the job writes to: no `..` component (a spec cannot climb out of where it
        /// says it writes; the coordinator's --output-root limits where that may be).
        func directory(_ node: Node, _ field: String) throws(JobSpecError) -> String {
            let s = try nonEmpty(node, field)
            guard !s.split(separator: "/").contains("..") else {
                throw fail(field, node, "'\(s)' contains '..'; write the directory itself (outputs must stay under the coordinator's output roots)")
            }
            return s
        }

        func int(_ node: Node, _ field: String, minimum: Int) throws(JobSpecError) -> Int {
            let text = try string(node, field).replacingOccurrences(of: "_", with: "")
            guard let v = Int(text) ?? Double(text).flatMap({ $0 == $0.rounded() && abs($0) < 1e15 ? Int($0) : nil }) else {
                throw fail(field, node, "expected a whole number, found '\(text)'")
            }
            guard v >= minimum else { throw fail(field, node, "must be at least \(minimum), found \(v)") }
            return v
        }

        func bool(_ node: Node, _ field: String) throws(JobSpecError) -> Bool {
            switch try string(node, field).lowercased() {
            case "true", "yes", "on": return true
            case "false", "no", "off": return false
            case let other: throw fail(field, node, "expected true or false, found '\(other)'")
            }
        }

        func double(_ node: Node, _ field: String) throws(JobSpecError) -> Double {
            let text = try string(node, field).replacingOccurrences(of: "_", with: "")
            guard let v = Double(text), v.isFinite else { throw fail(field, node, "expected a number, found '\(text)'") }
            return v
        }

        func scalarValue(_ node: Node, _ field: String) throws(JobSpecError) -> ParameterValue {
            guard case .scalar(let s) = node else {
                throw fail(field, node, "expected a single value (number, string or boolean), found \(describe(node))")
            }
            return ParameterValue(s.string)
        }

        func identifier(_ name: String, _ node: Node, _ field: String) throws(JobSpecError) {
            guard CommandTemplate.isIdentifier(name) else {
                throw fail(field, node, "'\(name)' is not a valid name: use letters, digits and _ (it becomes the placeholder {\(name)})")
            }
        }

        func stringList(_ node: Node, _ field: String) throws(JobSpecError) -> [String] {
            switch node {
            case .scalar: return [try nonEmpty(node, field)]
            case .sequence(let seq):
                var out: [String] = []
                for (i, item) in seq.enumerated() { out.append(try nonEmpty(item, "\(field)[\(i)]")) }
                return out
            default: throw fail(field, node, "expected a path or a list of paths, found \(describe(node))")
            }
        }

        func commandTemplate(_ node: Node) throws(JobSpecError) -> CommandTemplate {
            switch node {
            case .scalar(let s):
                do {
                    let t = try CommandTemplate(commandLine: s.string)
                    guard !t.parts.isEmpty else { throw fail("command", node, "must not be empty") }
                    return t
                } catch let e as CommandTemplateError {
                    throw fail("command", node, e.message)
                } catch let e as JobSpecError {
                    throw e
                } catch {
                    throw fail("command", node, "\(error)")
                }
            case .sequence(let seq):
                var parts: [CommandTemplate.Part] = []
                for (i, item) in seq.enumerated() {
                    switch item {
                    case .scalar(let s): parts.append(.word(s.string))
                    case .sequence(let group):
                        var words: [String] = []
                        for (j, w) in group.enumerated() { words.append(try string(w, "command[\(i)][\(j)]")) }
                        guard !words.isEmpty else { throw fail("command[\(i)]", item, "an optional group must hold at least one word") }
                        parts.append(.optional(words))
                    default:
                        throw fail("command[\(i)]", item, "expected a word or a list of words (an optional group), found \(describe(item))")
                    }
                }
                guard !parts.isEmpty else { throw fail("command", node, "must not be empty") }
                return CommandTemplate(parts: parts)
            default:
                throw fail("command", node, "expected a command line or a list of arguments, found \(describe(node))")
            }
        }

        func preset(_ name: String, _ node: Node, jobHyperparameters: Set<String>) throws(JobSpecError) -> GPUPreset {
            let field = "presets.\(name)"
            var match = GPUMatch()
            var batch: Int?
            var accum = 1
            var overrides: [Hyperparameter] = []
            for (key, keyNode, value) in try mapping(node, field) {
                switch key {
                case "match":
                    for (mk, mkNode, mv) in try mapping(value, "\(field).match") {
                        switch mk {
                        case "name": match.name = try nonEmpty(mv, "\(field).match.name")
                        case "min_memory_gb":
                            let gb = try double(mv, "\(field).match.min_memory_gb")
                            guard gb > 0 else { throw fail("\(field).match.min_memory_gb", mv, "must be positive") }
                            match.minMemoryGB = gb
                        default: throw fail("\(field).match.\(mk)", mkNode, "unknown key; a match takes name and min_memory_gb")
                        }
                    }
                case "batch_size": batch = try int(value, "\(field).batch_size", minimum: 1)
                case "grad_accum": accum = try int(value, "\(field).grad_accum", minimum: 1)
                case "hyperparameters":
                    for (hk, hkNode, hv) in try mapping(value, "\(field).hyperparameters") {
                        guard jobHyperparameters.contains(hk) else {
                            throw fail("\(field).hyperparameters.\(hk)", hkNode, "'\(hk)' is not a hyperparameter of the job; a preset may only override the job's hyperparameters (\(jobHyperparameters.sorted().joined(separator: ", ")))")
                        }
                        overrides.append(Hyperparameter(name: hk, value: try scalarValue(hv, "\(field).hyperparameters.\(hk)")))
                    }
                default: throw fail("\(field).\(key)", keyNode, "unknown key; a preset takes match, batch_size, grad_accum and hyperparameters")
                }
            }
            guard let batch else { throw fail("\(field).batch_size", node, "missing; every preset needs a batch_size") }
            try effectiveBatchFits(batch, accum, "\(field).grad_accum", node)
            return GPUPreset(name: name, match: match, batch: BatchSettings(batchSize: batch, gradAccum: accum), hyperparameters: overrides)
        }

        func resumePolicy(_ node: Node) throws(JobSpecError) -> ResumePolicy {
            let text = try string(node, "resume")
            guard let p = ResumePolicy(rawValue: text) else {
                throw fail("resume", node, "'\(text)': write full (the newest checkpoint with optimizer state, the default) or newest (the newest of any kind)")
            }
            return p
        }

        func duration(_ node: Node, _ field: String) throws(JobSpecError) -> Duration {
            let text = try string(node, field)
            guard let d = Duration.parseSpec(text), d <= .seconds(7 * 86_400) else {
                throw fail(field, node, "'\(text)' is not a duration; write seconds (1200) or 90s, 20m, 1h, 1h30m (at most a week)")
            }
            return d
        }

        func retention(_ node: Node) throws(JobSpecError) -> RetentionPolicy {
            var last: Int?
            var best: Int?
            var measure = "eval/cer"
            var sawBy = false
            for (k, kNode, v) in try mapping(node, "keep") {
                switch k {
                case "last": last = try int(v, "keep.last", minimum: 1)
                case "best": best = try int(v, "keep.best", minimum: 0)
                case "by":
                    measure = try nonEmpty(v, "keep.by")
                    sawBy = true
                default: throw fail("keep.\(k)", kNode, "unknown key; keep takes last, best and by (eval/cer, eval/wer, val/text_loss, …)")
                }
            }
            guard last != nil || best != nil else {
                throw fail("keep", node, "names neither last nor best: every pin would be deleted; write e.g. {last: 3, best: 2, by: eval/cer}")
            }
            if (best ?? 0) > 0, !sawBy {
                throw fail("keep.by", node, "keep.best needs by: the measure that ranks checkpoints (eval/cer, eval/wer, val/text_loss, …)")
            }
            return RetentionPolicy(last: last, best: best, measure: measure)
        }

        /// `batch × accum` (the effective batch) must be a number, not an overflow.
        func effectiveBatchFits(_ batch: Int, _ accum: Int, _ field: String, _ node: Node?) throws(JobSpecError) {
            guard !batch.multipliedReportingOverflow(by: accum).overflow else {
                throw fail(field, node, "batch_size × grad_accum (\(batch) × \(accum)) is too large")
            }
        }

        func sweep(_ node: Node) throws(JobSpecError) -> SweepGrid {
            var grid: SweepGrid?
            for (key, keyNode, value) in try mapping(node, "sweep") {
                guard key == "grid" else { throw fail("sweep.\(key)", keyNode, "unknown key; a sweep takes grid (only grid sweeps exist)") }
                var axes: [SweepGrid.Axis] = []
                for (name, nameNode, valuesNode) in try mapping(value, "sweep.grid") {
                    try identifier(name, nameNode, "sweep.grid.\(name)")
                    guard case .sequence(let seq) = valuesNode, !seq.isEmpty else {
                        throw fail("sweep.grid.\(name)", valuesNode, "expected a non-empty list of values, e.g. [1e-5, 2e-5]")
                    }
                    var values: [ParameterValue] = []
                    for (i, item) in seq.enumerated() {
                        let v = try scalarValue(item, "sweep.grid.\(name)[\(i)]")
                        guard !values.contains(v) else { throw fail("sweep.grid.\(name)[\(i)]", item, "'\(v.text)' is listed twice") }
                        values.append(v)
                    }
                    axes.append(SweepGrid.Axis(name: name, values: values))
                }
                guard !axes.isEmpty else { throw fail("sweep.grid", value, "names no hyperparameter to sweep") }
                grid = SweepGrid(axes: axes)
            }
            guard let grid else { throw fail("sweep.grid", node, "missing; write sweep: {grid: {name: [values…]}}") }
            guard grid.count <= maximumSweepRuns else {
                throw fail("sweep.grid", node, "makes \(grid.count) runs; at most \(maximumSweepRuns) are allowed in one job")
            }
            return grid
        }

        func spec(_ root: Node) throws(JobSpecError) -> JobSpec {
            let fields = try mapping(root, "")
            var nodes: [String: Node] = [:]
            for (key, keyNode, value) in fields {
                guard topLevelKeys.contains(key) else {
                    throw fail(key, keyNode, "unknown key; a job spec takes \(topLevelKeys.joined(separator: ", "))")
                }
                nodes[key] = value
            }
            func required(_ key: String) throws(JobSpecError) -> Node {
                guard let n = nodes[key] else { throw fail(key, root, "missing; every job spec needs '\(key)'") }
                return n
            }
            let name = try nonEmpty(try required("name"), "name")
            guard name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "._-".contains($0)) }) else {
                throw fail("name", nodes["name"], "'\(name)' may use only letters, digits, '.', '_' and '-' (it names runs and directories)")
            }
            let project = try nonEmpty(try required("project"), "project")
            var kind = JobSpec.Kind.train
            if let n = nodes["kind"] {
                let raw = try string(n, "kind")
                guard let k = JobSpec.Kind(rawValue: raw) else {
                    throw fail("kind", n, "'\(raw)' is not a job kind this version runs; use \(JobSpec.Kind.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                kind = k
            }
            var runner = JobSpec.Runner.command
            if let n = nodes["runner"] {
                let raw = try string(n, "runner")
                guard let r = JobSpec.Runner(rawValue: raw) else {
                    throw fail("runner", n, "'\(raw)' is not available; use \(JobSpec.Runner.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                runner = r
            }
            // `command` runs an existing trainer; `torch` trains a TorchScript `model` in the worker.
            var model: String?
            let commandNode: Node
            let command: CommandTemplate
            switch runner {
            case .command:
                if let n = nodes["model"] { throw fail("model", n, "is for runner: torch; the command runner runs `command`") }
                commandNode = try required("command")
                command = try commandTemplate(commandNode)
            case .torch:
                if let n = nodes["command"] { throw fail("command", n, "is for runner: command; runner: torch trains `model` (a TorchScript file) in the worker") }
                model = try nonEmpty(try required("model"), "model")
                guard nodes["train_manifests"] != nil else { throw fail("train_manifests", root, "runner: torch needs train_manifests (pair manifests, path.jsonl::ko)") }
                commandNode = root
                command = CommandTemplate(parts: [])
                let entries = try nodes["hyperparameters"].map { n throws(JobSpecError) in try mapping(n, "hyperparameters") }
                for (k, kNode, v) in entries ?? [] {
                    guard JobSpec.torchHyperparameters.contains(k) else {
                        throw fail("hyperparameters.\(k)", kNode, "is not a torch runner setting; known: \(JobSpec.torchHyperparameters.joined(separator: ", "))")
                    }
                    if k == "schedule" {
                        let text = try string(v, "hyperparameters.schedule")
                        guard ["constant", "linear", "cosine", "wsd"].contains(text) else {
                            throw fail("hyperparameters.schedule", v, "'\(text)' is not a schedule; use constant, linear, cosine or wsd")
                        }
                    } else if k != "amp" {
                        guard (try scalarValue(v, "hyperparameters.\(k)")).number != nil else {
                            throw fail("hyperparameters.\(k)", v, "must be a number")
                        }
                    }
                }
            }

            var environment: [String: String] = [:]
            if let n = nodes["env"] {
                for (k, kNode, v) in try mapping(n, "env") {
                    guard !k.isEmpty, !k.contains("="), !k.contains("\0") else { throw fail("env.\(k)", kNode, "not a valid environment variable name") }
                    environment[k] = try string(v, "env.\(k)")
                }
            }
            var hyperparameters: [Hyperparameter] = []
            if let n = nodes["hyperparameters"] {
                for (k, kNode, v) in try mapping(n, "hyperparameters") {
                    try identifier(k, kNode, "hyperparameters.\(k)")
                    guard !JobSpec.builtinPlaceholders.contains(k) else {
                        throw fail("hyperparameters.\(k)", kNode, "'\(k)' is set by the cluster (\(k == "batch_size" || k == "grad_accum" ? "use presets or the top-level \(k)" : "it is a built-in placeholder")); remove it here")
                    }
                    hyperparameters.append(Hyperparameter(name: k, value: try scalarValue(v, "hyperparameters.\(k)")))
                }
            }
            let grid = try nodes["sweep"].map { n throws(JobSpecError) in try sweep(n) }
            if let grid, let n = nodes["sweep"] {
                for axis in grid.axes where JobSpec.builtinPlaceholders.contains(axis.name) {
                    throw fail("sweep.grid.\(axis.name)", n, "'\(axis.name)' is set by the cluster and cannot be swept")
                }
            }

            let sameEffectiveBatch = try nodes["same_effective_batch"].map { n throws(JobSpecError) in try bool(n, "same_effective_batch") } ?? true
            var presets: [GPUPreset] = []
            if let n = nodes["presets"] {
                let names = Set(hyperparameters.map(\.name) + (runner == .torch ? JobSpec.torchHyperparameters : []))
                for (k, _, v) in try mapping(n, "presets") { presets.append(try preset(k, v, jobHyperparameters: names)) }
                guard !presets.isEmpty else { throw fail("presets", n, "is empty; remove it or name at least one GPU class") }
                let effective = Set(presets.map(\.batch.effectiveBatch))
                if effective.count > 1 && sameEffectiveBatch {
                    let list = presets.map { "\($0.name): \($0.batch.batchSize) × \($0.batch.gradAccum) = \($0.batch.effectiveBatch)" }
                    throw fail("presets", n, "the effective batch (batch_size × grad_accum) must be the same on every card so runs are comparable; found \(list.joined(separator: ", ")) (write same_effective_batch: false to let each card keep its own)")
                }
            }
            let defaultBatch = BatchSettings(
                batchSize: try nodes["batch_size"].map { n throws(JobSpecError) in try int(n, "batch_size", minimum: 1) } ?? 1,
                gradAccum: try nodes["grad_accum"].map { n throws(JobSpecError) in try int(n, "grad_accum", minimum: 1) } ?? 1)
            try effectiveBatchFits(defaultBatch.batchSize, defaultBatch.gradAccum, "grad_accum", nodes["grad_accum"] ?? nodes["batch_size"])
            if !presets.isEmpty, sameEffectiveBatch, nodes["batch_size"] != nil || nodes["grad_accum"] != nil,
               defaultBatch.effectiveBatch != presets[0].batch.effectiveBatch {
                throw fail("batch_size", nodes["batch_size"] ?? nodes["grad_accum"], "the top-level batch (\(defaultBatch)) disagrees with the presets' effective batch \(presets[0].batch.effectiveBatch); remove it or make them equal")
            }
            if presets.isEmpty, nodes["batch_size"] == nil, command.placeholders.contains("batch_size") {
                throw fail("batch_size", root, "the command uses {batch_size} but the spec has neither presets nor a batch_size")
            }
            let minimumBatch = try nodes["min_batch_size"].map { n throws(JobSpecError) in try int(n, "min_batch_size", minimum: 1) } ?? 1

            var world = WorldSpec.single
            if let n = nodes["world"] {
                var gpus: Int?, nodeCount: Int?, perNode: Int?
                for (k, kNode, v) in try mapping(n, "world") {
                    switch k {
                    case "gpus": gpus = try int(v, "world.gpus", minimum: 1)
                    case "nodes": nodeCount = try int(v, "world.nodes", minimum: 1)
                    case "gpus_per_node": perNode = try int(v, "world.gpus_per_node", minimum: 1)
                    default: throw fail("world.\(k)", kNode, "unknown key; world takes gpus, or nodes and gpus_per_node")
                    }
                }
                switch (gpus, nodeCount, perNode) {
                case (let g?, nil, nil): world = WorldSpec(gpus: g)
                case (nil, let m?, let k?): world = WorldSpec(gpus: m * k, nodes: m, gpusPerNode: k)
                case (let g?, let m?, let k?) where g == m * k: world = WorldSpec(gpus: g, nodes: m, gpusPerNode: k)
                case (_?, _?, _?): throw fail("world", n, "gpus disagrees with nodes × gpus_per_node; write one or the other")
                default: throw fail("world", n, "needs gpus (e.g. {gpus: 4}) or both nodes and gpus_per_node (e.g. {nodes: 2, gpus_per_node: 2})")
                }
                if world.isGang {
                    for p in presets {
                        if let problem = world.splitProblem(p.batch, field: "presets.\(p.name)") { throw fail("world", n, problem) }
                    }
                    if presets.isEmpty, let problem = world.splitProblem(defaultBatch, field: "grad_accum") { throw fail("world", n, problem) }
                }
            }

            // Every placeholder must be known.
            let known = Set(JobSpec.builtinPlaceholders + hyperparameters.map(\.name) + (grid?.axes.map(\.name) ?? []))
            for p in command.placeholders.sorted() where !known.contains(p) {
                throw fail("command", commandNode, "uses {\(p)}, which is neither a built-in placeholder (\(JobSpec.builtinPlaceholders.joined(separator: ", "))) nor a hyperparameter; add it under hyperparameters or fix the spelling")
            }

            var evaluation: EvalPlan?
            if let n = nodes["eval"] {
                var manifests: [ManifestSpec] = []
                var samples: Int?
                var synthesizer = SynthesizerSpec.reference
                var shards = 2
                var asrCommand: [String]?
                var asrKind: String?
                var asrTimeout: Double?
                var asrStartupTimeout: Double?
                var asrMaxRestarts: Int?
                for (k, kNode, v) in try mapping(n, "eval") {
                    switch k {
                    case "manifests": manifests = try stringList(v, "eval.manifests").map(ManifestSpec.init(parsing:))
                    case "num_samples": samples = try int(v, "eval.num_samples", minimum: 1)
                    case "shards": shards = try int(v, "eval.shards", minimum: 1)
                    case "synthesizer":
                        if case .scalar = v {
                            let kind = try string(v, "eval.synthesizer")
                            switch kind {
                            case "reference": synthesizer = .reference
                            case "torch": synthesizer = SynthesizerSpec(kind: "torch")
                            default: throw fail("eval.synthesizer", v, "'\(kind)': write reference, torch, {command: [...], timeout_seconds: N} or {kind: torch, module: PATH, max_codes: N}")
                            }
                        } else {
                            var command: [String] = []
                            var timeout = 120.0
                            var kind: String?
                            var module: String?
                            var maxCodes: Int?
                            var startupTimeout: Double?
                            var maxRestarts: Int?
                            for (sk, skNode, sv) in try mapping(v, "eval.synthesizer") {
                                switch sk {
                                case "kind":
                                    let k = try string(sv, "eval.synthesizer.kind")
                                    guard SynthesizerSpec.kinds.contains(k) else { throw fail("eval.synthesizer.kind", sv, "'\(k)': one of \(SynthesizerSpec.kinds.joined(separator: ", "))") }
                                    kind = k
                                case "command": command = try stringList(sv, "eval.synthesizer.command")
                                case "timeout_seconds": timeout = try double(sv, "eval.synthesizer.timeout_seconds")
                                case "module": module = try nonEmpty(sv, "eval.synthesizer.module")
                                case "max_codes": maxCodes = try int(sv, "eval.synthesizer.max_codes", minimum: 1)
                                case "startup_timeout_seconds":
                                    let t = try double(sv, "eval.synthesizer.startup_timeout_seconds")
                                    guard t > 0 else { throw fail("eval.synthesizer.startup_timeout_seconds", sv, "must be positive, found \(t)") }
                                    startupTimeout = t
                                case "max_restarts": maxRestarts = try int(sv, "eval.synthesizer.max_restarts", minimum: 0)
                                default: throw fail("eval.synthesizer.\(sk)", skNode, "unknown key; a synthesizer takes kind, command, timeout_seconds, module, max_codes, startup_timeout_seconds and max_restarts")
                                }
                            }
                            let resolved = kind ?? (command.isEmpty ? (module != nil ? "torch" : "command") : "command")
                            if resolved == "command" || resolved == "persistent" {
                                guard !command.isEmpty else { throw fail("eval.synthesizer.command", v, "is required for a \(resolved) synthesizer") }
                            }
                            if resolved == "persistent", let p = command.flatMap(SynthesizerSpec.placeholders(in:)).first(where: { !SynthesizerSpec.persistentPlaceholders.contains($0) }) {
                                throw fail("eval.synthesizer.command", v, "uses {\(p)}: a persistent synthesizer's startup command takes only {checkpoint} and {output_dir} (the utterances come as JSON lines on its stdin, docs/SYNTHESIZER.md)")
                            }
                            synthesizer = SynthesizerSpec(kind: resolved, command: command.isEmpty ? nil : command, timeoutSeconds: timeout,
                                                          module: module, maxCodes: maxCodes, startupTimeoutSeconds: startupTimeout, maxRestarts: maxRestarts)
                        }
                    case "asr":
                        if case .scalar = v {
                            guard try string(v, "eval.asr") == "vosk" else {
                                throw fail("eval.asr", v, "write vosk, {command: [..., \"{audio}\", ...]} or {kind: persistent, command: [...]} (docs/ASR.md)")
                            }
                        } else {
                            for (ak, akNode, av) in try mapping(v, "eval.asr") {
                                switch ak {
                                case "kind":
                                    let kind = try string(av, "eval.asr.kind")
                                    guard kind == "command" || kind == "persistent" else {
                                        throw fail("eval.asr.kind", av, "'\(kind)': write command or persistent (for Vosk, write asr: vosk)")
                                    }
                                    asrKind = kind
                                case "command": asrCommand = try stringList(av, "eval.asr.command")
                                case "timeout_seconds":
                                    let t = try double(av, "eval.asr.timeout_seconds")
                                    guard t > 0 else { throw fail("eval.asr.timeout_seconds", av, "must be positive, found \(t)") }
                                    asrTimeout = t
                                case "startup_timeout_seconds":
                                    let t = try double(av, "eval.asr.startup_timeout_seconds")
                                    guard t > 0 else { throw fail("eval.asr.startup_timeout_seconds", av, "must be positive, found \(t)") }
                                    asrStartupTimeout = t
                                case "max_restarts": asrMaxRestarts = try int(av, "eval.asr.max_restarts", minimum: 0)
                                default:
                                    throw fail("eval.asr.\(ak)", akNode, "unknown key; asr takes kind, command, timeout_seconds, startup_timeout_seconds and max_restarts")
                                }
                            }
                            let kind = asrKind ?? "command"
                            asrKind = kind
                            if kind == "command", asrStartupTimeout != nil || asrMaxRestarts != nil {
                                throw fail("eval.asr", v, "startup_timeout_seconds and max_restarts are for kind: persistent (a command ASR runs once per file)")
                            }
                            if let problem = EvalPayload.asrProblem(kind: kind, command: asrCommand) { throw fail("eval.asr.command", v, problem) }
                        }
                    default: throw fail("eval.\(k)", kNode, "unknown key; eval takes manifests, num_samples, synthesizer, asr and shards")
                    }
                }
                guard !manifests.isEmpty else { throw fail("eval.manifests", n, "is required: the test manifests (path.jsonl::ko)") }
                guard nodes["eval_every"] != nil else { throw fail("eval_every", n, "eval: needs eval_every (the checkpoint steps to evaluate)") }
                evaluation = EvalPlan(manifests: manifests, numSamples: samples, synthesizer: synthesizer, shards: shards, asrCommand: asrCommand,
                                      asr: asrKind, asrTimeoutSeconds: asrTimeout, asrStartupTimeoutSeconds: asrStartupTimeout, asrMaxRestarts: asrMaxRestarts)
            }

            let spec = JobSpec(
                name: name, project: project, kind: kind, runner: runner, command: command,
                workdir: try nodes["workdir"].map { n throws(JobSpecError) in try nonEmpty(n, "workdir") },
                environment: environment,
                trainManifests: try (nodes["train_manifests"].map { n throws(JobSpecError) in try stringList(n, "train_manifests") } ?? []).map(ManifestSpec.init(parsing:)),
                valManifests: try (nodes["val_manifests"].map { n throws(JobSpecError) in try stringList(n, "val_manifests") } ?? []).map(ManifestSpec.init(parsing:)),
                hyperparameters: hyperparameters,
                checkpointEvery: try nodes["checkpoint_every"].map { n throws(JobSpecError) in try int(n, "checkpoint_every", minimum: 1) } ?? 1000,
                evalEvery: try nodes["eval_every"].map { n throws(JobSpecError) in try int(n, "eval_every", minimum: 1) },
                maxSteps: try nodes["max_steps"].map { n throws(JobSpecError) in try int(n, "max_steps", minimum: 1) },
                maxRetries: try nodes["max_retries"].map { n throws(JobSpecError) in try int(n, "max_retries", minimum: 0) } ?? 3,
                presets: presets, defaultBatch: defaultBatch, minimumBatchSize: minimumBatch, sweep: grid,
                group: try nodes["group"].map { n throws(JobSpecError) in try nonEmpty(n, "group") },
                outputDir: try nodes["output_dir"].map { n throws(JobSpecError) in try directory(n, "output_dir") },
                logDir: try nodes["log_dir"].map { n throws(JobSpecError) in try directory(n, "log_dir") }, model: model,
                evaluation: evaluation,
                python: try nodes["python"].map { n throws(JobSpecError) in try nonEmpty(n, "python") },
                resume: try nodes["resume"].map { n throws(JobSpecError) in try resumePolicy(n) } ?? .full,
                stopGrace: try nodes["stop_grace"].map { n throws(JobSpecError) in try duration(n, "stop_grace") } ?? .seconds(1200),
                retention: try nodes["keep"].map { n throws(JobSpecError) in try retention(n) },
                sameEffectiveBatch: sameEffectiveBatch, world: world,
                alerts: try nodes["alerts"].map { n throws(JobSpecError) in try alertSettings(n) })
            let names = spec.runs().map(\.name)
            if Set(names).count != names.count, let n = nodes["sweep"] {
                throw fail("sweep.grid", n, "two combinations get the same run name (values that differ only in spelling, like 1000 and 1_000); make them distinct")
            }
            for p in presets where p.batch.batchSize < minimumBatch {
                throw fail("presets.\(p.name).batch_size", nodes["presets"], "\(p.batch.batchSize) is below min_batch_size \(minimumBatch)")
            }
            return spec
        }
    }
}
