"""The inbox in SQL, written once for SQLite and PostgreSQL.

`SQLStore` holds every store method and each process's connections; the two stores
differ only in a `Dialect` (placeholder style, how times go in and come out, how
outcomes are merged, which column keeps arrival order) and in how they connect and run
a statement, which each store file implements.

Every transition's columns come from the field writers in `base`, and every
status list from its sets: a new column or status changes no SQL here.
"""

from __future__ import annotations

import builtins
import functools
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from . import base
from .base import (
    DEFAULT_ENDPOINT,
    Claim,
    EndpointRecord,
    EndpointSecret,
    HandlerOutcome,
    MarkAnswer,
    MarkKey,
    Status,
    StoredEvent,
    load_text,
    store_text,
)

# Names split from one string: a column per line would read as a copy of every store's.
_TIMES = "created_at received_at due_at next_attempt_at lease_until processed_at"
_READ = (
    "endpoint id type created_at received_at body status attempts deliveries "
    "next_attempt_at lease_until processed_at last_error outcomes"
)
#: Columns holding a time; the stores keep them as epoch seconds (SQLite ``REAL``) or
#: ``timestamptz`` (PostgreSQL), and every query reads them back as epoch seconds.
TIME_COLUMNS = frozenset(_TIMES.split())
#: What `read_row` needs, in the order every query selects it.
READ_COLUMNS = tuple(_READ.split())


def status_list(statuses: frozenset[Status]) -> str:
    """``('a', 'b')`` for an SQL ``IN``: literals, so the planner can match the partial
    due index, whose predicate is written with the same function."""
    return "(" + ", ".join(f"'{name}'" for name in base.values(statuses)) + ")"


@dataclass(frozen=True)
class Dialect:
    """What differs between the SQL databases the inbox runs on."""

    #: The driver's parameter placeholder.
    param: str
    #: An SQL expression turning one epoch-seconds parameter into a stored time.
    time_param: str
    #: An SQL expression reading a stored time column ``{0}`` as epoch seconds.
    time_column: str
    #: The assignment merging one JSON-object parameter into ``outcomes``.
    merge_outcomes: str
    #: The column that keeps arrival order, for listing newest first.
    arrival: str
    #: What ends a SELECT inside `SQLStore._transaction` so that the rows it reads
    #: stay this transaction's until it ends (nothing where the transaction already
    #: holds the whole database's write lock).
    lock_rows: str = ""


SQLITE = Dialect(
    param="?",
    time_param="?",
    time_column="{0}",
    merge_outcomes="outcomes = json_patch(coalesce(outcomes, '{}'), ?)",
    arrival="rowid",
)

