import ClusterAdmin
import Coordinator
import Foundation
import Hummingbird
import Shared

/// The web dashboard: server-rendered HTML from the store, no external service, no CDN.
/// `/` shows workers, runs, evaluations, alerts and silences; `/runs/{id}` a run's curves as SVG,
/// its evaluations with audio players, its alerts and its last log lines.
struct DashboardRoutes: Sendable {
    let server: CoordinatorServer
    /// W&B links: the app's base URL for online runs (nil: offline or off).
    let wandbBase: String?

    var store: Store { server.store }

    func register(on router: Router<BasicRequestContext>) {
        router.get("/") { _, _ in Self.html(try self.overview()) }
        router.get("runs/:id") { request, context in
            let id = try context.parameters.require("id")
            guard let run = try RunSummaries.list(self.store, limit: 100_000).first(where: { $0.id == id || $0.name == id }) else {
                throw APIError.notFound("no run \(id)")
            }
            return Self.html(try self.runPage(run, query: request.uri.queryParameters))
        }
        router.get("evals/:id/audio/:utterance") { _, context in try self.audio(context) }
    }

    static func html(_ text: String) -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/html; charset=utf-8"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
    }

    // MARK: pages

    func overview() throws -> String {
        let workers = try store.workers(), runs = try RunSummaries.list(store), evals = try store.evals(limit: 20)
        let alerts = try store.alerts(limit: 20), silences = try store.silences()
        let counts = try store.counts()
        let backlog = try store.outboxBacklog(wandb: server.configuration.wandbMode != .disabled)
        var b = "<h1>Cluster</h1><p class=\"muted\">\(counts.workers[WorkerSummary.State.live.rawValue] ?? 0) live worker(s) · "
        b += counts.shards.sorted { $0.key < $1.key }.map { "\($0.value) \(HTML.escape($0.key))" }.joined(separator: " · ")
        b += " shard(s) · outbox: " + backlog.map { "\($0.sink) \($0.depth) waiting" + ($0.depth > 0 ? " (oldest \(HTML.duration($0.oldestAgeSeconds)))" : "") }.joined(separator: ", ")
        b += "</p>"

        b += "<h2>Workers</h2><table id=\"workers\"><tr><th>name</th><th>host</th><th>GPU</th><th>memory</th><th>utilization</th><th>state</th><th>shard</th><th>progress</th><th>seen</th></tr>"
        for w in workers {
            let util = w.telemetry.map { String(format: "%.0f %%", $0.utilization) } ?? "–"
            let mem = w.telemetry.map { "\(HTML.bytes($0.memoryUsedBytes)) / \(HTML.bytes($0.memoryTotalBytes))" } ?? HTML.bytes(w.device.memoryBytes)
            let progress = w.progress.map { p in "\(p.step)/\(p.totalSteps)" + (p.stepsPerSecond > 0 ? String(format: " · %.2f steps/s", p.stepsPerSecond) : "") } ?? ""
            b += "<tr class=\"worker\"><td>\(HTML.escape(w.name))</td><td>\(HTML.escape(w.host))</td><td>\(HTML.escape(w.device.name))</td><td class=\"num\">\(mem)</td>"
            b += "<td class=\"num\">\(util)</td><td>\(HTML.badge(w.state))</td><td>\(w.currentShard.map { "#\($0)" } ?? "")</td><td>\(progress)</td><td class=\"muted\">\(HTML.ago(w.lastSeen))</td></tr>"
        }
        if workers.isEmpty { b += "<tr><td colspan=\"9\" class=\"muted\">no worker has registered yet: start one with <code>tts-worker join --coordinator … --gpu 0</code></td></tr>" }
        b += "</table>"

        b += "<h2>Runs</h2>" + runTable(runs)

        b += "<h2>Evaluations</h2><table id=\"evals\"><tr><th>eval</th><th>run</th><th>step</th><th>state</th><th>utterances</th><th>CER (corpus)</th><th>CER (utterance mean)</th><th>WER</th><th>ASR floor CER</th><th>message</th></tr>"
        for e in evals {
            b += "<tr><td>\(e.id)</td><td>\(e.runId.map { "<a href=\"/runs/\(HTML.component($0))\">\(HTML.escape($0))</a>" } ?? "–")</td><td class=\"num\">\(e.step.map(String.init) ?? "–")</td>"
            b += "<td>\(HTML.badge(e.state))</td><td class=\"num\">\(e.utterances)</td><td class=\"num\">\(HTML.percent(e.cer))</td><td class=\"num\">\(HTML.percent(e.cerUtteranceMean))</td>"
            b += "<td class=\"num\">\(HTML.percent(e.wer))</td><td class=\"num\">\(HTML.percent(e.floorCer))</td><td class=\"muted\">\(e.note.map { "<strong>\(HTML.escape($0))</strong> · " } ?? "")\(HTML.escape(e.message))</td></tr>"
        }
        if evals.isEmpty { b += "<tr><td colspan=\"10\" class=\"muted\">none yet</td></tr>" }
        b += "</table>"
        b += "<h2>Alerts</h2>" + alertTable(alerts)
        b += "<h2>Silences</h2><table id=\"silences\"><tr><th>id</th><th>run</th><th>rule</th><th>comment</th><th>expires</th></tr>"
        for s in silences {
            b += "<tr><td>\(s.id)</td><td>\(HTML.escape(s.runId))</td><td>\(HTML.escape(s.rule ?? "all rules"))</td><td>\(HTML.escape(s.comment))</td><td class=\"muted\">in \(HTML.duration(s.expiresAt.timeIntervalSinceNow))</td></tr>"
        }
        if silences.isEmpty { b += "<tr><td colspan=\"5\" class=\"muted\">none active</td></tr>" }
        b += "</table>"
        return HTML.page(title: "overview", body: b)
    }

    func runTable(_ runs: [RunSummary]) -> String {
        var b = "<table id=\"runs\"><tr><th>run</th><th>name</th><th>state</th><th>worker</th><th>preset</th><th>step</th><th>text_loss</th><th>mel_loss</th><th>steps/s</th><th>ETA</th><th>W&amp;B</th><th>note</th></tr>"
        for r in runs {
            let steps = r.step.map { s in r.maxSteps.map { "\(s)/\($0)" } ?? "\(s)" } ?? "–"
            let preset = r.preset.map { p in "\(HTML.escape(p))" + (r.batchSize.map { " \($0)×\(r.gradAccum ?? 1)" } ?? "") } ?? "–"
            b += "<tr class=\"run\" data-run=\"\(HTML.escape(r.id))\"><td><a href=\"/runs/\(HTML.component(r.id))\">\(HTML.escape(r.id))</a></td><td>\(HTML.escape(r.name))</td><td>\(HTML.badge(r.state))</td>"
            b += "<td>\(HTML.escape(r.worker ?? "–"))</td><td>\(preset)</td><td class=\"num\">\(steps)</td>"
            b += "<td class=\"num\">\(HTML.number(Self.loss(r, "text_loss")))</td><td class=\"num\">\(HTML.number(Self.loss(r, "mel_loss")))</td>"
            b += "<td class=\"num\">\(r.stepsPerSecond.map { String(format: "%.2f", $0) } ?? "–")</td><td class=\"num\">\(HTML.duration(r.etaSeconds))</td>"
            b += "<td>\(wandbLink(r))</td><td class=\"muted\">\(HTML.escape(r.waitReason ?? ""))</td></tr>"
        }
        if runs.isEmpty { b += "<tr><td colspan=\"12\" class=\"muted\">no run yet: <code>tts-coordinator submit job.yaml</code></td></tr>" }
        return b + "</table>"
    }

    static func loss(_ r: RunSummary, _ name: String) -> Double? {
        r.losses["train/\(name)"] ?? r.losses[name] ?? r.losses.first { $0.key.hasSuffix(name) }?.value
    }

    func wandbLink(_ r: RunSummary) -> String {
        guard let state = try? store.wandbState(runId: r.id) else { return "<span class=\"muted\">–</span>" }
        if let base = wandbBase, let e = state.entity, let p = state.project {
            let url = "\(base)/\(HTML.component(e))/\(HTML.component(p))/runs/\(HTML.component(r.id))"
            return "<a href=\"\(HTML.escape(url))\">\(HTML.escape(r.id))</a>"
        }
        if let dir = state.offlineDirectory { return "<span class=\"muted\" title=\"\(HTML.escape(dir))\">offline</span>" }
        return "<span class=\"muted\">\(HTML.escape(state.mode))</span>"
    }

    func alertTable(_ alerts: [AlertSummary]) -> String {
        var b = "<table id=\"alerts\"><tr><th>id</th><th>run</th><th>rule</th><th>severity</th><th>state</th><th>summary</th><th>started</th></tr>"
        for a in alerts {
            b += "<tr class=\"alert\"><td>\(a.id)</td><td>\(HTML.escape(a.runId ?? "–"))</td><td>\(HTML.escape(a.rule))</td><td>\(HTML.escape(a.severity))</td>"
            b += "<td>\(HTML.badge(a.state))\(a.silenced ? " <span class=\"muted\">silenced</span>" : "")</td><td>\(HTML.escape(a.summary))</td><td class=\"muted\">\(HTML.ago(a.startedAt))</td></tr>"
        }
        if alerts.isEmpty { b += "<tr><td colspan=\"7\" class=\"muted\">none</td></tr>" }
        return b + "</table>"
    }

    /// The keys drawn on a run page, in this order, when the run has them.
    static let chartKeys = ["train/text_loss", "train/mel_loss", "train/mel_top1", "train/loss", "train/lr",
                            "val/text_loss", "val/mel_loss", "val/mel_top1", "val/loss", "eval/cer", "eval/wer", "eval/asr_floor_cer",
                            "eval/sim", "eval/sim_floor", "eval/mcd", "eval/mcd_codec_floor"]

    func runPage(_ r: RunSummary, query: Parameters = Parameters()) throws -> String {
        var b = "<h1>Run \(HTML.escape(r.name)) <span class=\"muted\">\(HTML.escape(r.id))</span> \(HTML.badge(r.state))</h1>"
        b += "<div class=\"kv\">"
        let rows: [(String, String)] = [
            ("project / group", HTML.escape(r.project + (r.group.map { " / \($0)" } ?? ""))),
            ("worker", HTML.escape(r.worker ?? "–")),
            ("preset", HTML.escape(r.preset ?? "–") + (r.batchSize.map { " (micro-batch \($0) × accumulation \(r.gradAccum ?? 1))" } ?? "")),
            ("step", r.step.map { s in r.maxSteps.map { "\(s) of \($0)" } ?? "\(s)" } ?? "–"),
            ("steps/s · ETA", "\(r.stepsPerSecond.map { String(format: "%.2f", $0) } ?? "–") · \(HTML.duration(r.etaSeconds))"),
            ("latest", r.losses.sorted { $0.key < $1.key }.map { "\(HTML.escape($0.key)) \(HTML.number($0.value))" }.joined(separator: " · ")),
            ("checkpoint", HTML.escape(r.checkpoint.map { "\($0) (step \(r.checkpointStep ?? 0))" } ?? "–")),
            ("W&B", wandbLink(r)),
            ("note", HTML.escape(r.waitReason ?? "")),
        ]
        for (k, v) in rows { b += "<div class=\"muted\">\(k)</div><div>\(v)</div>" }
        b += "</div>"
        let counts = try store.pointCounts(runId: r.id)
        let keys = Self.chartKeys.filter { counts[$0] != nil }
        b += "<h2>Curves</h2><div class=\"charts\">"
        for key in keys {
            let series = try store.metricCurve(runId: r.id, key: key, limit: 400)
            b += SVGChart(title: key, points: series, percent: key.hasPrefix("eval/") && !["eval/sim", "eval/sim_floor", "eval/mcd", "eval/mcd_codec_floor"].contains(key)).card
        }
        if keys.isEmpty { b += "<p class=\"muted\">no metrics yet</p>" }
        b += "</div>"
        let evals = try store.evals(limit: 100_000).filter { $0.runId == r.id }.sorted { ($0.step ?? 0) < ($1.step ?? 0) }
        b += "<h2>Evaluations</h2>"
        if evals.isEmpty { b += "<p class=\"muted\">none yet</p>" } else {
            b += comparisonSection(r, evals: evals, by: query["by"].map(String.init) ?? "eval/cer")
            b += listeningSection(r, evals: evals, a: query["a"].flatMap { Int64(String($0)) }, b: query["b"].flatMap { Int64(String($0)) })
        }
        for e in evals.reversed().prefix(5) { b += evalSection(e) }
        b += "<h2>Alerts</h2>" + alertTable(try store.alerts(limit: 200).filter { $0.runId == r.id })
        let logs = try RunLogFormatter.logs(store, LogsRequest(run: r.id, after: 0, limit: 40, tail: 40))
        b += "<h2>Last log lines</h2><table id=\"logs\"><tr><th>stream</th><th>line</th></tr>"
        for l in logs.lines { b += "<tr><td class=\"muted\">\(HTML.escape(l.stream))</td><td><code>\(HTML.escape(l.text))</code></td></tr>" }
        b += "</table>"
        return HTML.page(title: "run \(r.name)", body: b)
    }

    /// Every evaluated checkpoint of the run side by side, the best by `by` marked (links switch
    /// the measure): ``CheckpointComparison``, the measure retention's `keep: {best: K, by: …}` uses.
    func comparisonSection(_ r: RunSummary, evals: [EvalSummary], by: String) -> String {
        let comparison: CheckpointComparison
        do { comparison = try CheckpointComparison(evals: evals, runId: r.id, by: by) } catch {
            return "<p class=\"note\">\(HTML.escape("\(error)"))</p>"
        }
        var b = "<h3>Checkpoints compared</h3><p class=\"muted\">best by "
        b += CheckpointComparison.measures.map { m in
            m == by ? "<strong>\(HTML.escape(m))</strong>" : "<a href=\"/runs/\(HTML.component(r.id))?by=\(HTML.component(m))\">\(HTML.escape(m))</a>"
        }.joined(separator: " · ")
        b += " (\(comparison.higherIsBetter ? "higher" : "lower") is better)</p>"
        b += "<table id=\"compare\"><tr><th></th><th>step</th><th>eval</th><th>state</th><th>CER</th><th>WER</th><th>SIM</th><th>MCD (dB)</th><th>ASR floor CER</th><th>SIM floor</th><th>note</th></tr>"
        for row in comparison.rows {
            let e = row.eval
            b += "<tr\(row.isBest ? " class=\"best\"" : "")><td>\(row.isBest ? "★ best" : "")</td><td class=\"num\">\(e.step.map(String.init) ?? "–")</td><td>\(e.id)</td><td>\(HTML.badge(e.state))</td>"
            b += "<td class=\"num\">\(HTML.percent(e.cer))</td><td class=\"num\">\(HTML.percent(e.wer))</td><td class=\"num\">\(HTML.number(e.sim))</td>"
            b += "<td class=\"num\">\(HTML.number(e.mcd))</td><td class=\"num\">\(HTML.percent(e.floorCer))</td><td class=\"num\">\(HTML.number(e.simFloor))</td>"
            b += "<td class=\"muted\">\(HTML.escape(e.note ?? ""))</td></tr>"
        }
        return b + "</table>"
    }

    /// The same utterances from two checkpoints next to each other (`?a=EVAL&b=EVAL`; by default
    /// the run's first and last evaluations that have audio).
    func listeningSection(_ r: RunSummary, evals: [EvalSummary], a: Int64?, b bId: Int64?) -> String {
        let withAudio = evals.filter { Self.reportUtterances($0) != nil }
        guard withAudio.count >= 2 else { return "" }
        let left = withAudio.first { $0.id == a } ?? withAudio.first!
        let right = withAudio.first { $0.id == bId } ?? withAudio.last!
        var b = "<h3>Listen side by side</h3><form method=\"get\" action=\"/runs/\(HTML.component(r.id))\">"
        for (name, chosen) in [("a", left), ("b", right)] {
            b += "<label>\(name == "a" ? "left" : "right") <select name=\"\(name)\">"
            for e in withAudio {
                b += "<option value=\"\(e.id)\"\(e.id == chosen.id ? " selected" : "")>step \(e.step.map(String.init) ?? "–") (eval \(e.id))</option>"
            }
            b += "</select></label> "
        }
        b += "<button>compare</button></form>"
        let l = Self.reportUtterances(left) ?? [], rr = Self.reportUtterances(right) ?? []
        let rightById = Dictionary(rr.compactMap { u in u["id"]?.stringValue.map { ($0, u) } }, uniquingKeysWith: { x, _ in x })
        b += "<table id=\"listen\"><tr><th>utterance</th><th>reference</th><th>step \(left.step.map(String.init) ?? "–")</th><th>step \(right.step.map(String.init) ?? "–")</th></tr>"
        for u in l.prefix(20) {
            guard let id = u["id"]?.stringValue, let v = rightById[id] else { continue }
            func side(_ e: EvalSummary, _ x: [String: JSONValue]) -> String {
                let player = x["audio_path"]?.stringValue != nil && x["error"]?.stringValue == nil
                    ? "<audio controls preload=\"none\" src=\"/evals/\(e.id)/audio/\(HTML.component(id))\"></audio>" : "<span class=\"muted\">\(HTML.escape(x["error"]?.stringValue ?? "no audio"))</span>"
                return "\(player)<br><span class=\"muted\">\(HTML.escape(x["hypothesis"]?.stringValue ?? "")) · CER \(HTML.percent(x["cer"]?.doubleValue))</span>"
            }
            b += "<tr><td>\(HTML.escape(id))</td><td>\(HTML.escape(u["reference"]?.stringValue ?? ""))</td><td>\(side(left, u))</td><td>\(side(right, v))</td></tr>"
        }
        return b + "</table>"
    }

    /// One evaluation: its figures and the utterance table with an audio player per sample.
    func evalSection(_ e: EvalSummary) -> String {
        var b = "<h3>Step \(e.step.map(String.init) ?? "–") · eval \(e.id) \(HTML.badge(e.state))</h3>"
        b += "<p>CER \(HTML.percent(e.cer)) (corpus) · \(HTML.percent(e.cerUtteranceMean)) (utterance mean) · WER \(HTML.percent(e.wer)) · ASR floor CER \(HTML.percent(e.floorCer)) · \(e.utterances) utterances</p>"
        if let note = e.note { b += "<p class=\"note\"><strong>\(HTML.escape(note)).</strong></p>" }
        guard let utterances = Self.reportUtterances(e) else { return b + "<p class=\"muted\">\(HTML.escape(e.message))</p>" }
        b += "<table class=\"eval-table\"><tr><th>id</th><th>CER</th><th>reference</th><th>hypothesis</th><th>audio</th><th>error</th></tr>"
        for u in utterances.prefix(50) {
            let id = u["id"]?.stringValue ?? "?"
            let audio = u["audio_path"]?.stringValue != nil
                ? "<audio controls preload=\"none\" src=\"/evals/\(e.id)/audio/\(HTML.component(id))\"></audio>" : "–"
            b += "<tr><td>\(HTML.escape(id))</td><td class=\"num\">\(HTML.percent(u["cer"]?.doubleValue))</td><td>\(HTML.escape(u["reference"]?.stringValue ?? ""))</td>"
            b += "<td>\(HTML.escape(u["hypothesis"]?.stringValue ?? ""))</td><td>\(audio)</td><td class=\"muted\">\(HTML.escape(u["error"]?.stringValue ?? ""))</td></tr>"
        }
        return b + "</table>"
    }

    static func reportUtterances(_ e: EvalSummary) -> [[String: JSONValue]]? {
        guard let data = FileManager.default.contents(atPath: e.outputDir + "/report.json"),
              case .object(let doc)? = try? JSONCoding.decode(JSONValue.self, from: Array(data)),
              case .array(let utts)? = doc["utterances"] else { return nil }
        return utts.compactMap { if case .object(let o) = $0 { o } else { nil } }
    }

    /// An evaluation's audio sample. Only files named by that evaluation's report are served
    /// (no path comes from the URL), and only audio files.
    func audio(_ context: BasicRequestContext) throws -> Response {
        let idText = try context.parameters.require("id"), utterance = try context.parameters.require("utterance")
        guard let id = Int64(idText), let e = try store.evals(limit: 100_000).first(where: { $0.id == id }) else {
            throw APIError.notFound("no evaluation \(idText)")
        }
        guard let u = Self.reportUtterances(e)?.first(where: { $0["id"]?.stringValue == utterance }), let path = u["audio_path"]?.stringValue else {
            throw APIError.notFound("evaluation \(id) has no audio for utterance \(utterance)")
        }
        let types = ["wav": "audio/wav", "flac": "audio/flac", "ogg": "audio/ogg", "mp3": "audio/mpeg"]
        guard let type = types[(path as NSString).pathExtension.lowercased()] else { throw APIError.notFound("\(utterance)'s audio is not a served audio type") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
              let data = FileManager.default.contents(atPath: path) else {
            throw APIError.notFound("the audio of \(utterance) is no longer on the coordinator's storage")
        }
        var headers = HTTPFields()
        headers[.contentType] = type
        return Response(status: .ok, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: data)))
    }
}
