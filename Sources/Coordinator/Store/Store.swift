import Foundation
import GRDB
import Shared
import Synchronization

/// The coordinator's durable state: one SQLite database in WAL mode, opened through GRDB over
/// the system libsqlite3. Every shard transition is one transaction; a coordinator restart
/// continues from here.
public final class Store: Sendable {
    let pool: DatabasePool
    public let path: String
    /// The summaries' row cache between their transactions (``advanceRollups(maxBatches:)``).
    let rollupCache = Mutex(SeriesRollupCache())
    /// The batches ingest committed last, decoded, for the consumers that read them next.
    let recentBatches = Mutex(RecentBatches())
    /// The thread of ``offloaded(_:)``.
    let io = DispatchQueue(label: "tts.store.io", qos: .userInitiated)
    /// What the coordinator decides inside the store's transactions (scoring, dispatch, retention).
    let decisions: any StoreDecisions

    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    /// - Parameter decisions: the coordinator's decisions the store's transactions ask for.
    /// - Throws: ``StoreError`` naming the file when it cannot be opened or migrated.
    init(path: String, decisions: any StoreDecisions) throws(StoreError) {
        self.path = path
        self.decisions = decisions
        var config = Configuration()
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in
            // FULL: a commit is on disk before the coordinator acknowledges what it holds.
            try db.execute(sql: "PRAGMA synchronous = FULL")
            try db.execute(sql: "PRAGMA foreign_keys = ON")
        }
        do {
            pool = try DatabasePool(path: path, configuration: config)
            try Store.migrator.migrate(pool)
        } catch {
            throw StoreError(.cannotOpen, "cannot open the coordinator database \(path): \(error). Check that the directory exists and is writable, and that no other coordinator uses this file.")
        }
    }

    /// Folds the write-ahead log into the database file (at shutdown), so the file alone is the
    /// whole state and the next start has no WAL to replay.
    public func checkpoint() throws {
        do { try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA wal_checkpoint(TRUNCATE)") } } catch {
            throw Self.classify(error, path)
        }
    }

    /// Current schema version (number of applied migrations).
    public func schemaVersion() throws -> Int {
        try read { db in try Store.migrator.appliedMigrations(db).count }
    }

    static var migrator: DatabaseMigrator {
        var m = DatabaseMigrator()
        m.registerMigration("v1: workers, sessions, jobs, runs, shards, attempts, events, metrics") { db in
            try db.execute(sql: """
                CREATE TABLE workers (
                    id TEXT PRIMARY KEY,
                    name TEXT NOT NULL,
                    host TEXT NOT NULL,
                    device TEXT NOT NULL,            -- DeviceInfo as JSON
                    capabilities TEXT NOT NULL,      -- JSON array
                    version TEXT NOT NULL,
                    pid INTEGER NOT NULL,
                    session INTEGER NOT NULL,
                    state TEXT NOT NULL,             -- live | lost | gone
                    status TEXT NOT NULL,            -- idle | busy | draining | stopping
                    registered_at REAL NOT NULL,
                    last_seen REAL NOT NULL,
                    progress TEXT,                   -- ShardProgress as JSON
                    telemetry TEXT                   -- DeviceTelemetry as JSON
                );
                CREATE TABLE sessions (
                    session INTEGER PRIMARY KEY,
                    worker_id TEXT NOT NULL REFERENCES workers(id),
                    created_at REAL NOT NULL,
                    high_water INTEGER NOT NULL DEFAULT 0,   -- highest durable request sequence
                    last_reply BLOB                          -- reply to that request, for retries
                );
                CREATE TABLE jobs (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    name TEXT NOT NULL,
                    kind TEXT NOT NULL,
                    spec TEXT NOT NULL,
                    state TEXT NOT NULL,
                    created_at REAL NOT NULL
                );
                CREATE TABLE runs (
                    id TEXT PRIMARY KEY,
                    job_id INTEGER NOT NULL REFERENCES jobs(id),
                    name TEXT NOT NULL,
                    state TEXT NOT NULL,
                    created_at REAL NOT NULL
                );
                CREATE TABLE shards (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    job_id INTEGER NOT NULL REFERENCES jobs(id),
                    run_id TEXT,
                    kind TEXT NOT NULL,
                    payload TEXT NOT NULL,
                    state TEXT NOT NULL,             -- queued | leased | running | succeeded | failed | cancelled
                    attempts INTEGER NOT NULL DEFAULT 0,
                    failures INTEGER NOT NULL DEFAULT 0,
                    max_retries INTEGER NOT NULL,
                    lease_epoch INTEGER NOT NULL DEFAULT 0,
                    worker_id TEXT,
                    session INTEGER,
                    cancel_requested INTEGER NOT NULL DEFAULT 0,
                    created_at REAL NOT NULL,
                    updated_at REAL NOT NULL,
                    finished_at REAL,
                    message TEXT NOT NULL DEFAULT '',
                    output TEXT NOT NULL DEFAULT ''
                );
                CREATE INDEX shards_by_state ON shards(state, id);
                CREATE INDEX shards_by_worker ON shards(worker_id, state);
                CREATE TABLE shard_attempts (
                    shard_id INTEGER NOT NULL REFERENCES shards(id),
                    attempt INTEGER NOT NULL,
                    lease_epoch INTEGER NOT NULL,
                    worker_id TEXT NOT NULL,
                    worker_name TEXT NOT NULL,
                    state TEXT NOT NULL,             -- leased | running | succeeded | failed | lost | cancelled | requeued
                    leased_at REAL NOT NULL,
                    started_at REAL,
                    ended_at REAL,
                    message TEXT NOT NULL DEFAULT '',
                    PRIMARY KEY (shard_id, attempt)
                );
                CREATE TABLE events (
                    id INTEGER PRIMARY KEY AUTOINCREMENT,
                    worker_id TEXT,
                    shard_id INTEGER,
                    kind TEXT NOT NULL,
                    message TEXT NOT NULL,
                    data TEXT NOT NULL DEFAULT '',
                    wall_time REAL NOT NULL,
                    received_at REAL NOT NULL
                );
                CREATE TABLE metrics (
                    run_id TEXT NOT NULL,
                    step INTEGER NOT NULL,
                    key TEXT NOT NULL,
                    value_bits INTEGER NOT NULL,     -- IEEE-754 bits: NaN and ±Inf kept exactly
                    wall_time REAL NOT NULL,
                    PRIMARY KEY (run_id, key, step)
                ) WITHOUT ROWID;
                """)
        }
        m.registerMigration("v2: metric series and points, spool high-water marks") { db in
            try db.execute(sql: """
                DROP TABLE metrics;
                CREATE TABLE series (
                    id INTEGER PRIMARY KEY,
                    run_id TEXT NOT NULL,
                    key TEXT NOT NULL,
                    UNIQUE (run_id, key)
                );
                CREATE TABLE points (
                    series_id INTEGER NOT NULL,
                    step INTEGER NOT NULL,
                    ingest_seq INTEGER NOT NULL,     -- coordinator-wide arrival order
                    value_bits INTEGER NOT NULL,     -- IEEE-754 bits: NaN and ±Inf kept exactly
                    wall_time REAL NOT NULL,
                    PRIMARY KEY (series_id, step, ingest_seq)
                ) WITHOUT ROWID;
                CREATE INDEX points_by_arrival ON points(ingest_seq);
                CREATE TABLE spool_marks (
                    worker_id TEXT PRIMARY KEY,
                    high_water INTEGER NOT NULL      -- highest spool sequence stored for this worker
                );
                """)
        }
        m.registerMigration("v3: run identity for W&B, W&B delivery state") { db in
            try db.execute(sql: """
                ALTER TABLE runs ADD COLUMN project TEXT NOT NULL DEFAULT 'tts-cluster';
                ALTER TABLE runs ADD COLUMN entity TEXT;
                ALTER TABLE runs ADD COLUMN group_name TEXT;
                ALTER TABLE runs ADD COLUMN job_type TEXT;
                ALTER TABLE runs ADD COLUMN tags TEXT NOT NULL DEFAULT '[]';
                ALTER TABLE runs ADD COLUMN notes TEXT;
                ALTER TABLE runs ADD COLUMN config TEXT NOT NULL DEFAULT '{}';
                ALTER TABLE runs ADD COLUMN finished_at REAL;
                ALTER TABLE runs ADD COLUMN exit_code INTEGER;
                CREATE TABLE wandb_state (
                    run_id TEXT PRIMARY KEY REFERENCES runs(id),
                    mode TEXT NOT NULL,                  -- online | offline
                    cursor INTEGER NOT NULL DEFAULT 0,   -- points with ingest_seq <= cursor are delivered
                    last_step INTEGER,                   -- last history step delivered (_step never rewinds)
                    history_lines INTEGER NOT NULL DEFAULT 0,
                    events_lines INTEGER NOT NULL DEFAULT 0,
                    summary TEXT NOT NULL DEFAULT '{}',  -- the run summary as delivered
                    storage_id TEXT,                     -- online: the server's bucket id
                    entity TEXT,                         -- online: as read back from UpsertBucket
                    offline_dir TEXT,                    -- offline: the offline-run directory
                    offline_size INTEGER NOT NULL DEFAULT 0,     -- offline: bytes of the .wandb known durable
                    offline_records INTEGER NOT NULL DEFAULT 0,  -- offline: records in those bytes
                    finished INTEGER NOT NULL DEFAULT 0,
                    last_error TEXT
                );
                """)
        }
        m.registerMigration("v4: events carry their run; W&B event cursor") { db in
            try db.execute(sql: """
                ALTER TABLE events ADD COLUMN run_id TEXT;
                CREATE INDEX events_by_run ON events(run_id, id);
                ALTER TABLE wandb_state ADD COLUMN event_cursor INTEGER NOT NULL DEFAULT 0;
                """)
        }
        m.registerMigration("v5: W&B online stream offsets") { db in
            try db.execute(sql: """
                ALTER TABLE wandb_state ADD COLUMN output_lines INTEGER NOT NULL DEFAULT 0;
                ALTER TABLE wandb_state ADD COLUMN project TEXT;
                """)
        }
        m.registerMigration("v6: metric points stored per batch") { db in
            try db.execute(sql: """
                CREATE TABLE metric_batches (
                    id INTEGER PRIMARY KEY,          -- arrival order
                    run_id TEXT NOT NULL,
                    first_seq INTEGER NOT NULL,      -- ingest sequence of its first point (points: first_seq ..< first_seq + point_count)
                    point_count INTEGER NOT NULL,
                    min_step INTEGER NOT NULL,
                    max_step INTEGER NOT NULL,
                    data BLOB NOT NULL               -- PointBatch encoding: keys, steps, IEEE-754 value bits, wall times
                );
                CREATE INDEX metric_batches_by_run ON metric_batches(run_id, first_seq);
                CREATE TABLE series_batches (
                    series_id INTEGER NOT NULL REFERENCES series(id),
                    batch_id INTEGER NOT NULL REFERENCES metric_batches(id),
                    min_step INTEGER NOT NULL,
                    max_step INTEGER NOT NULL,
                    point_count INTEGER NOT NULL,
                    PRIMARY KEY (series_id, batch_id)
                ) WITHOUT ROWID;
                """)
            // Move the points of earlier versions into batches (with the encoder of v6 itself).
            try Store.migrateV6PointsIntoBatches(db)
            try db.execute(sql: "DROP TABLE points")
        }
        m.registerMigration("v7: alerts, their notification outbox, silences") { db in
            try db.execute(sql: """
                CREATE TABLE alerts (
                    id INTEGER PRIMARY KEY,
                    fingerprint TEXT NOT NULL,       -- run|rule|series
                    run_id TEXT,
                    rule TEXT NOT NULL,
                    series TEXT NOT NULL DEFAULT '',
                    severity TEXT NOT NULL,
                    state TEXT NOT NULL,             -- firing | resolved | notice
                    summary TEXT NOT NULL,
                    signal TEXT NOT NULL,            -- the latest AlertSignal (JSON)
                    started_at REAL NOT NULL,
                    updated_at REAL NOT NULL,
                    resolved_at REAL,
                    last_notified_at REAL,
                    notifications INTEGER NOT NULL DEFAULT 0
                );
                CREATE INDEX alerts_by_state ON alerts(state, fingerprint);
                CREATE TABLE alert_outbox (
                    id INTEGER PRIMARY KEY,          -- delivery order
                    alert_id INTEGER NOT NULL REFERENCES alerts(id),
                    group_key TEXT NOT NULL,         -- run|rule: a burst within group_wait is one message
                    kind TEXT NOT NULL,              -- fire | resolve | repeat | notify
                    signal TEXT NOT NULL,            -- the AlertSignal to render (JSON)
                    created_at REAL NOT NULL,
                    due_at REAL NOT NULL,            -- created_at + group_wait
                    state TEXT NOT NULL,             -- pending | delivered | failed | silenced
                    attempts INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at REAL NOT NULL,
                    delivered_at REAL,
                    last_error TEXT
                );
                CREATE INDEX alert_outbox_pending ON alert_outbox(state, id);
                CREATE TABLE silences (
                    id INTEGER PRIMARY KEY,
                    run_id TEXT NOT NULL,
                    rule TEXT,                       -- NULL: every rule of the run
                    comment TEXT NOT NULL DEFAULT '',
                    created_at REAL NOT NULL,
                    expires_at REAL NOT NULL
                );
                """)
        }
        m.registerMigration("v8: training runs (job spec, preset, batch, resume checkpoint, downshifts)") { db in
            try db.execute(sql: """
                ALTER TABLE runs ADD COLUMN run_index INTEGER;         -- index in the job spec's runs() (sweep combination)
                ALTER TABLE runs ADD COLUMN output_dir TEXT;           -- where the trainer writes checkpoints
                ALTER TABLE runs ADD COLUMN max_steps INTEGER;
                ALTER TABLE runs ADD COLUMN preset TEXT;               -- the GPU class of the last dispatch
                ALTER TABLE runs ADD COLUMN batch_size INTEGER;        -- micro-batch of the last dispatch
                ALTER TABLE runs ADD COLUMN grad_accum INTEGER;
                ALTER TABLE runs ADD COLUMN downshifts INTEGER NOT NULL DEFAULT 0;   -- OOM downshifts so far
                ALTER TABLE runs ADD COLUMN batch_cap INTEGER;         -- largest micro-batch allowed after an OOM
                ALTER TABLE runs ADD COLUMN checkpoint_path TEXT;      -- last resumable checkpoint reported
                ALTER TABLE runs ADD COLUMN checkpoint_step INTEGER;
                ALTER TABLE runs ADD COLUMN checkpoint_kind TEXT;      -- step (model_step{N}) or latest
                ALTER TABLE runs ADD COLUMN wait_reason TEXT;          -- why no worker could take it yet
                """)
        }
        m.registerMigration("v9: evaluations") { db in
            try db.execute(sql: """
                CREATE TABLE evals (
                    id INTEGER PRIMARY KEY,
                    job_id INTEGER NOT NULL REFERENCES jobs(id),
                    run_id TEXT,                     -- the training run whose metrics get the results
                    step INTEGER,                    -- the checkpoint's step
                    checkpoint TEXT NOT NULL,
                    output_dir TEXT NOT NULL,
                    utterances INTEGER NOT NULL,
                    state TEXT NOT NULL,             -- running | succeeded | failed
                    summary TEXT,                    -- the scores (JSON), when done
                    message TEXT NOT NULL DEFAULT '',
                    created_at REAL NOT NULL,
                    finished_at REAL
                );
                CREATE UNIQUE INDEX evals_by_run_step ON evals(run_id, step) WHERE run_id IS NOT NULL AND step IS NOT NULL;
                """)
        }
        m.registerMigration("v10: highest stored step per series (one point per run, key and step)") { db in
            // Ingest keeps each (run, key, step) once: a batch whose steps all lie above the
            // series' highest stored step needs no further check, and this index answers that
            // in O(log n) however long the run.
            try db.execute(sql: "CREATE INDEX series_batches_by_max_step ON series_batches(series_id, max_step)")
        }
        m.registerMigration("v11: pinned checkpoints, light and full resume points") { db in
            try db.execute(sql: """
                CREATE TABLE pins (
                    id INTEGER PRIMARY KEY,
                    run_id TEXT NOT NULL,
                    step INTEGER NOT NULL,           -- the step inside the file
                    path TEXT NOT NULL,              -- the pin (a hard link or copy the trainer never overwrites)
                    source TEXT,                     -- the trainer's file it was taken from
                    full_state INTEGER NOT NULL,     -- 1: optimizer state inside (a resume point)
                    roles TEXT NOT NULL,             -- JSON list: eval, checkpoint, final, resume
                    size INTEGER,
                    sha256 TEXT,
                    created_at REAL NOT NULL,
                    deleted_at REAL,                 -- set when retention deleted it
                    deleted_reason TEXT
                );
                CREATE UNIQUE INDEX pins_by_run_path ON pins(run_id, path);
                CREATE INDEX pins_by_run_step ON pins(run_id, step);
                ALTER TABLE runs ADD COLUMN checkpoint_full INTEGER;        -- checkpoint_path holds optimizer state (NULL: unknown)
                ALTER TABLE runs ADD COLUMN light_checkpoint_path TEXT;     -- newest checkpoint without optimizer state
                ALTER TABLE runs ADD COLUMN light_checkpoint_step INTEGER;
                ALTER TABLE runs ADD COLUMN best_pin TEXT;                  -- the pin that has W&B's `best` alias
                """)
        }
        m.registerMigration("v12: per-series summaries at several step resolutions (curves at week scale)") { db in
            try db.execute(sql: """
                CREATE TABLE series_rollups (
                    series_id INTEGER NOT NULL REFERENCES series(id),
                    level INTEGER NOT NULL,          -- index into SeriesRollup.levels (64 … 2,097,152 steps; from v14 256 … 8,388,608)
                    bucket INTEGER NOT NULL,         -- steps bucket·width ..< (bucket+1)·width
                    data BLOB NOT NULL,              -- SeriesRollup: count, first, last, min, max (104 bytes)
                    PRIMARY KEY (series_id, level, bucket)
                ) WITHOUT ROWID;
                CREATE TABLE consumer_cursors (
                    name TEXT PRIMARY KEY,           -- rollups: metric_batches.id summarised through
                    position INTEGER NOT NULL,
                    updated_at REAL NOT NULL
                );
                """)
            // Self-contained: no summaries are built here. The summaries' consumer starts at
            // cursor 0 and folds every stored batch after start; until it has caught up, curves
            // merge the batches it has not folded yet, so answers are exact meanwhile.
        }
        m.registerMigration("v13: the ingest log that consumers (the alert rules, …) read from their cursors") { db in
            try db.execute(sql: """
                CREATE TABLE ingest_log (
                    seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    kind TEXT NOT NULL,              -- points | event | result | worker_lost
                    run_id TEXT,
                    worker_id TEXT,
                    ref INTEGER,                     -- points: metric_batches.id; event: events.id
                    data BLOB,                       -- result: the ResultRequest (wire encoding)
                    detail TEXT,                     -- result: its disposition; worker_lost: name, shards, runs (JSON)
                    at REAL NOT NULL                 -- commit time: the rules' clock for this entry
                );
                ALTER TABLE events ADD COLUMN lease_epoch INTEGER;
                """)
        }
        m.registerMigration("v14: series summaries from 256 steps up (was 64): a quarter of the rows to write at ingest rates") { db in
            // Self-contained: the old rows are dropped and the summaries' consumer folds every
            // stored batch again from cursor 0 (readers add the batches not yet folded meanwhile).
            try db.execute(sql: """
                DELETE FROM series_rollups;
                DELETE FROM consumer_cursors WHERE name = 'rollups';
                """)
        }
        m.registerMigration("v15: data-parallel gangs (a run's ranks are shards leased together)") { db in
            try db.execute(sql: """
                ALTER TABLE runs ADD COLUMN world_size INTEGER NOT NULL DEFAULT 1;
                ALTER TABLE shards ADD COLUMN rank INTEGER;                      -- rank in its run's gang (NULL: not a gang)
                ALTER TABLE shards ADD COLUMN gang_stop INTEGER NOT NULL DEFAULT 0; -- stopping because another rank ended
                CREATE INDEX shards_gang ON shards(run_id, rank) WHERE rank IS NOT NULL;
                """)
        }
        return m
    }
}


extension Date {
    var unixSeconds: Double { timeIntervalSince1970 }
}

func dateFrom(_ seconds: Double?) -> Date? {
    seconds.map { Date(timeIntervalSince1970: $0) }
}

func jsonString<T: Encodable>(_ value: T?) -> String? {
    guard let value, let data = try? JSONCoding.encoder.encode(value) else { return nil }
    return String(decoding: data, as: UTF8.self)
}

func jsonDecode<T: Decodable>(_: T.Type, _ text: String?) -> T? {
    guard let text, !text.isEmpty else { return nil }
    return try? JSONCoding.decoder.decode(T.self, from: Data(text.utf8))
}
