"""A PostgreSQL inbox (psycopg 3), shared by every process and host that reaches the server.

Every transition is one autocommitted statement, so a 2xx means the row is committed and
as durable as the server makes commits (``synchronous_commit`` on, the default: flushed
to its WAL). Dedupe rests on the primary key ``(endpoint, id)``; "one worker at a time"
on ``UPDATE ... WHERE <claimable>``, which PostgreSQL re-checks on the latest row
version when two claims race, so exactly one of them gets the row.

The queries and connection bookkeeping live in `sql`; this module connects, and holds
the schema and its migrations (versions are kept in a small table, ``iverton_schema``,
next to the events).
"""

from __future__ import annotations

import math
import re
import select
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import unquote

try:
    import psycopg
    from psycopg.conninfo import conninfo_to_dict
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "PostgresStore needs psycopg 3: pip install 'iverton-webhooks[postgres]'", name="psycopg"
    ) from exc

from .._errors import ConfigurationError
from .base import CLAIMABLE, pop_query, store_edge
from .sql import POSTGRES, Execute, SQLStore, status_list

Connection = psycopg.Connection[tuple[Any, ...]]

# Plain identifiers only (optionally schema-qualified): they are quoted anyway, but a
# name that needed quoting would surprise whoever types it into psql later. The index
# name adds "_due", and PostgreSQL silently truncates names past 63 bytes.
_TABLE_NAME = re.compile(r"^(?:[A-Za-z_][A-Za-z0-9_]{0,58}\.)?[A-Za-z_][A-Za-z0-9_]{0,58}$")

#: Where each events table's schema version is kept: one row per table, in its schema.
VERSION_TABLE = "iverton_schema"
#: Where failed answers in a row are counted, per events table and endpoint.
ANSWERS_TABLE = "iverton_answers"
#: Where newest-only handlers' resource marks are kept, per events table.
MARKS_TABLE = "iverton_marks"
#: Where endpoints kept in the store are registered, per events table.
ENDPOINTS_TABLE = "iverton_endpoints"

# Forward migrations: version -> statements ({table}, {index} and {index_name} filled in
# with quoted names), each version in one transaction at open. The indexes are
# SQLite's two (see `sqlite.MIGRATIONS`): the primary key and a partial one on
# ``due_at``. ``seq`` keeps arrival order for listing (ids are the sender's,
# received_at may tie).
MIGRATIONS: dict[int, tuple[str, ...]] = {
    # The first schema: keyed by id alone (its tables have no version row).
    1: (
        "CREATE TABLE IF NOT EXISTS {table} (seq bigint GENERATED ALWAYS AS IDENTITY, "
        "id text PRIMARY KEY, type text NOT NULL, created_at timestamptz NOT NULL, "
        "received_at timestamptz NOT NULL, body bytea NOT NULL, "
        "status text NOT NULL DEFAULT 'pending', attempts integer NOT NULL DEFAULT 0, "
        "deliveries integer NOT NULL DEFAULT 1, due_at timestamptz, "
        "next_attempt_at timestamptz, lease_until timestamptz, lease_token text, "
        "processed_at timestamptz, last_error text, outcomes jsonb)",
        "CREATE INDEX IF NOT EXISTS {index_name} ON {table} (due_at) "
        f"WHERE status IN {status_list(CLAIMABLE)}",
    ),
    # Endpoints: keyed by (endpoint, id); existing events belong to "default".
    2: (
        "ALTER TABLE {table} ADD COLUMN endpoint text NOT NULL DEFAULT 'default'",
        "ALTER TABLE {table} DROP CONSTRAINT {pkey}",
        "ALTER TABLE {table} ADD PRIMARY KEY (endpoint, id)",
        "DROP INDEX IF EXISTS {index}",
        "CREATE INDEX {index_name} ON {table} (endpoint, due_at) "
        f"WHERE status IN {status_list(CLAIMABLE)}",
    ),
    # Failed answers in a row per endpoint, for the disablement warning: one table per
    # schema, shared by its events tables (keyed by their names).
    3: (
        "CREATE TABLE IF NOT EXISTS {answers} (scope text NOT NULL, endpoint text NOT NULL, "
        "failures integer NOT NULL DEFAULT 0, kind text, updated_at timestamptz, "
        "PRIMARY KEY (scope, endpoint))",
    ),
    # Resource marks for newest-only handlers: the newest event applied per endpoint,
    # resource and handler, and who holds the mark until when (epoch seconds, compared
    # with the store's clock only). Shared per schema like {answers}.
    4: (
        "CREATE TABLE IF NOT EXISTS {marks} (scope text NOT NULL, endpoint text NOT NULL, "
        "resource text NOT NULL, handler text NOT NULL, applied_at double precision, "
        "applied_id text, holder text, hold_until double precision, "
        "PRIMARY KEY (scope, endpoint, resource, handler))",
    ),
    # Endpoints kept in the store: their secrets (JSON text, see base.dump_secrets),
    # whether they take requests, and when they were created and changed (epoch
    # seconds on the store's clock). Shared per schema like {answers}.
    5: (
        "CREATE TABLE IF NOT EXISTS {endpoints} (scope text NOT NULL, name text NOT NULL, "
        "secrets text NOT NULL, enabled boolean NOT NULL DEFAULT true, "
        "created_at double precision NOT NULL, updated_at double precision NOT NULL, "
        "PRIMARY KEY (scope, name))",
    ),
}
SCHEMA_VERSION = max(MIGRATIONS)
# One lock for every table's migrations: they are rare, and the version table they all
# create on first use must not be created twice at once either.
_MIGRATION_LOCK = zlib.crc32(b"iverton_webhooks:schema")


