"""SQLite persistence: one database file, WAL mode, one writer at a time."""
import contextlib
import sqlite3
import threading

SCHEMA_VERSION = 1
# Modules with tables of their own append their CREATE ... IF NOT EXISTS scripts here.
EXTRA_SCHEMAS = []

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS devices (
    kind      TEXT NOT NULL,               -- table | pager | kds
    id        TEXT NOT NULL,
    online    INTEGER NOT NULL DEFAULT 0,
    last_seen REAL,                        -- unix time of the last uplink
    reason    TEXT,                        -- why it last went offline
    hb        INTEGER,                     -- heartbeat period s, from its status
    fw        TEXT,
    battery   INTEGER,
    rssi      INTEGER,
    uptime    INTEGER,
    heap      INTEGER,
    seq       INTEGER NOT NULL DEFAULT 0,  -- last snapshot seq sent to it
    PRIMARY KEY (kind, id)
);
CREATE TABLE IF NOT EXISTS calls (
    id           TEXT PRIMARY KEY,         -- made by the table button
    table_id     TEXT NOT NULL,
    type         TEXT NOT NULL,
    prio         INTEGER NOT NULL,
    state        TEXT NOT NULL,            -- open | assigned | acked | done | cancelled
    pager        TEXT,                     -- holder while assigned or acked
    page         INTEGER NOT NULL DEFAULT 0,
    reminders    INTEGER NOT NULL DEFAULT 0,
    raised_at    REAL NOT NULL,
    assigned_at  REAL,
    acked_at     REAL,
    done_at      REAL,
    cancelled_at REAL
);
CREATE INDEX IF NOT EXISTS calls_by_state ON calls (state, raised_at);
CREATE INDEX IF NOT EXISTS calls_by_pager ON calls (pager, state);
-- Every id a table sent for a call: its own and those of its reminders.
CREATE TABLE IF NOT EXISTS call_ids (
    id      TEXT PRIMARY KEY,
    call_id TEXT NOT NULL REFERENCES calls (id)
);
CREATE INDEX IF NOT EXISTS call_ids_by_call ON call_ids (call_id);
CREATE TABLE IF NOT EXISTS call_events (
    n       INTEGER PRIMARY KEY AUTOINCREMENT,
    call_id TEXT NOT NULL REFERENCES calls (id),
    at      REAL NOT NULL,
    event   TEXT NOT NULL,                 -- raised reminder assigned moved unassigned acked done cancelled
    device  TEXT                           -- the device that caused it or received it
);
CREATE INDEX IF NOT EXISTS call_events_by_call ON call_events (call_id, n);
"""


class Store:
    """A connection shared by the hub's threads behind one lock.

    Writes happen inside `transaction()`; a failure rolls the whole event back.
    """

    def __init__(self, path):
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError("%s has schema version %d, newer than this hub's %d"
                               % (self.path, version, SCHEMA_VERSION))
        self._db.executescript(SCHEMA)
        for script in EXTRA_SCHEMAS:
            self._db.executescript(script)
        self._db.execute("PRAGMA user_version=%d" % SCHEMA_VERSION)

    @contextlib.contextmanager
    def transaction(self):
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def query(self, sql, args=()):
        with self._lock:
            return [dict(row) for row in self._db.execute(sql, args)]

    def one(self, sql, args=()):
        rows = self.query(sql, args)
        return rows[0] if rows else None

    def run(self, sql, args=()):
        with self._lock:
            return self._db.execute(sql, args).rowcount

    def insert(self, table, row):
        cols = ", ".join(row)
        marks = ", ".join("?" * len(row))
        self.run("INSERT INTO %s (%s) VALUES (%s)" % (table, cols, marks), tuple(row.values()))

    def update(self, table, key, fields):
        sets = ", ".join("%s = ?" % col for col in fields)
        where = " AND ".join("%s = ?" % col for col in key)
        return self.run("UPDATE %s SET %s WHERE %s" % (table, sets, where),
                        tuple(fields.values()) + tuple(key.values()))

    def setting(self, key, default):
        """The stored value of key, storing default first if there is none."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)", (key, default))
            return self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()[0]

    def close(self):
        with self._lock:
            self._db.close()
