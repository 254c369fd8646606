import Foundation
import Testing
@testable import Shared
@testable import Worker

@Suite("Metric spool")
struct MetricSpoolTests {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-spool-\(UUID().uuidString.prefix(8))").path

    func points(_ step: Int64, _ n: Int = 3) -> [MetricPoint] {
        (0..<n).map { MetricPoint(runId: "r", step: step, key: "k\($0)", value: Double(step) + Double($0), wallTime: 1) }
    }

    @Test("appends get increasing sequences; only flushed entries are offered for sending")
    func appendFlushSend() throws {
        let spool = try MetricSpool(directory: dir)
        #expect(spool.append(points: points(0)) == 1)
        #expect(spool.append(points: points(1)) == 2)
        #expect(try spool.entries(after: 0).isEmpty, "nothing is durable before a flush")
        #expect(try spool.flush() == 2)
        let sent = try spool.entries(after: 0)
        #expect(sent.map(\.sequence) == [1, 2])
        #expect(sent[1].points == points(1))
        #expect(try spool.entries(after: 1).map(\.sequence) == [2])
    }

    @Test("a restarted spool re-offers everything not acknowledged, and continues the sequence")
    func restart() throws {
        do {
            let spool = try MetricSpool(directory: dir)
            for s in 0..<10 { spool.append(points: points(Int64(s))) }
            try spool.flush()
            try spool.acknowledge(upTo: 4)
            spool.append(points: points(99)) // never flushed: lost with the process, as documented
        }
        let again = try MetricSpool(directory: dir)
        #expect(again.ackedSequence == 4)
        #expect(try again.entries(after: again.ackedSequence).map(\.sequence) == Array(5...10))
        #expect(again.append(points: points(10)) == 11)
    }

    @Test("a torn tail (crash mid-write) is cut off and the rest is kept")
    func tornTail() throws {
        do {
            let spool = try MetricSpool(directory: dir)
            for s in 0..<5 { spool.append(points: points(Int64(s))) }
            try spool.flush()
        }
        let file = try #require(try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasPrefix("spool-") })
        let handle = try #require(FileHandle(forWritingAtPath: dir + "/" + file))
        handle.seekToEndOfFile()
        handle.write(Data([42, 0, 0, 0, 1, 2, 3, 4, 9, 9])) // a record header promising 42 bytes, then EOF
        handle.closeFile()
        let spool = try MetricSpool(directory: dir)
        #expect(try spool.entries(after: 0).map(\.sequence) == [1, 2, 3, 4, 5])
        #expect(spool.append(points: points(5)) == 6)
        try spool.flush()
        #expect(try spool.entries(after: 0).count == 6, "new records follow the good ones")
    }

    @Test("a corrupt record stops the read at the last good one")
    func corrupt() throws {
        do {
            let spool = try MetricSpool(directory: dir)
            for s in 0..<3 { spool.append(points: points(Int64(s))) }
            try spool.flush()
        }
        let file = dir + "/" + (try FileManager.default.contentsOfDirectory(atPath: dir).first { $0.hasPrefix("spool-") })!
        var bytes = [UInt8](FileManager.default.contents(atPath: file)!)
        bytes[bytes.count - 2] ^= 0xFF // flip a byte inside the last record
        try Data(bytes).write(to: URL(fileURLWithPath: file))
        let spool = try MetricSpool(directory: dir)
        #expect(try spool.entries(after: 0).map(\.sequence) == [1, 2])
    }

    @Test("acknowledged segments are deleted; the spool rolls segments at its size limit")
    func trimming() throws {
        let spool = try MetricSpool(directory: dir, segmentLimit: 512)
        for s in 0..<40 {
            spool.append(points: points(Int64(s)))
            try spool.flush()
        }
        let before = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("spool-") }.count
        #expect(before > 2)
        try spool.acknowledge(upTo: 40)
        let after = try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.hasPrefix("spool-") }.count
        #expect(after == 1)
        #expect(spool.backlog == 0)
        #expect(try spool.entries(after: spool.ackedSequence, maxPoints: 1_000_000).isEmpty)
    }

    @Test("batches for sending respect the point budget but always carry at least one entry")
    func batching() throws {
        let spool = try MetricSpool(directory: dir)
        for s in 0..<10 { spool.append(points: points(Int64(s), 100)) }
        try spool.flush()
        #expect(try spool.entries(after: 0, maxPoints: 250).count == 2)
        #expect(try spool.entries(after: 0, maxPoints: 1).count == 1)
    }

    @Test("a backlog larger than the read window is read in windows, in order, with nothing skipped")
    func windows() throws {
        let spool = try MetricSpool(directory: dir)
        for s in 0..<3_000 { spool.append(points: points(Int64(s), 20)) }   // several MiB
        spool.append(points: points(3_000, 60_000))                           // one record larger than the window
        spool.append(points: points(3_001, 1))
        try spool.flush()
        var seen: [UInt64] = []
        var after: UInt64 = 0
        for _ in 0..<10_000 {
            let batch = try spool.entries(after: after, maxPoints: 5_000)
            guard let last = batch.last else { break }
            seen += batch.map(\.sequence)
            after = last.sequence
        }
        #expect(seen == Array(1...3_002))
        #expect(try spool.entries(after: 0, maxPoints: 10_000_000).count == 3_002, "a fresh read from the start sees everything")
    }

    @Test("NaN survives the spool bit for bit")
    func nan() throws {
        let spool = try MetricSpool(directory: dir)
        spool.append(points: [MetricPoint(runId: "r", step: 1, key: "train/text_loss", value: .nan, wallTime: 0)])
        try spool.flush()
        #expect(try spool.entries(after: 0).first?.points.first?.value.isNaN == true)
    }

    @Test("an unusable directory is reported by path")
    func badDirectory() {
        #expect(throws: SpoolError.self) { try MetricSpool(directory: "/proc/nope/spool") }
    }
}

@Suite("Metric spool numbering against the coordinator's mark")
struct MetricSpoolFastForwardTests {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("tts-spool-ff-\(UUID().uuidString.prefix(8))").path

    @Test("an empty spool (its directory was lost) numbers new entries after the coordinator's mark, durably")
    func freshSpool() throws {
        let spool = try MetricSpool(directory: dir)
        #expect(try spool.fastForward(past: 500))
        #expect(spool.append(points: []) == 501)
        try spool.flush()
        #expect(try spool.entries(after: spool.ackedSequence).map(\.sequence) == [501])
        let again = try MetricSpool(directory: dir)
        #expect(again.ackedSequence == 500)
        #expect(again.append(points: []) == 502)
    }

    @Test("a spool already past the mark is left alone")
    func ahead() throws {
        let spool = try MetricSpool(directory: dir)
        for _ in 0..<5 { spool.append(points: []) }
        try spool.flush()
        #expect(try spool.fastForward(past: 3))
        #expect(spool.append(points: []) == 6)
    }

    @Test("unacknowledged entries at or below the mark are reported as a conflict, not renumbered")
    func conflict() throws {
        let spool = try MetricSpool(directory: dir)
        for _ in 0..<5 { spool.append(points: []) }
        try spool.flush()
        #expect(try !spool.fastForward(past: 100))
        #expect(spool.lastAppendedSequence == 5)
    }
}