def _quote(*parts: str) -> str:
    # The names matched _TABLE_NAME (letters, digits, "_"), so quoting cannot be escaped.
    return ".".join(f'"{part}"' for part in parts)


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


@store_edge(psycopg.Error)
class PostgresStore(SQLStore[Connection]):
    """Events in one PostgreSQL table, one autocommit connection per thread and process.

    ``url_or_conninfo``: a ``postgresql://`` URL or a libpq conninfo string. ``timeout``
    bounds connecting and every statement, so a dead or stuck server turns into an
    error quickly (the receiver answers 503 and the sender retries): keep it well under
    the sender's 5 s (libpq waits at least 2 s for a connection, whatever the timeout
    says). The table and its index are created, or upgraded from an older version, on
    first use; nothing connects before the first call, so an app can start while the
    server is down.
    """

    dialect = POSTGRES

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
        schema, _, name = table.rpartition(".")
        self._schema, self._name = schema, name
        self._table = _quote(*table.split("."))
        self._answers = _quote(*filter(None, (schema, ANSWERS_TABLE)))
        self._answers_scope = name
        self._marks = _quote(*filter(None, (schema, MARKS_TABLE)))
        self._registry = _quote(*filter(None, (schema, ENDPOINTS_TABLE)))
        self._schema_ready = False
        self._processes = {}

    def __repr__(self) -> str:
        host = self._params.get("host") or "local socket"
        return f"<PostgresStore {self._params.get('dbname', '')}.{self.table} on {host}>"

    @classmethod
    def from_url(cls, url: str) -> PostgresStore:
        """``postgresql://user@host/db`` (or ``postgres://``); ``?table=name`` picks the
        table, every other parameter goes to libpq as written."""
        dsn, table = pop_query(url, "table")
        return cls(dsn) if table is None else cls(dsn, table=table)

    @classmethod
    def missing_inbox(cls, url: str) -> str | None:
        dsn, table = pop_query(url, "table")
        table = table or "iverton_events"
        try:
            with psycopg.connect(dsn, connect_timeout=5) as conn:
                row = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
        except psycopg.Error as error:
            return f"cannot reach the PostgreSQL inbox: {str(error).strip()}"
        if row is None or row[0] is None:
            database = unquote(dsn.rpartition("/")[2].partition("?")[0]) or "the database"
            return f"no table {table} in {database}: no inbox there (check --store)"
        return None

    @staticmethod
    def _connect_params(url_or_conninfo: str, timeout: float) -> dict[str, Any]:
        try:
            params: dict[str, Any] = dict(conninfo_to_dict(url_or_conninfo))
        except psycopg.ProgrammingError as exc:
            raise ConfigurationError(f"bad PostgreSQL URL or conninfo: {exc}") from None
        seconds, millis = max(1, math.ceil(timeout)), max(1, round(timeout * 1000))
        # What the caller's conninfo sets wins, except the time zone (the session's
        # time zone is UTC, for whoever reads the table with psql).
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

    def _usable(self, conn: Connection) -> bool:
        return not conn.closed and not _went_away(conn)

    def _connect(self) -> Connection:
        conn = psycopg.connect(autocommit=True, **self._params)
        try:
            if not self._schema_ready:
                self._migrate(conn)
                self._schema_ready = True
        except BaseException:
            conn.close()
            raise
        return conn

    def _names(self, conn: Connection) -> dict[str, str]:
        index_name = f"{self._name}_due"
        pkey = conn.execute(
            "SELECT conname FROM pg_constraint WHERE contype = 'p' AND conrelid = to_regclass(%s)",
            (self._table,),
        ).fetchone()
        return {
            "table": self._table,
            "index_name": _quote(index_name),
            "index": _quote(*filter(None, (self._schema, index_name))),
            "pkey": _quote(pkey[0]) if pkey else '"-"',
            "answers": self._answers,
            "marks": self._marks,
            "endpoints": self._registry,
        }

    def _migrate(self, conn: Connection) -> None:
        """Bring the table to `SCHEMA_VERSION`, one transaction per version.
        Concurrent opens take turns on an advisory lock and re-read the version under it
        (concurrent ``CREATE ... IF NOT EXISTS`` can still collide in the catalog)."""
        versions = _quote(*filter(None, (self._schema, VERSION_TABLE)))
        while True:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
                # A big table takes a while to rebuild its key: not a request's timeout.
                conn.execute("SET LOCAL statement_timeout = 0")
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {versions} "
                    "(table_name text PRIMARY KEY, version integer NOT NULL)"
                )
                # A dropped events table starts again from nothing, whatever was noted.
                row = conn.execute(
                    f"SELECT version FROM {versions} "
                    "WHERE table_name = %s AND to_regclass(%s) IS NOT NULL",
                    (self._name, self._table),
                ).fetchone()
                current = row[0] if row else 0
                if current >= SCHEMA_VERSION:
                    return
                version = current + 1
                names = self._names(conn)
                for statement in MIGRATIONS[version]:
                    conn.execute(statement.format(**names))
                conn.execute(
                    f"INSERT INTO {versions} (table_name, version) VALUES (%s, %s) "
                    "ON CONFLICT (table_name) DO UPDATE SET version = excluded.version",
                    (self._name, version),
                )

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        return self._conn.execute(statement, params)

    @contextmanager
    def _transaction(self) -> Iterator[Execute]:
        conn = self._conn
        with conn.transaction():
            yield lambda statement, params: conn.execute(statement, params)

    def _execute_long(self, statement: str, params: Sequence[Any] = ()) -> psycopg.Cursor[Any]:
        conn = self._conn
        with conn.transaction():
            # Pruning a long history may take longer than a request-path statement may.
            conn.execute("SET LOCAL statement_timeout = '10min'")
            return conn.execute(statement, params)
