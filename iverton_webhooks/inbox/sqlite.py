"""The embedded default store: one SQLite file in WAL mode, shared by threads and processes.

Durability: with ``synchronous="NORMAL"`` (the default) a recorded event survives the
death of any process; surviving an operating-system crash or power cut as well needs
``synchronous="FULL"``, which costs an fsync per acknowledged event.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path

from ..errors import ConfigurationError
from .base import (
    Claim,
    HandlerOutcome,
    Status,
    StoredEvent,
    dump_outcomes,
    load_outcomes,
    to_datetime,
)

DEFAULT_PATH = "webhooks.sqlite3"

# ``due_at`` is the one time a worker looks at: when a pending event was received, when
# a failed one may retry, when a processing one's lease runs out. A partial index on it
# holds only unfinished events, so it stays small however large the history grows.
# Every index is paid for on each acknowledged request, so there are just two: the
# unique id and that one. Listing goes by rowid (arrival order); pruning, a rare
# maintenance job, scans.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS iverton_events (
    id TEXT NOT NULL UNIQUE,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    received_at REAL NOT NULL,
    body BLOB NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    deliveries INTEGER NOT NULL DEFAULT 1,
    due_at REAL,
    next_attempt_at REAL,
    lease_until REAL,
    lease_token TEXT,
    processed_at REAL,
    last_error TEXT,
    outcomes TEXT
);
CREATE INDEX IF NOT EXISTS iverton_events_due ON iverton_events (due_at)
    WHERE status IN ('pending', 'failed', 'processing');
"""

# Outcomes are a JSON object keyed by handler name; json_patch merges the new ones in.
_MERGE_OUTCOMES = "outcomes = json_patch(coalesce(outcomes, '{}'), ?)"

_COLUMNS = (
    "id, type, created_at, received_at, body, status, attempts, deliveries, "
    "next_attempt_at, lease_until, processed_at, last_error, outcomes"
)


def _row_to_event(row: tuple[object, ...]) -> StoredEvent:
    (id_, type_, created, received, body, status, attempts, deliveries) = row[:8]
    (next_at, lease, processed, error, outcomes) = row[8:]
    return StoredEvent(
        id=str(id_),
        type=str(type_),
        created_at=to_datetime(float(created)),  # type: ignore[arg-type]
        received_at=to_datetime(float(received)),  # type: ignore[arg-type]
        body=bytes(body),  # type: ignore[call-overload]
        status=Status(status),
        attempts=int(attempts),  # type: ignore[call-overload]
        deliveries=int(deliveries),  # type: ignore[call-overload]
        next_attempt_at=to_datetime(next_at),  # type: ignore[arg-type]
        lease_until=to_datetime(lease),  # type: ignore[arg-type]
        processed_at=to_datetime(processed),  # type: ignore[arg-type]
        last_error=error,  # type: ignore[arg-type]
        outcomes=load_outcomes(outcomes),  # type: ignore[arg-type]
    )


