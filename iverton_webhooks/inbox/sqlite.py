"""The embedded default store: one SQLite file in WAL mode, shared by threads and processes
(its durability and concurrency: docs/stores.md, "Durability").

The queries and connection bookkeeping live in `sql`; this module connects, and holds
the schema and its migrations (the schema version is SQLite's ``PRAGMA user_version``).
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import quote

from .._errors import ConfigurationError, StoreUnavailable
from .base import CLAIMABLE, store_edge
from .sql import SQLITE, Execute, SQLStore, status_list

DEFAULT_PATH = "webhooks.sqlite3"

# After a checkpoint has copied the whole log back, SQLite cuts the -wal file down to
# this size; without a limit the file keeps the largest size it ever reached (a burst
# while a long read held checkpoints back), which on a small volume is space the
# database itself may need.
JOURNAL_SIZE_LIMIT = 4 * 1024 * 1024

_TABLE = "iverton_events"
_COLUMNS_V1 = (
    "type TEXT NOT NULL, created_at REAL NOT NULL, received_at REAL NOT NULL, "
    "body BLOB NOT NULL, status TEXT NOT NULL DEFAULT 'pending', "
    "attempts INTEGER NOT NULL DEFAULT 0, deliveries INTEGER NOT NULL DEFAULT 1, "
    "due_at REAL, next_attempt_at REAL, lease_until REAL, lease_token TEXT, "
    "processed_at REAL, last_error TEXT, outcomes TEXT"
)
_COPIED_V1 = (
    "id, type, created_at, received_at, body, status, attempts, deliveries, due_at, "
    "next_attempt_at, lease_until, lease_token, processed_at, last_error, outcomes"
)

# Forward migrations: version -> statements, run in one transaction each at open.
# Every index is paid for on each acknowledged request, so there are just two: the
# unique key and a partial index on ``due_at`` holding only unfinished events (small
# however large the history grows). Listing goes by rowid (arrival order); pruning, a
# rare maintenance job, scans.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # The first schema: keyed by id alone (a file it made has user_version 0 and this table).
    1: (
        f"CREATE TABLE IF NOT EXISTS {_TABLE} (id TEXT NOT NULL UNIQUE, {_COLUMNS_V1})",
        f"CREATE INDEX IF NOT EXISTS {_TABLE}_due ON {_TABLE} (due_at) "
        f"WHERE status IN {status_list(CLAIMABLE)}",
    ),
    # Endpoints: keyed by (endpoint, id); existing events belong to "default". SQLite
    # cannot change a table's keys in place, so the table is rebuilt (rowids, and with
    # them arrival order, are kept).
    2: (
        f"CREATE TABLE {_TABLE}_v2 (endpoint TEXT NOT NULL DEFAULT 'default', "
        f"id TEXT NOT NULL, {_COLUMNS_V1}, UNIQUE (endpoint, id))",
        f"INSERT INTO {_TABLE}_v2 (rowid, endpoint, {_COPIED_V1}) "
        f"SELECT rowid, 'default', {_COPIED_V1} FROM {_TABLE} ORDER BY rowid",
        f"DROP TABLE {_TABLE}",
        f"ALTER TABLE {_TABLE}_v2 RENAME TO {_TABLE}",
        f"CREATE INDEX {_TABLE}_due ON {_TABLE} (endpoint, due_at) "
        f"WHERE status IN {status_list(CLAIMABLE)}",
    ),
    # Failed answers in a row per endpoint, for the disablement warning.
    3: (
        "CREATE TABLE iverton_answers (scope TEXT NOT NULL, endpoint TEXT NOT NULL, "
        "failures INTEGER NOT NULL DEFAULT 0, kind TEXT, updated_at REAL, "
        "PRIMARY KEY (scope, endpoint))",
    ),
    # The due index keyed on what every write already sets: due_at is NULL exactly when
    # an event is finished, and the queries that use the index all say "due_at <= ?",
    # which implies IS NOT NULL (no status list to check on every write).
    4: (
        f"DROP INDEX {_TABLE}_due",
        f"CREATE INDEX {_TABLE}_due ON {_TABLE} (endpoint, due_at) WHERE due_at IS NOT NULL",
    ),
    # Resource marks for newest-only handlers: the newest event applied per endpoint,
    # resource and handler, and who holds the mark until when (epoch seconds).
    5: (
        "CREATE TABLE iverton_marks (scope TEXT NOT NULL, endpoint TEXT NOT NULL, "
        "resource TEXT NOT NULL, handler TEXT NOT NULL, applied_at REAL, applied_id TEXT, "
        "holder TEXT, hold_until REAL, PRIMARY KEY (scope, endpoint, resource, handler))",
    ),
    # Endpoints kept in the store: their secrets (JSON text, see base.dump_secrets),
    # whether they take requests, and when they were created and changed (epoch seconds).
    6: (
        "CREATE TABLE iverton_endpoints (scope TEXT NOT NULL, name TEXT NOT NULL, "
        "secrets TEXT NOT NULL, enabled INTEGER NOT NULL DEFAULT 1, created_at REAL NOT NULL, "
        "updated_at REAL NOT NULL, PRIMARY KEY (scope, name))",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


# SQLite's result code for a full disk (``sqlite3.SQLITE_FULL`` from Python 3.11 on).
_SQLITE_FULL = 13


def _disk_full(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)  # Python 3.11+
    if code is not None:
        return bool(code & 0xFF == _SQLITE_FULL)
    return "database or disk is full" in str(error)


class _Ran:
    """A write's rows, read to the end: SQLite commits (and reports a full disk) only
    once the last row of a ``RETURNING`` statement has been stepped through."""

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Any:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[Any]:
        rows, self._rows = self._rows, []
        return rows


def _run(conn: sqlite3.Connection, statement: str, params: Sequence[Any]) -> _Ran:
    cursor = conn.execute(statement, params)
    return _Ran(cursor.fetchall(), cursor.rowcount)


@store_edge(sqlite3.Error, OSError)
class SQLiteStore(SQLStore[sqlite3.Connection]):
    """Events in a SQLite file, one connection per thread of each process.

    ``timeout`` is how long a write waits for another writer (SQLite's busy timeout)
    before giving up; the receiver then answers 503 and the sender retries, so keep it
    well under 5 s. ``wal_pages`` sets SQLite's ``wal_autocheckpoint`` (default: SQLite's
    own, 1,000 pages), capped at an eighth of the volume the file is on. Opening a file
    an older version made upgrades its schema in place.
    """

    dialect = SQLITE
    _table = _TABLE
    _answers = "iverton_answers"
    _answers_scope = _TABLE
    _marks = "iverton_marks"
    _registry = "iverton_endpoints"

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        timeout: float = 2.0,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        wal_pages: int | None = None,
    ) -> None:
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise ConfigurationError(
                f"SQLiteStore needs SQLite 3.35 or newer (RETURNING); this Python has "
                f"{sqlite3.sqlite_version}"
            )
        if str(path) == ":memory:" or str(path).startswith("file::memory:"):
            # Each thread has its own connection, and each would see its own empty database.
            raise ConfigurationError("an in-memory SQLite inbox cannot be shared; use MemoryStore")
        if synchronous.upper() not in ("NORMAL", "FULL", "EXTRA"):
            raise ConfigurationError("synchronous must be NORMAL, FULL or EXTRA")
        self.path = str(path)
        self.timeout = timeout
        self.synchronous = synchronous.upper()
        self.clock = clock
        self.wal_pages = wal_pages
        self._processes = {}
        self._migrate(self._conn)

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    @staticmethod
    def _path(url: str) -> str:
        rest = url.partition("://")[2]
        return (rest[1:] if rest.startswith("/") else rest) or DEFAULT_PATH

    @classmethod
    def from_url(cls, url: str) -> SQLiteStore:
        """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``."""
        return cls(cls._path(url))

    @classmethod
    def missing_inbox(cls, url: str) -> str | None:
        path = cls._path(url)
        where = os.path.abspath(path)
        if not os.path.exists(path):
            return f"no inbox at {where}: the file does not exist (check --store)"
        try:
            # Read-only: checking must not create or change anything.
            with sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True) as conn:
                found = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_TABLE,)
                ).fetchone()
        except sqlite3.Error as error:
            return f"{where} is not an SQLite inbox: {error}"
        if found is None:
            return f"{where} holds no {_TABLE} table: not an inbox"
        return None

    def _connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise ConfigurationError(f"could not put {self.path} in WAL mode")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        default_pages = conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0]
        pages = self.wal_pages if self.wal_pages is not None else default_pages
        # The log may grow to its checkpoint size before anything is copied back; on a
        # small volume that alone can fill the disk, and a full disk leaves the
        # checkpoint no room to grow the database, so the log never shrinks again.
        # Keep it to an eighth of the volume.
        volume = shutil.disk_usage(os.path.dirname(os.path.abspath(self.path))).total
        pages = max(1, min(int(pages), volume // 8 // page_size))
        conn.execute(f"PRAGMA wal_autocheckpoint={pages}")
        conn.execute(f"PRAGMA journal_size_limit={min(JOURNAL_SIZE_LIMIT, volume // 8)}")
        # SQLite builds small scratch tables for RETURNING; with the default temp_store
        # each is a temporary file, created and deleted per statement.
        conn.execute("PRAGMA temp_store=MEMORY")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the file's schema to `SCHEMA_VERSION`. Processes opening it at
        once take turns on SQLite's write lock, and each re-reads the version under it."""
        if conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
            return
        # A large inbox takes a while to rebuild: wait for it rather than fail.
        conn.execute("PRAGMA busy_timeout=120000")
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                current = conn.execute("PRAGMA user_version").fetchone()[0]
                for version in sorted(v for v in MIGRATIONS if v > current):
                    for statement in MIGRATIONS[version]:
                        conn.execute(statement)
                    conn.execute(f"PRAGMA user_version={version}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={round(self.timeout * 1000)}")

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> sqlite3.Cursor | _Ran:
        if statement.startswith("SELECT"):
            return self._conn.execute(statement, params)  # WAL: reads never wait on writes
        with self._writing() as conn:
            return _run(conn, statement, params)

    @contextmanager
    def _transaction(self) -> Iterator[Execute]:
        # BEGIN IMMEDIATE takes SQLite's write lock at once (waiting for it as any write
        # does), so what the block reads cannot change before it writes.
        with self._writing() as conn:
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield partial(_run, conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _writing(self) -> Iterator[sqlite3.Connection]:
        """This thread's connection, for writes this process makes one at a time; a full
        disk raises `StoreUnavailable` saying what to do."""
        with self._process().write_lock:
            try:
                yield self._conn
            except sqlite3.OperationalError as error:
                if not _disk_full(error):
                    raise
                where = os.path.dirname(os.path.abspath(self.path))
                raise StoreUnavailable(
                    f"SQLiteStore {self.path}: database or disk is full; free space on the "
                    f"volume holding {where} (the store takes writes again by itself once "
                    "there is room)"
                ) from error
