import Foundation
import Shared
import Testing
@testable import Coordinator
@testable import CoordinatorHTTP

@Suite("Series downsampling")
struct SeriesDownsamplerTests {
    static func series(_ values: [Double]) -> [MetricPoint] {
        values.enumerated().map { MetricPoint(runId: "r", step: Int64($0.offset), key: "k", value: $0.element, wallTime: 0) }
    }

    @Test("a short series is returned as is")
    func shortSeriesUnchanged() {
        let s = Self.series([3, 2, 1])
        #expect(SeriesDownsampler.downsample(s, limit: 10) == s)
    }

    @Test("a long series keeps its first and last point, stays in step order, fits the limit, and keeps a one-step spike and a NaN")
    func keepsEndsSpikesAndNaN() {
        var values = (0..<10_000).map { 2.0 - Double($0) / 10_000 }
        values[4_321] = 50
        values[7_777] = .nan
        let out = SeriesDownsampler.downsample(Self.series(values), limit: 100)
        #expect(out.count <= 100)
        #expect(out.first?.step == 0 && out.last?.step == 9_999)
        #expect(out.map(\.step) == out.map(\.step).sorted())
        #expect(out.contains { $0.step == 4_321 && $0.value == 50 }, "the spike survives")
        #expect(out.contains { $0.step == 7_777 && $0.value.isNaN }, "the NaN survives")
    }
}

@Suite("Dashboard pieces")
struct DashboardPiecesTests {
    @Test("HTML escaping covers the five special characters")
    func escaping() {
        #expect(HTML.escape(#"<a href="x">&'</a>"#) == "&lt;a href=&quot;x&quot;&gt;&amp;&#39;&lt;/a&gt;")
    }

    @Test("a chart draws a polyline through finite points and a red tick per non-finite point, with the step range")
    func chart() {
        let points = [1.0, 0.8, .nan, 0.5, 0.4].enumerated().map { MetricPoint(runId: "r", step: Int64($0.offset * 10), key: "k", value: $0.element, wallTime: 0) }
        let svg = SVGChart(title: "train/<loss>", points: points).svg
        #expect(svg.hasPrefix("<svg") && svg.hasSuffix("</svg>"))
        #expect(svg.components(separatedBy: "<polyline").count - 1 == 2, "the line breaks at the NaN")
        #expect(svg.components(separatedBy: "class=\"nonfinite\"").count - 1 == 1)
        #expect(svg.contains("step 40") && svg.contains("train/&lt;loss&gt;"))
        #expect(SVGChart(title: "empty", points: []).svg.contains("no points yet"))
    }

    @Test("--http parses HOST:PORT and [v6]:PORT, and tells loopback from the network")
    func addresses() throws {
        #expect(try HTTPServerConfiguration.parse(address: "127.0.0.1:8080") == ("127.0.0.1", 8080))
        #expect(try HTTPServerConfiguration.parse(address: "[::1]:9000") == ("::1", 9000))
        #expect(throws: ConfigurationError.self) { try HTTPServerConfiguration.parse(address: "localhost:http") }
        #expect(HTTPServerConfiguration(host: "127.0.0.1").isLoopback && HTTPServerConfiguration(host: "::1").isLoopback)
        #expect(!HTTPServerConfiguration(host: "0.0.0.0").isLoopback && !HTTPServerConfiguration(host: "10.0.0.5").isLoopback)
    }

    @Test("the API bearer token is derived from the cluster token, differs from it, and is checked exactly")
    func bearer() {
        let t = ClusterToken("cluster-secret")
        #expect(t.apiBearer.count == 64 && t.apiBearer != "cluster-secret")
        #expect(t.acceptsBearer(t.apiBearer))
        #expect(!t.acceptsBearer("cluster-secret") && !t.acceptsBearer(String(t.apiBearer.dropLast())) && !t.acceptsBearer(""))
        #expect(ClusterToken("other").apiBearer != t.apiBearer)
    }
}
