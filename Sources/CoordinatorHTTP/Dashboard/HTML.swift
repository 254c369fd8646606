import ClusterAdmin
import Foundation

/// Small helpers for server-rendered HTML: escaping and number formats. Every value that comes
/// from the store passes through ``escape(_:)``.
enum HTML {
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    /// A URL path component.
    static func component(_ s: String) -> String {
        s.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? s
    }

    static func number(_ d: Double?, digits: Int = 4) -> String {
        guard let d else { return "–" }
        if d.isNaN { return "NaN" }
        if d.isInfinite { return d > 0 ? "+Inf" : "−Inf" }
        if d != 0, abs(d) < 1e-3 || abs(d) >= 1e6 { return String(format: "%.\(max(1, digits - 1))e", d) }
        return String(format: "%.\(digits)g", d)
    }

    static func percent(_ d: Double?) -> String {
        guard let d, d.isFinite else { return "–" }
        return String(format: "%.1f %%", d * 100)
    }

    static func duration(_ seconds: Double?) -> String {
        guard let s = seconds, s.isFinite, s >= 0 else { return "–" }
        if s < 90 { return "\(Int(s)) s" }
        if s < 5_400 { return "\(Int(s / 60)) min" }
        if s < 172_800 { return String(format: "%.1f h", s / 3_600) }
        return String(format: "%.1f d", s / 86_400)
    }

    static func bytes(_ b: UInt64) -> String {
        let gib = Double(b) / Double(1 << 30)
        return gib >= 1 ? String(format: "%.1f GiB", gib) : String(format: "%.0f MiB", Double(b) / Double(1 << 20))
    }

    static func ago(_ date: Date?) -> String {
        guard let date else { return "–" }
        return duration(Date().timeIntervalSince(date)) + " ago"
    }

    /// A state as a coloured badge.
    static func badge(_ state: String) -> String {
        "<span class=\"badge s-\(escape(state))\">\(escape(state))</span>"
    }

    /// The badge of a state of an admin answer (its name, as ``badge(_:)-(String)`` shows it).
    static func badge<S: AdminStateName>(_ state: S) -> String { badge(state.rawValue) }

    /// The page around `body`: one inline stylesheet and one inline script (no CDN, works offline).
    /// The script re-fetches the page every `refreshSeconds` and swaps `<main>` in place, unless
    /// an audio player is playing; without JavaScript the page still renders (refresh by hand).
    static func page(title: String, body: String, refreshSeconds: Int = 5) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>\(escape(title)) · tts-cluster</title>
        <style>\(stylesheet)</style></head>
        <body><header><a href="/" class="brand">tts-cluster</a> <span class="muted">\(escape(title))</span>
        <span class="right muted" id="updated">live · every \(refreshSeconds) s</span></header>
        <main id="main">\(body)</main>
        <script>
        (function(){
          var every = \(refreshSeconds * 1000);
          function playing(){ var a = document.querySelectorAll('audio'); for (var i = 0; i < a.length; i++) { if (!a[i].paused) return true; } return false; }
          function tick(){
            if (document.hidden || playing()) { return setTimeout(tick, every); }
            fetch(location.href, {headers: {'Accept': 'text/html'}}).then(function(r){ return r.text(); }).then(function(t){
              var d = new DOMParser().parseFromString(t, 'text/html'); var m = d.getElementById('main');
              if (m) { document.getElementById('main').innerHTML = m.innerHTML; document.getElementById('updated').textContent = 'live · updated ' + new Date().toLocaleTimeString(); }
            }).catch(function(){ document.getElementById('updated').textContent = 'coordinator unreachable, retrying'; }).finally(function(){ setTimeout(tick, every); });
          }
          setTimeout(tick, every);
        })();
        </script></body></html>
        """
    }

    static let stylesheet = """
    :root{--fg:#1d232a;--muted:#6b7785;--line:#dde3ea;--bg:#f7f9fb;--card:#fff;--ok:#1f8a4c;--bad:#c0392b;--warn:#b7791f;--run:#2563eb}
    *{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"Noto Sans KR",sans-serif;color:var(--fg);background:var(--bg)}
    header{padding:10px 20px;background:#101820;color:#fff;display:flex;gap:12px;align-items:baseline}header .muted{color:#aab4bf}
    .brand{color:#fff;font-weight:700;text-decoration:none}.right{margin-left:auto}
    main{padding:16px 20px;max-width:1400px;margin:0 auto}
    h2{font-size:16px;margin:22px 0 8px}h1{font-size:20px;margin:6px 0 12px}
    table{border-collapse:collapse;width:100%;background:var(--card);border:1px solid var(--line)}
    th,td{padding:6px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}th{background:#eef2f6;font-weight:600;font-size:13px}
    td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
    .muted{color:var(--muted)}.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;background:#e6ebf0}
    .s-live,.s-succeeded,.s-resolved{background:#dff3e6;color:var(--ok)}.s-lost,.s-failed,.s-firing{background:#fbe3e0;color:var(--bad)}
    .s-running,.s-leased{background:#e0eafc;color:var(--run)}.s-queued,.s-waiting,.s-notice{background:#fdf1dc;color:var(--warn)}
    .charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:12px}
    .chart{background:var(--card);border:1px solid var(--line);padding:8px}.chart h3{font-size:13px;margin:0 0 4px}
    svg text{font-size:11px;fill:#4a5560}.kv{display:grid;grid-template-columns:max-content 1fr;gap:2px 14px;background:var(--card);border:1px solid var(--line);padding:10px}
    a{color:#1f5fbf}code{font-size:12px}audio{height:28px;max-width:260px}
    """
}
