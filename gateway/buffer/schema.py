"""The buffer's SQLite schema and how a database file is opened and checked.

Durability: WAL with ``synchronous=FULL``. In WAL mode ``NORMAL`` syncs only at
checkpoints, so a power cut can roll back the last transactions *after* their
commit returned: a concentrator message would already be acknowledged and its
readings gone. ``FULL`` fsyncs the log at every commit, so a committed (and
therefore acknowledged) reading survives power loss. Group commit is what keeps
this affordable: one fsync per batch of thousands of rows, not per reading.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 3
WRITER_CACHE_KIB = 1024
"""Page cache of the writing connection (SQLite's default is 2 MB)."""
READER_CACHE_KIB = 256
"""Page cache of each reading connection (SQLite's default is 2 MB)."""

DDL = """
CREATE TABLE IF NOT EXISTS readings (
    seq INTEGER PRIMARY KEY,
    meter TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    unit TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    ts_source TEXT NOT NULL,
    received_ms INTEGER NOT NULL,
    source TEXT NOT NULL,
    quality INTEGER NOT NULL,
    interval_s INTEGER
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    subject TEXT NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS cursors (
    sink TEXT PRIMARY KEY,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS concentrators (
    gw TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    ts_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine (
    id INTEGER PRIMARY KEY,
    ts_ms INTEGER NOT NULL,
    origin TEXT NOT NULL,
    subject TEXT NOT NULL,
    seq INTEGER,
    reason TEXT NOT NULL,
    payload BLOB NOT NULL,
    kind TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS seen (
    id INTEGER PRIMARY KEY,
    scope TEXT NOT NULL,
    key BLOB NOT NULL,
    ts_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS seen_key ON seen(scope, key);
CREATE TABLE IF NOT EXISTS refs (
    meter TEXT NOT NULL,
    key TEXT NOT NULL,
    ts_ms INTEGER NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (meter, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"""

GAPS_DDL = (
    """CREATE TABLE IF NOT EXISTS gaps (
    id TEXT PRIMARY KEY,
    meter TEXT NOT NULL,
    cause TEXT NOT NULL,
    keys TEXT NOT NULL,
    start_ms INTEGER NOT NULL,
    end_ms INTEGER NOT NULL,
    state TEXT NOT NULL,
    interval_s INTEGER NOT NULL,
    expected INTEGER NOT NULL,
    recovered INTEGER NOT NULL,
    missing INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL,
    todo_from_ms INTEGER NOT NULL,
    todo_to_ms INTEGER NOT NULL,
    meter_start_ms INTEGER NOT NULL,
    meter_end_ms INTEGER NOT NULL,
    settled INTEGER NOT NULL DEFAULT 0,
    bus TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS gaps_state ON gaps(state, updated_ms)",
)
"""The gap ledger (schema 3): one row per gap, written with the readings that fill it."""
DDL += "".join(f"{statement};\n" for statement in GAPS_DDL)


MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 1 -> 2: quarantine entries carry a reason kind (kept per kind); the ``seen`` table
    # (created by the DDL) holds the keys of stored concentrator messages.
    1: ("ALTER TABLE quarantine ADD COLUMN kind TEXT NOT NULL DEFAULT ''",),
    # 2 -> 3: the gap ledger.
    2: GAPS_DDL,
}
"""Forward-only steps: ``MIGRATIONS[v]`` takes a version ``v`` database to ``v + 1``. They run
in the same transaction as the DDL, so a failed upgrade leaves the file as it was."""


class BufferError(Exception):
    """The buffer cannot store: a bad database file at start, or a failed commit.

    The message names the database path. Raised out of ``accept`` it means
    *not accepted*: the caller must not acknowledge.
    """


def connect_writer(path: str) -> sqlite3.Connection:
    """Open (creating if needed) the database for writing; raise :class:`BufferError`.

    A file that is not a usable buffer is an error naming the path, never
    reset: it may hold readings nobody has forwarded yet.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BufferError(f"buffer {path}: cannot create its directory: {exc}") from None
    if p.is_dir():
        raise BufferError(f"buffer {path}: is a directory, not a database file")
    try:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as exc:
        raise BufferError(f"buffer {path}: cannot open: {exc}") from None
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise BufferError(f"buffer {path}: cannot switch to WAL mode (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
        # Appends touch only the b-tree's right edge: 1 MB of page cache is plenty.
        conn.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
        conn.execute("PRAGMA busy_timeout=10000")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise BufferError(
                f"buffer {path}: schema version {version} is newer than this metergw "
                f"({SCHEMA_VERSION}); refusing to touch it"
            )
        conn.execute("BEGIN IMMEDIATE")
        if version:  # 0: a new file, which the DDL makes at the current version
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement)
        for statement in DDL.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        # A write probe: an unwritable file fails here, at start, not at the first reading.
        conn.execute("INSERT OR REPLACE INTO meta(name, value) VALUES ('opened', 1)")
        conn.execute("COMMIT")
    except BufferError:
        conn.close()
        raise
    except sqlite3.Error as exc:
        conn.close()
        raise BufferError(
            f"buffer {path}: not a usable buffer database ({exc}); "
            "it is left untouched: move it aside to start with an empty buffer"
        ) from None
    return conn


def connect_reader(path: str) -> sqlite3.Connection:
    """A read-only connection for a forwarder or a query (its own, never the writer's)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA query_only=1")
    conn.execute("PRAGMA busy_timeout=10000")
    # Readers scan forward through pages they read once: a small page cache (the
    # b-tree's upper levels) serves them as well as the default 2 MB does.
    conn.execute(f"PRAGMA cache_size=-{READER_CACHE_KIB}")
    return conn
