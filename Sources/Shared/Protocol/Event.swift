/// `event`: something happened on a worker that the coordinator should record: a shard started,
/// a checkpoint was saved, CUDA ran out of memory, a log line, a warning.
public struct EventRequest: Sendable, Equatable, WireCodable {
    /// Well-known kinds; runners may send others.
    public struct Kind: RawRepresentable, Hashable, Sendable, Codable {
        public let rawValue: String
        public init(rawValue: String) { self.rawValue = rawValue }

        public static let shardStarted = Kind(rawValue: "shard_started")
        public static let checkpointSaved = Kind(rawValue: "checkpoint_saved")
        public static let outOfMemory = Kind(rawValue: "oom")
        public static let log = Kind(rawValue: "log")
        /// A media sample of a run (data: `key`, `step`, `path`, `type` = `audio`, optional `caption`).
        public static let media = Kind(rawValue: "media")
        public static let warning = Kind(rawValue: "warning")
        /// The trainer said where it resumed from (data: `checkpoint`, `epoch`, `step`).
        public static let trainerResumed = Kind(rawValue: "trainer_resumed")
        /// The trainer resumed from another step than the cluster asked for (an error: the
        /// shard is stopped and fails; an alert is raised).
        public static let resumeMismatch = Kind(rawValue: "resume_mismatch")
        /// A validation lowered the best validation loss (data: `val/text_loss`, `step`).
        public static let newBest = Kind(rawValue: "new_best")
        /// The trainer finished its loop (`Training complete.`).
        public static let trainerComplete = Kind(rawValue: "trainer_complete")
        /// The checkpoint volume is nearly full (data: `free_bytes`, `checkpoint_bytes`, `path`).
        public static let diskLow = Kind(rawValue: "disk_low")
    }

    public var kind: Kind
    public var shard: ShardRef?
    public var message: String
    /// Extra structured data as a JSON object (may be empty).
    public var data: [UInt8]
    public var wallTime: Double

    public init(kind: Kind, shard: ShardRef?, message: String, data: [UInt8] = [], wallTime: Double) {
        self.kind = kind
        self.shard = shard
        self.message = message
        self.data = data
        self.wallTime = wallTime
    }

    public init(from r: inout WireReader) throws(WireError) {
        kind = Kind(rawValue: try r.readString("event.kind"))
        shard = try r.readOptional("event.shard") { (r) throws(WireError) in try ShardRef(from: &r) }
        message = try r.readString("event.message")
        data = try r.readBytes("event.data")
        wallTime = try r.readDouble("event.wallTime")
    }

    public func encode(to w: inout WireWriter) {
        w.write(kind.rawValue)
        w.writeOptional(shard) { $1.encode(to: &$0) }
        w.write(message)
        w.writeBytes(data)
        w.write(wallTime)
    }
}
