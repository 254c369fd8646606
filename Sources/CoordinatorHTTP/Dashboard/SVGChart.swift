import Foundation
import Shared

/// A line chart of one metric series as inline SVG: axes with the value range and the step
/// range, the line through the finite points, and a red tick at the top for every NaN or ±Inf
/// (a non-finite loss must be seen, not skipped).
struct SVGChart {
    var title: String
    var points: [MetricPoint]
    var width = 440.0
    var height = 180.0
    /// Plots as a percentage (CER).
    var percent = false

    var svg: String {
        let left = 58.0, right = 10.0, top = 10.0, bottom = 24.0
        let w = width - left - right, h = height - top - bottom
        let finite = points.filter { $0.value.isFinite }
        var out = "<svg class=\"chart-svg\" role=\"img\" aria-label=\"\(HTML.escape(title))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">"
        out += "<rect x=\"\(left)\" y=\"\(top)\" width=\"\(w)\" height=\"\(h)\" fill=\"#fbfcfd\" stroke=\"#dde3ea\"/>"
        guard let firstStep = points.first?.step, let lastStep = points.last?.step else {
            return out + "<text x=\"\(left + 8)\" y=\"\(top + h / 2)\">no points yet</text></svg>"
        }
        var lo = finite.map(\.value).min() ?? 0, hi = finite.map(\.value).max() ?? 1
        if lo == hi { lo -= 0.5 * max(abs(lo), 1e-9); hi += 0.5 * max(abs(hi), 1e-9) }
        let s0 = Double(firstStep), s1 = Double(max(lastStep, firstStep + 1))
        func x(_ step: Int64) -> Double { left + (Double(step) - s0) / (s1 - s0) * w }
        func y(_ v: Double) -> Double { top + (1 - (v - lo) / (hi - lo)) * h }
        func label(_ v: Double) -> String { percent ? HTML.percent(v) : HTML.number(v, digits: 3) }
        // Grid and labels: min, middle, max.
        for v in [lo, (lo + hi) / 2, hi] {
            let yy = y(v)
            out += "<line x1=\"\(left)\" x2=\"\(left + w)\" y1=\"\(fmt(yy))\" y2=\"\(fmt(yy))\" stroke=\"#eef2f6\"/>"
            out += "<text x=\"\(left - 4)\" y=\"\(fmt(yy + 4))\" text-anchor=\"end\">\(HTML.escape(label(v)))</text>"
        }
        out += "<text x=\"\(left)\" y=\"\(height - 6)\">\(firstStep)</text>"
        out += "<text x=\"\(left + w)\" y=\"\(height - 6)\" text-anchor=\"end\">step \(lastStep)</text>"
        // The line, broken at non-finite points.
        var segments: [[String]] = [[]]
        for p in points {
            if p.value.isFinite { segments[segments.count - 1].append("\(fmt(x(p.step))),\(fmt(y(p.value)))") } else { segments.append([]) }
        }
        for seg in segments where !seg.isEmpty {
            if seg.count == 1 {
                let xy = seg[0].split(separator: ",")
                out += "<circle cx=\"\(xy[0])\" cy=\"\(xy[1])\" r=\"2.5\" fill=\"#2563eb\"/>"
            } else {
                out += "<polyline class=\"series\" fill=\"none\" stroke=\"#2563eb\" stroke-width=\"1.6\" points=\"\(seg.joined(separator: " "))\"/>"
            }
        }
        for p in points where !p.value.isFinite {
            out += "<line class=\"nonfinite\" x1=\"\(fmt(x(p.step)))\" x2=\"\(fmt(x(p.step)))\" y1=\"\(top)\" y2=\"\(top + 10)\" stroke=\"#c0392b\" stroke-width=\"2\"><title>step \(p.step): \(HTML.number(p.value))</title></line>"
        }
        if let last = points.last {
            out += "<text x=\"\(left + w - 4)\" y=\"\(top + 14)\" text-anchor=\"end\">last \(HTML.escape(label(last.value)))</text>"
        }
        return out + "</svg>"
    }

    private func fmt(_ d: Double) -> String { String(format: "%.1f", d) }

    /// The chart with its heading, as a dashboard card.
    var card: String {
        "<div class=\"chart\"><h3>\(HTML.escape(title)) <span class=\"muted\">(\(points.count) points)</span></h3>\(svg)</div>"
    }
}