class SQLiteStore:
    """Events in a SQLite file, one connection per thread (and per process after a fork).

    ``timeout`` is how long a write waits for another writer's lock before giving up;
    the receiver then answers 503 and the sender retries, so keep it well under 5 s.
    """

    blocking = True

    def __init__(
        self,
        path: str | os.PathLike[str] = DEFAULT_PATH,
        *,
        timeout: float = 2.0,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
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
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._all_lock = threading.Lock()
        with self._connect() as conn:
            conn.executescript(_SCHEMA)

    def __repr__(self) -> str:
        return f"<SQLiteStore {self.path!r}>"

    @property
    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None or self._local.pid != os.getpid():
            conn = self._connect()
            self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _connect(self) -> sqlite3.Connection:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False
        )
        if conn.execute("PRAGMA journal_mode=WAL").fetchone()[0] != "wal":
            raise ConfigurationError(f"could not put {self.path} in WAL mode")
        conn.execute(f"PRAGMA synchronous={self.synchronous}")
        # Checkpoint less often than the default 1,000 pages: each checkpoint copies the
        # hot index pages back into the database, and fewer, larger ones copy each page
        # once instead of many times. The WAL file may grow to about 40 MB.
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        with self._all_lock:
            self._all.append(conn)
        return conn

    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes) -> bool:
        now = self.clock()
        conn = self._conn
        inserted = conn.execute(
            "INSERT OR IGNORE INTO iverton_events "
            "(id, type, created_at, received_at, body, due_at) VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, event_type, created_at.timestamp(), now, bytes(body), now),
        ).rowcount
        if inserted:
            return True
        conn.execute(
            "UPDATE iverton_events SET deliveries = deliveries + 1 WHERE id = ?", (event_id,)
        )
        return False

    def claim(self, event_id: str, lease_seconds: float) -> Claim | None:
        now = self.clock()
        token = uuid.uuid4().hex
        row = self._conn.execute(
            "UPDATE iverton_events SET status = 'processing', attempts = attempts + 1, "
            "lease_token = ?, lease_until = ?, due_at = ? "
            "WHERE id = ? AND status IN ('pending', 'failed', 'processing') AND due_at <= ? "
            f"RETURNING {_COLUMNS}",
            (token, now + lease_seconds, now + lease_seconds, event_id, now),
        ).fetchone()
        return None if row is None else Claim(event=_row_to_event(row), token=token)

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._update_claimed(claim, _MERGE_OUTCOMES, (dump_outcomes(outcomes),))

    def complete(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._update_claimed(
            claim,
            f"status = 'done', {_MERGE_OUTCOMES}, processed_at = ?, last_error = NULL, "
            "due_at = NULL, next_attempt_at = NULL, lease_until = NULL, lease_token = NULL",
            (dump_outcomes(outcomes), self.clock()),
        )

    def fail(
        self,
        claim: Claim,
        outcomes: Mapping[str, HandlerOutcome],
        error: str,
        retry_at: float | None,
    ) -> bool:
        status = Status.DEAD if retry_at is None else Status.FAILED
        return self._update_claimed(
            claim,
            f"status = ?, {_MERGE_OUTCOMES}, last_error = ?, due_at = ?, next_attempt_at = ?, "
            "lease_until = NULL, lease_token = NULL",
            (status.value, dump_outcomes(outcomes), error, retry_at, retry_at),
        )

    def _update_claimed(self, claim: Claim, assignments: str, values: tuple[object, ...]) -> bool:
        cursor = self._conn.execute(
            f"UPDATE iverton_events SET {assignments} WHERE id = ? AND lease_token = ?",
            (*values, claim.event.id, claim.token),
        )
        return cursor.rowcount == 1

    def due(self, limit: int = 100) -> list[str]:
        rows = self._conn.execute(
            "SELECT id FROM iverton_events "
            "WHERE status IN ('pending', 'failed', 'processing') AND due_at <= ? "
            "ORDER BY due_at LIMIT ?",
            (self.clock(), limit),
        ).fetchall()
        return [row[0] for row in rows]

    def get(self, event_id: str) -> StoredEvent | None:
        row = self._conn.execute(
            f"SELECT {_COLUMNS} FROM iverton_events WHERE id = ?", (event_id,)
        ).fetchone()
        return None if row is None else _row_to_event(row)

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        wanted = None if status is None else Status(status).value
        rows = self._conn.execute(
            f"SELECT {_COLUMNS} FROM iverton_events "
            "WHERE (? IS NULL OR status = ?) AND (? IS NULL OR type = ?) "
            "ORDER BY rowid DESC LIMIT ?",
            (wanted, wanted, event_type, event_type, limit),
        ).fetchall()
        return [_row_to_event(row) for row in rows]

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        reset = ", outcomes = NULL" if rerun_all else ""
        cursor = self._conn.execute(
            "UPDATE iverton_events SET status = 'pending', attempts = 0, due_at = ?, "
            f"next_attempt_at = NULL{reset} "
            "WHERE id = ? AND status IN ('done', 'failed', 'dead')",
            (self.clock(), event_id),
        )
        return cursor.rowcount == 1

    def resolve(self, event_id: str) -> bool:
        cursor = self._conn.execute(
            "UPDATE iverton_events SET status = 'done', processed_at = ?, due_at = NULL "
            "WHERE id = ? AND status IN ('failed', 'dead')",
            (self.clock(), event_id),
        )
        return cursor.rowcount == 1

    def prune(self, received_before: float) -> int:
        cursor = self._conn.execute(
            "DELETE FROM iverton_events WHERE status IN ('done', 'dead') AND received_at < ?",
            (received_before,),
        )
        return cursor.rowcount

    def count(self) -> int:
        return int(self._conn.execute("SELECT count(*) FROM iverton_events").fetchone()[0])

    def close(self) -> None:
        with self._all_lock:
            for conn in self._all:
                conn.close()
            self._all.clear()
        self._local = threading.local()
