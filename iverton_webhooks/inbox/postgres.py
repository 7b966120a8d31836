"""A PostgreSQL inbox (psycopg 3), shared by every process and host that reaches the server.

Every transition is one autocommitted statement, so a 2xx means the row is committed and
as durable as the server makes commits (``synchronous_commit`` on, the default: flushed
to its WAL). Dedupe rests on the primary key; "one worker at a time" on ``UPDATE ...
WHERE <claimable>``, which PostgreSQL re-checks on the latest row version when two
claims race, so exactly one of them gets the row.
"""

from __future__ import annotations

import math
import os
import re
import select
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

try:
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "PostgresStore needs psycopg 3: pip install 'iverton-webhooks[postgres]'", name="psycopg"
    ) from exc

from ..errors import ConfigurationError
from .base import Claim, HandlerOutcome, Status, StoredEvent, dump_outcomes, to_datetime

Connection = psycopg.Connection[tuple[Any, ...]]

# Plain identifiers only (optionally schema-qualified): they are quoted anyway, but a
# name that needed quoting would surprise whoever types it into psql later. The index
# name adds "_due", and PostgreSQL silently truncates names past 63 bytes.
_TABLE_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,58}\.)?[A-Za-z_][A-Za-z0-9_]{0,58}$")

# ``seq`` keeps arrival order for listing (ids are the sender's, received_at may tie).
# Indexes are paid for on every acknowledged request, so there are two: the primary key
# (dedupe) and a partial index on ``due_at`` holding only unfinished events, which stays
# small however long the history grows. Listing and pruning are rare and scan.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS {table} (
    seq bigint GENERATED ALWAYS AS IDENTITY,
    id text PRIMARY KEY,
    type text NOT NULL,
    created_at timestamptz NOT NULL,
    received_at timestamptz NOT NULL,
    body bytea NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    attempts integer NOT NULL DEFAULT 0,
    deliveries integer NOT NULL DEFAULT 1,
    due_at timestamptz,
    next_attempt_at timestamptz,
    lease_until timestamptz,
    lease_token text,
    processed_at timestamptz,
    last_error text,
    outcomes jsonb
)"""
_INDEX = (
    "CREATE INDEX IF NOT EXISTS {index} ON {table} (due_at) "
    "WHERE status IN ('pending', 'failed', 'processing')"
)

_COLUMNS = (
    "id, type, created_at, received_at, body, status, attempts, deliveries, "
    "next_attempt_at, lease_until, processed_at, last_error, outcomes"
)
# jsonb || replaces whole top-level keys: a handler's latest outcome replaces its last one.
_MERGE = "outcomes = coalesce(outcomes, '{{}}'::jsonb) || %s::jsonb"
_CLAIMED = "WHERE id = %s AND lease_token = %s"

# Every statement the store runs; ``{table}`` and ``{index}`` are filled in with quoted
# identifiers once, then the rendered bytes are reused (and auto-prepared by psycopg).
_STATEMENTS = {
    "record": (
        "INSERT INTO {table} AS e (id, type, created_at, received_at, body, due_at) "
        "VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (id) DO UPDATE SET deliveries = e.deliveries + 1 "
        # xmax is 0 on a freshly inserted row version and set on one written by the update.
        "RETURNING (xmax = 0)"
    ),
    "claim": (
        "UPDATE {table} SET status = 'processing', attempts = attempts + 1, "
        "lease_token = %s, lease_until = %s, due_at = %s "
        "WHERE id = %s AND status IN ('pending', 'failed', 'processing') AND due_at <= %s "
        f"RETURNING {_COLUMNS}"
    ),
    "checkpoint": f"UPDATE {{table}} SET {_MERGE} {_CLAIMED}",
    "complete": (
        f"UPDATE {{table}} SET status = 'done', {_MERGE}, processed_at = %s, "
        "last_error = NULL, due_at = NULL, next_attempt_at = NULL, lease_until = NULL, "
        f"lease_token = NULL {_CLAIMED}"
    ),
    "fail": (
        f"UPDATE {{table}} SET status = %s, {_MERGE}, last_error = %s, due_at = %s, "
        f"next_attempt_at = %s, lease_until = NULL, lease_token = NULL {_CLAIMED}"
    ),
    "due": (
        "SELECT id FROM {table} WHERE status IN ('pending', 'failed', 'processing') "
        "AND due_at <= %s ORDER BY due_at, id LIMIT %s"
    ),
    "get": f"SELECT {_COLUMNS} FROM {{table}} WHERE id = %s",
    "list": (
        f"SELECT {_COLUMNS} FROM {{table}} "
        "WHERE (%s::text IS NULL OR status = %s) AND (%s::text IS NULL OR type = %s) "
        "ORDER BY seq DESC LIMIT %s"
    ),
    "replay": (
        "UPDATE {table} SET status = 'pending', attempts = 0, due_at = %s, "
        "next_attempt_at = NULL WHERE id = %s AND status IN ('done', 'failed', 'dead')"
    ),
    "replay_all": (
        "UPDATE {table} SET status = 'pending', attempts = 0, due_at = %s, "
        "next_attempt_at = NULL, outcomes = NULL "
        "WHERE id = %s AND status IN ('done', 'failed', 'dead')"
    ),
    "resolve": (
        "UPDATE {table} SET status = 'done', processed_at = %s, due_at = NULL "
        "WHERE id = %s AND status IN ('failed', 'dead')"
    ),
    "prune": "DELETE FROM {table} WHERE status IN ('done', 'dead') AND received_at < %s",
    "count": "SELECT count(*) FROM {table}",
}


def _row_to_event(row: tuple[Any, ...]) -> StoredEvent:
    (id_, type_, created, received, body, status, attempts, deliveries) = row[:8]
    (next_at, lease, processed, error, outcomes) = row[8:]
    return StoredEvent(
        id=id_,
        type=type_,
        created_at=created,
        received_at=received,
        body=bytes(body),
        status=Status(status),
        attempts=attempts,
        deliveries=deliveries,
        next_attempt_at=next_at,
        lease_until=lease,
        processed_at=processed,
        last_error=error,
        outcomes={
            name: HandlerOutcome.from_json(value) for name, value in (outcomes or {}).items()
        },
    )


def _went_away(conn: Connection) -> bool:
    """True when the server closed this idle connection (restart, idle timeout).

    An idle connection has nothing to read, so a readable socket means a goodbye or
    EOF: reconnecting now beats failing the next request with a 503.
    """
    try:
        fd = conn.pgconn.socket
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            return bool(poller.poll(0))
        return bool(select.select([fd], [], [], 0)[0])  # pragma: no cover - Windows
    except (OSError, ValueError, psycopg.Error):
        return True


class PostgresStore:
    """Events in one PostgreSQL table, one autocommit connection per thread and process.

    ``url_or_conninfo``: a ``postgresql://`` URL or a libpq conninfo string. ``timeout``
    bounds connecting and every statement, so a dead or stuck server turns into an
    error quickly (the receiver answers 503 and the sender retries): keep it well under
    the sender's 5 s (libpq waits at least 2 s for a connection, whatever the timeout
    says). The table and its index are created on first use if missing;
    nothing connects before the first call, so an app can start while the server is down.
    """

    blocking = True

    def __init__(
        self,
        url_or_conninfo: str,
        *,
        table: str = "iverton_events",
        timeout: float = 2.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not _TABLE_NAME.match(table):
            raise ConfigurationError(
                f"table name {table!r} must be a plain identifier (letters, digits, '_'), "
                "optionally schema-qualified, at most 59 characters each"
            )
        if timeout <= 0:
            raise ConfigurationError("timeout must be positive")
        self.table = table
        self.timeout = timeout
        self.clock = clock
        self._params = self._connect_params(url_or_conninfo, timeout)
        self._identifier = sql.Identifier(*table.split("."))
        self._index = sql.Identifier(table.rpartition(".")[2] + "_due")
        self._sql: dict[str, bytes] = {}
        self._schema_ready = False
        self._local = threading.local()
        self._all: list[tuple[int, Connection]] = []
        self._all_lock = threading.Lock()

    def __repr__(self) -> str:
        host = self._params.get("host") or "local socket"
        return f"<PostgresStore {self._params.get('dbname', '')}.{self.table} on {host}>"

    @staticmethod
    def _connect_params(url_or_conninfo: str, timeout: float) -> dict[str, Any]:
        try:
            params: dict[str, Any] = dict(conninfo_to_dict(url_or_conninfo))
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"bad PostgreSQL URL or conninfo: {exc}") from None
        seconds, millis = max(1, math.ceil(timeout)), max(1, round(timeout * 1000))
        # What the caller's conninfo sets wins, except the time zone: rows come back as
        # UTC datetimes, like every other store's.
        params.setdefault("connect_timeout", seconds)
        # A host that vanishes mid-statement (no RST) is noticed by the kernel only when
        # unacknowledged data or keepalive probes time out.
        params.setdefault("tcp_user_timeout", millis)
        params.setdefault("keepalives_idle", seconds)
        params.setdefault("keepalives_interval", 1)
        params.setdefault("keepalives_count", 3)
        params["options"] = " ".join(
            part
            for part in (
                f"-c statement_timeout={millis}",
                params.get("options"),
                "-c TimeZone=UTC",
            )
            if part
        )
        return params

    @property
    def _conn(self) -> Connection:
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._local.pid == os.getpid():
            if not conn.closed and not _went_away(conn):
                return conn
            conn.close()  # a broken one: free its socket, then start afresh
        # After a fork the parent's connection is left alone (closing it from here would
        # end the parent's session): this process gets its own.
        conn = self._connect()
        self._local.conn, self._local.pid = conn, os.getpid()
        return conn

    def _connect(self) -> Connection:
        conn = psycopg.connect(autocommit=True, **self._params)
        try:
            if not self._sql:
                self._sql = self._render(conn)
            if not self._schema_ready:
                self._create_schema(conn)
                self._schema_ready = True
        except BaseException:
            conn.close()
            raise
        with self._all_lock:
            pid = os.getpid()
            self._all = [(p, c) for p, c in self._all if not (p == pid and c.closed)]
            self._all.append((pid, conn))
        return conn

    def _render(self, conn: Connection) -> dict[str, bytes]:
        names = {"table": self._identifier, "index": self._index}
        return {
            key: sql.SQL(text).format(**names).as_bytes(conn)
            for key, text in {**_STATEMENTS, "schema": _SCHEMA, "index": _INDEX}.items()
        }

    def _create_schema(self, conn: Connection) -> None:
        # Concurrent CREATE TABLE IF NOT EXISTS can still collide in the catalog, so the
        # processes that start together take turns.
        key = zlib.crc32(f"iverton_webhooks:{self.table}".encode())
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (key,))
            conn.execute(self._sql["schema"])
            conn.execute(self._sql["index"])

    def _run(self, key: str, params: tuple[Any, ...] = ()) -> psycopg.Cursor[tuple[Any, ...]]:
        conn = self._conn
        return conn.execute(self._sql[key], params)

    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes) -> bool:
        now = to_datetime(self.clock())
        row = self._run("record", (event_id, event_type, created_at, now, bytes(body), now))
        return bool(row.fetchone()[0])  # type: ignore[index]

    def claim(self, event_id: str, lease_seconds: float) -> Claim | None:
        now = self.clock()
        token = uuid.uuid4().hex
        until = to_datetime(now + lease_seconds)
        row = self._run("claim", (token, until, until, event_id, to_datetime(now))).fetchone()
        return None if row is None else Claim(event=_row_to_event(row), token=token)

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._claimed("checkpoint", claim, dump_outcomes(outcomes))

    def complete(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        now = to_datetime(self.clock())
        return self._claimed("complete", claim, dump_outcomes(outcomes), now)

    def fail(
        self,
        claim: Claim,
        outcomes: Mapping[str, HandlerOutcome],
        error: str,
        retry_at: float | None,
    ) -> bool:
        status = Status.DEAD if retry_at is None else Status.FAILED
        when = to_datetime(retry_at)
        return self._claimed(
            "fail", claim, status.value, dump_outcomes(outcomes), error, when, when
        )

    def _claimed(self, key: str, claim: Claim, *values: object) -> bool:
        """Run a transition that only the holder of the claim's lease may make."""
        return self._run(key, (*values, claim.event.id, claim.token)).rowcount == 1

    def due(self, limit: int = 100) -> list[str]:
        rows = self._run("due", (to_datetime(self.clock()), limit)).fetchall()
        return [row[0] for row in rows]

    def get(self, event_id: str) -> StoredEvent | None:
        row = self._run("get", (event_id,)).fetchone()
        return None if row is None else _row_to_event(row)

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
    ) -> list[StoredEvent]:
        wanted = None if status is None else Status(status).value
        rows = self._run("list", (wanted, wanted, event_type, event_type, limit)).fetchall()
        return [_row_to_event(row) for row in rows]

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        key = "replay_all" if rerun_all else "replay"
        return self._run(key, (to_datetime(self.clock()), event_id)).rowcount == 1

    def resolve(self, event_id: str) -> bool:
        return self._run("resolve", (to_datetime(self.clock()), event_id)).rowcount == 1

    def prune(self, received_before: float) -> int:
        conn = self._conn
        with conn.transaction():
            # Pruning a long history may take longer than a request-path statement may.
            conn.execute("SET LOCAL statement_timeout = '10min'")
            cursor = conn.execute(self._sql["prune"], (to_datetime(received_before),))
            return cursor.rowcount

    def count(self) -> int:
        return int(self._run("count").fetchone()[0])  # type: ignore[index]

    def close(self) -> None:
        """Close this process's connections (a forked child's copies of the parent's
        connections are left to the parent)."""
        pid = os.getpid()
        with self._all_lock:
            mine = [conn for p, conn in self._all if p == pid]
            self._all = [(p, conn) for p, conn in self._all if p != pid]
        for conn in mine:
            conn.close()
        self._local = threading.local()