# Times come back through extract(epoch ...) so the driver never has to build a
# datetime: a stored time outside Python's range then makes one unreadable event
# (see read_row) instead of an exception that blocks every listing and claim.
POSTGRES = Dialect(
    param="%s",
    time_param="to_timestamp(%s)",
    time_column="extract(epoch from {0})",
    # jsonb || replaces whole top-level keys: a handler's latest outcome replaces its last.
    merge_outcomes="outcomes = coalesce(outcomes, '{}'::jsonb) || %s::jsonb",
    arrival="seq",
    lock_rows=" FOR UPDATE",
)


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3 and psycopg both fit)."""

    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


class Connection(Protocol):
    """What `SQLStore` does itself with a connection (sqlite3's and psycopg's fit)."""

    def close(self) -> None: ...


_Conn = TypeVar("_Conn", bound=Connection)


class _Process(Generic[_Conn]):
    """What one process holds of a store: its threads' connections and its write lock.

    A forked child must not use (or close) a connection its parent opened: the session,
    or SQLite's locks and file state, are the parent's. So a store keeps one of these per
    process id, found where a connection is used, as connection pools check the pid at
    checkout; a parent's stays referenced in the child, so the child never closes (nor
    lets the garbage collector close) the parent's connections.
    """

    def __init__(self) -> None:
        self.local = threading.local()
        # Every connection this process opened, for close().
        self.connections: list[_Conn] = []
        self.lock = threading.Lock()
        # SQLite: this process's writers take turns here instead of all waiting in
        # SQLite's busy handler, which polls with sleeps growing to 100 ms.
        self.write_lock = threading.Lock()


#: Runs one statement inside `SQLStore._transaction`.
Execute = Callable[[str, Sequence[Any]], Cursor]
#: The columns of a registered endpoint, in the order `base.read_endpoint` takes them.
_ENDPOINT_COLUMNS = "name, secrets, enabled, created_at, updated_at"

_CLAIMABLE = status_list(base.CLAIMABLE)
_FINISHED = status_list(base.FINISHED)
_REPLAYABLE = status_list(base.REPLAYABLE)
_RESOLVABLE = status_list(base.RESOLVABLE)


@functools.cache
def _insert(table: str, names: tuple[str, ...], marks: tuple[str, ...]) -> str:
    """The insert of a new event (DO NOTHING and the row count: one autocommitted
    statement), built once per table and shape: every receive runs it, and building it
    each time shows in ``python -m benchmarks.core --only receive``."""
    return (
        f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join(marks)}) "
        "ON CONFLICT (endpoint, id) DO NOTHING"
    )


class SQLStore(base.RecordsRows, base.ClaimedWrites, Generic[_Conn]):
    """Every `Store` method over one SQL table, one connection per thread of each
    process. A subclass sets ``dialect`` and ``_table`` (the quoted table name) and
    implements `_connect`, `_execute` and `_transaction`."""

    blocking = True
    dialect: Dialect
    _table: str
    #: The (quoted) table of failed answers in a row, shared by every events table of
    #: a database and keyed by ``_answers_scope`` (the events table's name) and endpoint.
    _answers: str
    _answers_scope: str
    #: The (quoted) table of resource marks, shared like ``_answers`` and keyed by the
    #: same scope.
    _marks: str
    #: The (quoted) table of registered endpoints, shared and keyed like ``_marks``.
    _registry: str
    clock: Callable[[], float]
    #: By process id (see `_Process`).
    _processes: dict[int, _Process[_Conn]]

    def _connect(self) -> _Conn:
        """A new connection, ready for `_execute`."""
        raise NotImplementedError

    def _usable(self, conn: _Conn) -> bool:
        """Whether this thread's connection can still be used (else it is replaced)."""
        return True

    def _process(self) -> _Process[_Conn]:
        pid = os.getpid()
        found = self._processes.get(pid)
        if found is None:
            # setdefault: two threads of a new process starting at once get one entry.
            found = self._processes.setdefault(pid, _Process())
        return found

    @property
    def _conn(self) -> _Conn:
        """This thread's connection in this process, opened at its first use."""
        process = self._process()
        conn: _Conn | None = getattr(process.local, "conn", None)
        if conn is not None:
            if self._usable(conn):
                return conn
            conn.close()  # a broken one: free its socket, then start afresh
            with process.lock:
                process.connections = [c for c in process.connections if c is not conn]
        conn = process.local.conn = self._connect()
        with process.lock:
            process.connections.append(conn)
        return conn

    def close(self) -> None:
        """Close this process's connections (a forked child leaves its parent's alone)."""
        process = self._processes.pop(os.getpid(), None)
        if process is None:
            return
        with process.lock:
            for conn in process.connections:
                conn.close()
            process.connections.clear()

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> Cursor:
        """Run one autocommitted statement on this thread's connection."""
        raise NotImplementedError

    def _transaction(self) -> AbstractContextManager[Execute]:
        """One transaction on this thread's connection, for a read-modify-write: the
        block gets a function that runs a statement in it; the transaction commits when
        the block ends and rolls back if it raises. A row read with the dialect's
        ``lock_rows`` stays the transaction's until it ends."""
        raise NotImplementedError

    def _execute_long(self, statement: str, params: Sequence[Any] = ()) -> Cursor:
        """Like `_execute`, for maintenance that may outlast a request's timeout."""
        return self._execute(statement, params)

    # -- building statements ---------------------------------------------------------

    @property
    def _select(self) -> str:
        return ", ".join(
            f"{self.dialect.time_column.format(name)} AS {name}" if name in TIME_COLUMNS else name
            for name in READ_COLUMNS
        )

    def _bind(self, fields: Mapping[str, Any]) -> tuple[list[str], list[Any]]:
        """A placeholder for each of ``fields`` and the values bound. A None is written
        into the statement as ``NULL`` instead of bound: Python's sqlite3 binds a None
        only after a failed attribute lookup."""
        marks: list[str] = []
        params: list[Any] = []
        for name, value in fields.items():
            if value is None:
                marks.append("NULL")
            else:
                timed = name in TIME_COLUMNS
                marks.append(self.dialect.time_param if timed else self.dialect.param)
                params.append(value)
        return marks, params

    def _assign(self, fields: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """``col = ?, ...`` for a transition's fields, and the values bound, in order."""
        marks, params = self._bind(fields)
        return ", ".join(f"{n} = {m}" for n, m in zip(fields, marks, strict=True)), params

    def _where(self, conditions: Mapping[str, str | None]) -> tuple[str, list[Any]]:
        """``WHERE a = ? AND ...`` for the text conditions whose value is not None."""
        used = {name: store_text(value) for name, value in conditions.items() if value is not None}
        if not used:
            return "", []
        p = self.dialect.param
        return "WHERE " + " AND ".join(f"{name} = {p}" for name in used), list(used.values())

    def _rows(self, cursor: Cursor) -> list[StoredEvent]:
        return [
            base.read_row(dict(zip(READ_COLUMNS, row, strict=True))) for row in cursor.fetchall()
        ]

    # -- the protocol ----------------------------------------------------------------

    def insert_row(self, row: dict[str, Any], resource_id: str | None) -> bool:
        marks, params = self._bind(row)
        if self._execute(_insert(self._table, tuple(row), tuple(marks)), params).rowcount == 1:
            return True
        p = self.dialect.param
        self._execute(
            f"UPDATE {self._table} SET deliveries = deliveries + 1 "
            f"WHERE endpoint = {p} AND id = {p}",
            [row["endpoint"], row["id"]],  # as new_row stored them
        )
        return False

    def claim(
        self, event_id: str, lease_seconds: float, *, endpoint: str = DEFAULT_ENDPOINT
    ) -> Claim | None:
        now, token = self.clock(), base.new_token()
        sets, params = self._assign(base.claim_fields(now, lease_seconds, token))
        where, key = self._where({"endpoint": endpoint, "id": event_id})
        claimed = self._rows(
            self._execute(
                f"UPDATE {self._table} SET {sets}, attempts = attempts + 1 {where} "
                f"AND status IN {_CLAIMABLE} AND due_at <= {self.dialect.time_param} "
                f"RETURNING {self._select}",
                [*params, *key, now],
            )
        )
        return Claim(claimed[0], token) if claimed else None

    def _claimed(
        self, claim: Claim, fields: Mapping[str, Any], outcomes: Mapping[str, HandlerOutcome]
    ) -> bool:
        sets, params = self._assign(fields)
        parts = [sets] if fields else []
        # No outcomes, no merge: a row whose stored outcomes cannot be parsed (the
        # reason it is being quarantined) can still be finished.
        if outcomes:
            parts.append(self.dialect.merge_outcomes)
            params.append(base.dump_outcomes(outcomes))
        where, key = self._where({"endpoint": claim.event.endpoint, "id": claim.event.id})
        cursor = self._execute(
            # Nothing to write: just check the lease.
            f"UPDATE {self._table} SET {', '.join(parts) or 'lease_token = lease_token'} "
            f"{where} AND lease_token = {self.dialect.param}",
            [*params, *key, claim.token],
        )
        return cursor.rowcount == 1

    def _due(self, endpoint: str) -> tuple[str, list[Any]]:
        """``WHERE`` for the events of ``endpoint`` a worker may claim now, and its values."""
        p, t = self.dialect.param, self.dialect.time_param
        where = f"WHERE endpoint = {p} AND status IN {_CLAIMABLE} AND due_at <= {t}"
        return where, [store_text(endpoint), self.clock()]

    def due(self, limit: int = 100, *, endpoint: str = DEFAULT_ENDPOINT) -> list[str]:
        where, params = self._due(endpoint)
        cursor = self._execute(
            f"SELECT id FROM {self._table} {where} ORDER BY due_at, id LIMIT {self.dialect.param}",
            [*params, limit],
        )
        return [load_text(str(row[0])) for row in cursor.fetchall()]

    def get(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> StoredEvent | None:
        where, params = self._where({"endpoint": endpoint, "id": event_id})
        found = self._rows(
            self._execute(f"SELECT {self._select} FROM {self._table} {where}", params)
        )
        return found[0] if found else None

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
        *,
        endpoint: str | None = DEFAULT_ENDPOINT,
    ) -> list[StoredEvent]:
        wanted = None if status is None else Status(status).value
        where, params = self._where({"endpoint": endpoint, "status": wanted, "type": event_type})
        cursor = self._execute(
            f"SELECT {self._select} FROM {self._table} {where} "
            f"ORDER BY {self.dialect.arrival} DESC LIMIT {self.dialect.param}",
            [*params, limit],
        )
        return self._rows(cursor)

    def _transition(
        self, event_id: str, endpoint: str, allowed: str, fields: Mapping[str, Any]
    ) -> bool:
        sets, params = self._assign(fields)
        where, key = self._where({"endpoint": endpoint, "id": event_id})
        cursor = self._execute(
            f"UPDATE {self._table} SET {sets} {where} AND status IN {allowed}", [*params, *key]
        )
        return cursor.rowcount == 1

    def replay(
        self, event_id: str, *, rerun_all: bool = False, endpoint: str = DEFAULT_ENDPOINT
    ) -> bool:
        fields = base.replay_fields(self.clock())
        if rerun_all:
            fields["outcomes"] = None
        return self._transition(event_id, endpoint, _REPLAYABLE, fields)

    def resolve(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> bool:
        return self._transition(event_id, endpoint, _RESOLVABLE, base.resolve_fields(self.clock()))

    def prune(self, received_before: float, *, endpoint: str | None = None) -> int:
        where, params = self._where({"endpoint": endpoint})
        where = f"{where} AND" if where else "WHERE"
        cursor = self._execute_long(
            f"DELETE FROM {self._table} {where} status IN {_FINISHED} "
            f"AND received_at < {self.dialect.time_param}",
            [*params, received_before],
        )
        return cursor.rowcount

    def stats(self, *, endpoint: str | None = DEFAULT_ENDPOINT) -> dict[Status, int]:
        where, params = self._where({"endpoint": endpoint})
        cursor = self._execute(
            f"SELECT status, count(*) FROM {self._table} {where} GROUP BY status", params
        )
        counts: dict[Status, int] = {}
        for name, number in cursor.fetchall():
            try:
                status = Status(name)
            except ValueError:
                # A status this version does not know is counted as quarantined, as
                # read_row shows such a row.
                status = Status.QUARANTINED
            counts[status] = counts.get(status, 0) + int(number)
        return counts

    def oldest_due(self, *, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
        where, params = self._due(endpoint)
        oldest = self.dialect.time_column.format("min(due_at)")
        cursor = self._execute(f"SELECT {oldest} FROM {self._table} {where}", params)
        found = cursor.fetchone()[0]
        return None if found is None else float(found)

    def note_failure(self, endpoint: str, kind: str) -> int:
        p, t = self.dialect.param, self.dialect.time_param
        cursor = self._execute(
            f"INSERT INTO {self._answers} AS a (scope, endpoint, failures, kind, updated_at) "
            f"VALUES ({p}, {p}, 1, {p}, {t}) ON CONFLICT (scope, endpoint) DO UPDATE SET "
            "failures = a.failures + 1, kind = excluded.kind, updated_at = excluded.updated_at "
            "RETURNING failures",
            [self._answers_scope, store_text(endpoint), store_text(kind), self.clock()],
        )
        return int(cursor.fetchone()[0])

    def clear_failures(self, endpoint: str) -> None:
        key, params = self._where({"scope": self._answers_scope, "endpoint": endpoint})
        # Read first: an UPDATE would take the write lock even with nothing to change.
        row = self._execute(f"SELECT failures FROM {self._answers} {key}", params).fetchone()
        if row is not None and row[0]:
            self._execute(f"UPDATE {self._answers} SET failures = 0 {key}", params)

    def count(self, *, endpoint: str | None = None) -> int:
        where, params = self._where({"endpoint": endpoint})
        cursor = self._execute(f"SELECT count(*) FROM {self._table} {where}", params)
        return int(cursor.fetchone()[0])

    # -- ResourceMarks (see base.ResourceMarks for the semantics) ----------------------

    def _mark(self, key: MarkKey) -> tuple[str, builtins.list[Any]]:
        """``WHERE`` for one mark, and its values."""
        return self._where({"scope": self._answers_scope, **key._asdict()})

    def take_mark(
        self, key: MarkKey, created_at: float, event_id: str, holder: str, hold_seconds: float
    ) -> MarkAnswer:
        p, now, stored_id = self.dialect.param, self.clock(), store_text(event_id)
        holder = store_text(holder)
        where, params = self._mark(key)
        # Taking is the one atomic statement; telling SUPERSEDED from BUSY after it
        # fails is a read, which is safe because the applied event only moves forward.
        taken = self._execute(
            f"INSERT INTO {self._marks} AS m (scope, endpoint, resource, handler, holder, "
            f"hold_until) VALUES ({p}, {p}, {p}, {p}, {p}, {p}) "
            "ON CONFLICT (scope, endpoint, resource, handler) DO UPDATE SET "
            "holder = excluded.holder, hold_until = excluded.hold_until "
            f"WHERE (m.applied_id IS NULL OR (m.applied_id <> {p} AND m.applied_at <= {p})) "
            f"AND (m.holder IS NULL OR m.holder = {p} OR m.hold_until <= {p}) "
            "RETURNING holder",
            [*params, holder, now + hold_seconds, stored_id, created_at, holder, now],
        ).fetchall()
        if taken:
            return MarkAnswer.RUN
        row = self._execute(
            f"SELECT applied_at, applied_id FROM {self._marks} {where}", params
        ).fetchone()
        if row is not None and row[1] is not None and (row[1] == stored_id or row[0] > created_at):
            return MarkAnswer.SUPERSEDED
        return MarkAnswer.BUSY

    def renew_mark(self, key: MarkKey, holder: str, hold_seconds: float) -> bool:
        p, (where, params) = self.dialect.param, self._mark(key)
        cursor = self._execute(
            f"UPDATE {self._marks} SET hold_until = {p} {where} AND holder = {p}",
            [self.clock() + hold_seconds, *params, store_text(holder)],
        )
        return cursor.rowcount == 1

    def release_mark(self, key: MarkKey, holder: str, applied: tuple[float, str] | None) -> None:
        p, (where, params) = self.dialect.param, self._mark(key)
        # Every SET expression reads the row as it was, so "held by holder" and "older
        # than the applied event" are judged once, before anything changes.
        mine = f"holder = {p}"
        release = (
            f"holder = CASE WHEN {mine} THEN NULL ELSE holder END, "
            f"hold_until = CASE WHEN {mine} THEN NULL ELSE hold_until END"
        )
        stored_holder = store_text(holder)
        if applied is None:
            self._execute(
                f"UPDATE {self._marks} SET {release} {where}",
                [stored_holder, stored_holder, *params],
            )
            return
        at, stored_id = applied[0], store_text(applied[1])
        newer = f"(applied_at IS NULL OR applied_at <= {p})"
        self._execute(
            f"UPDATE {self._marks} SET "
            f"applied_at = CASE WHEN {newer} THEN {p} ELSE applied_at END, "
            f"applied_id = CASE WHEN {newer} THEN {p} ELSE applied_id END, {release} {where}",
            [at, at, at, stored_id, stored_holder, stored_holder, *params],
        )

    # -- EndpointRegistry (see base.EndpointRegistry for the semantics) ----------------

    def _endpoint(self, name: str | None) -> tuple[str, builtins.list[Any]]:
        """``WHERE`` for the endpoint ``name`` (every endpoint if None), and its values."""
        return self._where({"scope": self._answers_scope, "name": name})

    def add_endpoint(self, name: str, secret: str) -> bool:
        p, now = self.dialect.param, self.clock()
        secrets = base.dump_secrets((EndpointSecret(secret),))
        cursor = self._execute(
            f"INSERT INTO {self._registry} (scope, {_ENDPOINT_COLUMNS}) "
            f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (scope, name) DO NOTHING",
            [*self._endpoint(name)[1], secrets, True, now, now],
        )
        return cursor.rowcount == 1

    def get_endpoint(self, name: str) -> EndpointRecord | None:
        where, params = self._endpoint(name)
        row = self._execute(
            f"SELECT {_ENDPOINT_COLUMNS} FROM {self._registry} {where}", params
        ).fetchone()
        return None if row is None else base.read_endpoint(*row)

    # builtins.list: in this class, list names the listing method.
    def list_endpoints(self) -> builtins.list[EndpointRecord]:
        where, params = self._endpoint(None)
        cursor = self._execute(f"SELECT {_ENDPOINT_COLUMNS} FROM {self._registry} {where}", params)
        # Sorted here, by the names as read: a database orders the stored (possibly
        # escaped) text by its own collation.
        found = [base.read_endpoint(*row) for row in cursor.fetchall()]
        return sorted(found, key=lambda endpoint: endpoint.name)

    def rotate_endpoint(self, name: str, secret: str, grace_seconds: float) -> bool:
        p, (where, params) = self.dialect.param, self._endpoint(name)
        with self._transaction() as execute:
            row = execute(
                f"SELECT secrets FROM {self._registry} {where}{self.dialect.lock_rows}", params
            ).fetchone()
            if row is None:
                return False
            now = self.clock()
            secrets = base.rotated(base.load_secrets(row[0]), secret, now, grace_seconds)
            execute(
                f"UPDATE {self._registry} SET secrets = {p}, updated_at = {p} {where}",
                [base.dump_secrets(secrets), now, *params],
            )
        return True

    def set_endpoint_enabled(self, name: str, enabled: bool) -> bool:
        p, (where, params) = self.dialect.param, self._endpoint(name)
        cursor = self._execute(
            f"UPDATE {self._registry} SET enabled = {p}, updated_at = {p} {where}",
            [bool(enabled), self.clock(), *params],
        )
        return cursor.rowcount == 1

    def remove_endpoint(self, name: str) -> bool:
        where, params = self._endpoint(name)
        return self._execute(f"DELETE FROM {self._registry} {where}", params).rowcount == 1
