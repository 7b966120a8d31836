"""The embedded default store: one SQLite file in WAL mode, shared by threads and processes.

Durability: with ``synchronous="NORMAL"`` (the default) a recorded event survives the
death of any process; surviving an operating-system crash or power cut as well needs
``synchronous="FULL"``, which costs an fsync per acknowledged event.

The queries live in :mod:`.sql`; this module holds connections, the schema and its
migrations (the schema version is SQLite's ``PRAGMA user_version``).
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError
from ..filelock import FileLock
from ..forks import reset_after_fork
from .base import CLAIMABLE
from .checkpointer import Checkpointer
from .group import GroupCommit, Waiter
from .sql import SQLITE, SQLStore, status_list

DEFAULT_PATH = "webhooks.sqlite3"

# The write-ahead log is checkpointed once it holds this many bytes of pages (SQLite's
# own default interval, 1,000 pages of 4 KiB), and cut back to JOURNAL_SIZE_LIMIT bytes
# after a checkpoint (it can grow past the interval while a long read holds a checkpoint
# back). Wave 1 checkpointed every 10,000 pages: a ~40 MB WAL that filled a small disk.
WAL_AUTOCHECKPOINT_BYTES = 4 * 1024 * 1024
# New inbox files use 2 KiB pages. A commit logs every page it changed whole, and an ack
# changes three (its row's leaf and a leaf of each index): at 2 KiB it logs half the
# bytes it did at SQLite's default 4 KiB, so the log reaches the interval half as often,
# and each checkpoint (two fsyncs) is paid by half as many acks: 63 -> 57 us per ack
# here, each in its own process. A typical event (a few hundred bytes to 2 KiB) still fits
# its leaf. Files made with another page size keep it (SQLite cannot change it in WAL mode).
PAGE_SIZE = 2048
JOURNAL_SIZE_LIMIT = 6 * 1024 * 1024

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
# ``due_at`` is the one time a worker looks at (a pending event's arrival, a failed
# one's retry, a processing one's lease end). Its partial index holds only unfinished
# events, so it stays small however large the history grows; every index is paid for
# on each acknowledged request, so there are just two: the unique key and that one.
# Listing goes by rowid (arrival order); pruning, a rare maintenance job, scans.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # Wave 1: keyed by id alone (a file it made has user_version 0 and this table).
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
    # an event is finished. SQLite checked the status IN list of the old predicate with
    # a scratch table on every insert and transition (a tenth of an ack's insert); the
    # queries that use the index all say "due_at <= ?", which implies IS NOT NULL.
    4: (
        f"DROP INDEX {_TABLE}_due",
        f"CREATE INDEX {_TABLE}_due ON {_TABLE} (endpoint, due_at) WHERE due_at IS NOT NULL",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)


# Kept under this name for callers that build waiters (tests).
_Waiter = Waiter


class SQLiteStore(GroupCommit[dict[str, Any]], SQLStore):
    """Events in a SQLite file, one connection per thread (and per process after a fork).

    ``timeout`` is how long a write waits for another writer's lock before giving up;
    the receiver then answers 503 and the sender retries, so keep it well under 5 s.
    ``wal_pages`` is how many pages the write-ahead log takes before it is checkpointed
    (default: 4 MiB's worth; a new file has 2 KiB pages): more buys a little ack speed
    with a larger ``-wal`` file.
    Opening a file an older version made upgrades its schema in place.
    """

    blocking = True
    #: One writer at a time is all SQLite takes: an event loop's inserts are made by one
    #: long-lived thread (see :mod:`iverton_webhooks.writer`) instead of a pool.
    single_writer = True
    dialect = SQLITE
    _table = _TABLE
    _answers = "iverton_answers"
    _answers_scope = _TABLE
    _group_error = sqlite3.OperationalError

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
        #: Set by the first connection from the file's page size, unless given.
        self.wal_pages = 0 if wal_pages is None else int(wal_pages)
        # This process's writers queue on _write_lock; the one holding it then queues
        # with other processes' (gunicorn workers) on this file, woken by the kernel as
        # soon as the holder is done, instead of polling in SQLite's busy handler
        # (sleeps growing to 100 ms). It resets itself in a forked child.
        self._file_lock = FileLock(f"{os.path.abspath(self.path)}.iverton-lock")
        self._fresh_connections()
        reset_after_fork(self, SQLiteStore._fresh_connections)
        self._migrate(self._conn)
        # A write logs ~4-5 pages: a background checkpoint every twentieth of the interval's
        # writes leaves the writers' own checkpoint (the bound) little to copy.
        self._checkpointer = Checkpointer(
            self.path, every=self.wal_pages // 20, synchronous=self.synchronous
        )
        # A store dropped without close() (tests make hundreds) takes its thread along.
        weakref.finalize(self, self._checkpointer.close, 0)

    def _fresh_connections(self) -> None:
        # Also in a forked child: its threads open their own connections, and the lock
        # may have been copied while another thread of the parent held it.
        self._local = threading.local()
        # The parent's connections stay referenced: closed (or garbage-collected) in a
        # child, a connection would act on the parent's session or files.
        self._all: list[sqlite3.Connection] = getattr(self, "_all", [])
        self._all_lock = threading.Lock()
        # Reentrant: a group's inserts run through _execute inside the group's lock.
        self._write_lock = threading.RLock()
        self._fresh_group()

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    @property
    def _conn(self) -> sqlite3.Connection:
        # No pid check per statement: a forked child gets a fresh _local at the fork
        # (reset_after_fork), so it never sees its parent's connections here.
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def _connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        # Only takes effect on a file with nothing in it yet: before WAL mode writes one.
        conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise ConfigurationError(f"could not put {self.path} in WAL mode")
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        if not self.wal_pages:
            self.wal_pages = max(1, WAL_AUTOCHECKPOINT_BYTES // page_size)
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        conn.execute(f"PRAGMA wal_autocheckpoint={self.wal_pages}")
        # SQLite builds small scratch tables for RETURNING and for IN lists (the due
        # index's status list is checked on every transition); with the default
        # temp_store each one is a temporary file created and deleted per statement,
        # most of the cost of a claim or an insert. In memory they are a few hundred
        # bytes; nothing the store runs sorts or collects large result sets.
        conn.execute("PRAGMA temp_store=MEMORY")
        limit = max(JOURNAL_SIZE_LIMIT, self.wal_pages * page_size * 3 // 2)
        conn.execute(f"PRAGMA journal_size_limit={limit}")
        with self._all_lock:
            self._all.append(conn)
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Bring the file's schema to :data:`SCHEMA_VERSION`. Processes opening it at
        once take turns on the write lock, and each re-reads the version under it."""
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

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        if statement.startswith("SELECT"):
            return self._conn.execute(statement, params)  # WAL: reads never wait on writes
        # This process's writers queue on a Python lock, served as soon as it is free,
        # instead of SQLite's busy handler, which polls with sleeps growing to 100 ms
        # (the source of seconds-long acks when worker threads and requests collide).
        with self._write_lock, self._file_lock.held():
            cursor = self._conn.execute(statement, params)
        self._checkpointer.wrote()
        return cursor

    @contextmanager
    def _transaction(self) -> Iterator[object]:
        # The write lock is held from BEGIN to COMMIT: another thread's statement would
        # otherwise wait in SQLite's busy handler for this transaction to end.
        with self._write_lock, self._file_lock.held():
            self._execute("BEGIN IMMEDIATE")
            try:
                yield None
                self._execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._execute("ROLLBACK")
                raise

    def insert_row(self, row: dict[str, Any]) -> bool:
        """Group commit (:mod:`iverton_webhooks.inbox.group`): concurrent inserts of this
        process share one transaction, and none returns before the COMMIT containing
        its row has: every 2xx is still a committed insert."""
        return self._insert_grouped(row)

    def _insert_one(self, row: dict[str, Any]) -> bool:
        return super().insert_row(row)

    def _insert_together(self, rows: list[dict[str, Any]]) -> list[bool]:
        with self._transaction():
            return [super(SQLiteStore, self).insert_row(row) for row in rows]

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
        self._file_lock.close()
        self._checkpointer.close()
