import Foundation
import Shared

/// One scalar TensorBoard holds: `(tag, step, value, wall time)`.
public struct TensorBoardScalar: Sendable, Equatable {
    public var tag: String
    public var step: Int64
    /// NaN and ±Inf are carried.
    public var value: Double
    /// Seconds since the Unix epoch.
    public var wallTime: Double

    public init(tag: String, step: Int64, value: Double, wallTime: Double) {
        self.tag = tag
        self.step = step
        self.value = value
        self.wallTime = wallTime
    }

    /// The point for run `runId`; the tag becomes the key unchanged (`train/mel_loss`).
    public func metricPoint(runId: String) -> MetricPoint {
        MetricPoint(runId: runId, step: step, key: tag, value: value, wallTime: wallTime)
    }

    public static func == (a: TensorBoardScalar, b: TensorBoardScalar) -> Bool {
        a.tag == b.tag && a.step == b.step && a.value.bitPattern == b.value.bitPattern && a.wallTime == b.wallTime
    }
}

/// What one ``TensorBoardScalarReader/poll()`` found.
public struct TensorBoardPoll: Sendable, Equatable {
    /// New scalars, file by file (files in path order), each file in write order.
    public var scalars: [TensorBoardScalar] = []
    /// Corrupt records and undecodable events that were skipped, worded for a log line.
    public var warnings: [String] = []
    public init(scalars: [TensorBoardScalar] = [], warnings: [String] = []) {
        self.scalars = scalars
        self.warnings = warnings
    }
}

/// Tails every TensorBoard event file (`*tfevents*`) under a log directory, to any depth up to
/// ``maximumDepth`` (the trainer writes `<output>/logs/run_YYYYmmdd_HHMMSS/events.out.tfevents.…`),
/// and returns the scalars appended since the previous poll. Files that appear later are picked
/// up; each file keeps its own read position (see ``TFRecordReader`` for torn and corrupt records).
public struct TensorBoardScalarReader: Sendable {
    /// How deep below the log directory event files are looked for.
    public static let maximumDepth = 4

    /// The directory watched.
    public let directory: String
    private var readers: [String: TFRecordReader] = [:]

    public init(directory: String) { self.directory = directory }

    /// The read position of each event file seen so far (path → offset past its last complete record).
    public var offsets: [String: Int] { readers.mapValues(\.offset) }

    /// Reads what was appended to every event file since the last poll. A missing directory is an
    /// empty result (the trainer has not created it yet); an unreadable file is a warning.
    public mutating func poll() -> TensorBoardPoll {
        var result = TensorBoardPoll()
        for path in Self.eventFiles(under: directory) where readers[path] == nil {
            readers[path] = TFRecordReader(path: path)
        }
        for path in readers.keys.sorted() {
            guard var reader = readers[path] else { continue }
            defer { readers[path] = reader }
            let batch: TFRecordBatch
            do { batch = try reader.poll() } catch {
                result.warnings.append("TensorBoard: \(error)")
                continue
            }
            result.warnings += batch.warnings.map { "TensorBoard event file \($0)" }
            for record in batch.records {
                do {
                    let event = try TensorBoardEvent(decoding: record.data)
                    for s in event.scalars {
                        result.scalars.append(TensorBoardScalar(tag: s.tag, step: event.step, value: s.value, wallTime: event.wallTime))
                    }
                } catch {
                    result.warnings.append("TensorBoard event file \(path) at byte \(record.offset): \(error); skipped this event")
                }
            }
        }
        return result
    }

    /// Event files under `directory`, sorted by path.
    static func eventFiles(under directory: String) -> [String] {
        var found: [String] = []
        func walk(_ dir: String, depth: Int) {
            guard depth <= maximumDepth,
                  let names = try? FileManager.default.contentsOfDirectory(atPath: dir) else { return }
            for name in names.sorted() {
                let path = dir + "/" + name
                var isDir: ObjCBool = false
                guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else { continue }
                if isDir.boolValue {
                    walk(path, depth: depth + 1)
                } else if name.contains("tfevents") {
                    found.append(path)
                }
            }
        }
        walk(directory, depth: 0)
        return found.sorted()
    }
}
