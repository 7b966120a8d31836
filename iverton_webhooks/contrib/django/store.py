"""``DjangoStore``: the core [Store][iverton_webhooks.Store] over the ``WebhookEvent`` model.

Same semantics as the other stores: the unique ``(endpoint, event_id)`` key makes
``record`` an atomic insert-if-absent across processes and hosts; every transition
after ``claim`` is a conditional UPDATE on the lease token, so a worker that lost its
lease changes nothing. What each transition writes, and how text is kept (the codec of
``inbox/base.py``), come from the core; this module only maps them onto the model,
through Django's public API: single statements run through Django's own cursor for what
every event goes through (the insert-if-absent, the claim, the lease-checked writes), the
ORM for the rest.

Connections are Django's: a request gets a usable one from Django; every other thread
(processing, lease renewal, recovery) gets one from the processor's
``process_context`` (``endpoint.fresh_connections``) or from `_recycled`.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.models import Count, F, Field, Func, Min, Q, QuerySet, TextField
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone as dj_timezone

from ..._errors import StoreUnavailable
from ..._text import printable
from ...events import resource_id_of
from ...inbox import base
from ...inbox.base import (
    CLAIMABLE,
    DEFAULT_ENDPOINT,
    FINISHED,
    REPLAYABLE,
    RESOLVABLE,
    Claim,
    EndpointRecord,
    EndpointSecret,
    HandlerOutcome,
    MarkAnswer,
    MarkKey,
    Status,
    StoredEvent,
    store_text,
)
from ...inbox.sql import POSTGRES, SQLITE, status_list
from .models import FailedAnswers, ResourceMark, WebhookEndpoint, WebhookEvent

log = logging.getLogger("iverton_webhooks")

P = ParamSpec("P")
R = TypeVar("R")

#: Columns the ORM holds as DateTimeFields; the core writes every time as epoch seconds.
_DATETIME_COLUMNS = frozenset({"created_at", "received_at", "processed_at"})
#: What ``read_row`` needs, by model field name (``event_id`` is the core's ``id``);
#: the datetime columns are read raw, see `_RawTime`.
_READ_FIELDS = (
    "endpoint",
    "event_id",
    "type",
    "body",
    "status",
    "attempts",
    "deliveries",
    "next_attempt_at",
    "lease_until",
    "last_error",
    "outcomes",
)
_RAW = "_raw"


#: A datetime column ``{0}`` read without Django's conversion, so that a value Python
#: cannot hold (a time past year 9999, which the database keeps) makes its row
#: unreadable (listed, quarantined) instead of failing every query that touches it.
#: PostgreSQL gives epoch seconds; SQLite the stored text (an expression, so sqlite3
#: does not convert it by the column's declared type), parsed in `_from_db`. Other
#: databases return what their driver builds.
_RAW_TIME_SQL = {"sqlite": "({0} || '')", "postgresql": "EXTRACT(EPOCH FROM {0})::float8"}


class _RawTime(Func):
    """`_RAW_TIME_SQL` for the ORM. A text output field has no converter, so the value
    arrives untouched."""

    output_field = TextField()

    def as_sql(
        self,
        compiler: SQLCompiler,
        connection: BaseDatabaseWrapper,
        function: str | None = None,
        template: str | None = None,
        arg_joiner: str | None = None,
        **extra_context: Any,
    ) -> tuple[str, tuple[str | int, ...]]:
        template = _RAW_TIME_SQL.get(connection.vendor, "{0}").format("%(expressions)s")
        return super().as_sql(compiler, connection, function, template, arg_joiner, **extra_context)


_READ_TIMES = {f"{column}{_RAW}": _RawTime(column) for column in sorted(_DATETIME_COLUMNS)}

MIGRATE_HINT = "run `python manage.py migrate` to create or update it"


def missing_schema(exc: BaseException) -> bool:
    """Whether a database error says an inbox table (events, marks, endpoints) or a column
    is missing (SQLite "no such table/column", PostgreSQL "relation/column ... does not
    exist", MySQL "doesn't exist" / "Unknown column")."""
    text = str(exc).lower()
    tables = tuple(
        model._meta.db_table.lower() for model in (WebhookEvent, ResourceMark, WebhookEndpoint)
    )
    return (
        "no such table" in text
        or "no such column" in text
        or "unknown column" in text
        or (
            any(table in text for table in tables)
            and ("does not exist" in text or "doesn't exist" in text)
        )
        or ("column" in text and "does not exist" in text)
    )


def _migrate_hint(method: Callable[P, R]) -> Callable[P, R]:
    """A missing table (``migrate`` not run) becomes a `StoreUnavailable` whose
    message, logged with the 503, says how to fix it instead of only "no such table".

    Any other database error: a connection it left unusable (the server restarted) is
    closed at once, outside a transaction, as Django does at the end of a request, so
    the next call from this thread opens a working one, whoever calls (a worker thread
    without ``fresh_connections``, a long-lived command)."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except DatabaseError as exc:
            if not missing_schema(exc):
                store = args[0]
                assert isinstance(store, DjangoStore)
                connection = connections[store.using]
                if not connection.in_atomic_block:
                    connection.close_if_unusable_or_obsolete()
                raise
            raise StoreUnavailable(
                f"the webhook inbox table {WebhookEvent._meta.db_table!r} is missing or out "
                f"of date ({exc}): {MIGRATE_HINT}"
            ) from exc

    return wrapper


# One lock per SQLite database alias in each process, shared by its threads (requests
# and worker threads). SQLite lets one writer in at a time and makes the others poll in
# its busy handler, with sleeps growing to 100 ms: queued on a Python lock, a writer of
# this process goes in the moment the previous one is done. Keyed by process id as well,
# so a forked child never takes a lock its parent held at the fork.
_write_locks: dict[tuple[int, str], threading.RLock] = {}


def _write_lock(using: str) -> threading.RLock:
    """This process's write lock on SQLite database ``using``."""
    key = (os.getpid(), using)
    lock = _write_locks.get(key)
    if lock is None:
        # setdefault: threads asking at once all get the one lock.
        lock = _write_locks.setdefault(key, threading.RLock())
    return lock


#: Aliases some DjangoStore writes to: only their connections are tuned.
_inbox_aliases: set[str] = set()


def _tune_new(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    """``connection_created`` receiver: scratch tables in memory on SQLite connections
    of inbox aliases. SQLite builds small ones for a claim's status list; with the
    default temp_store each is a temporary file created and deleted per statement."""
    if connection.vendor == "sqlite" and connection.alias in _inbox_aliases:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA temp_store=MEMORY")


def _serialized(method: Callable[P, R]) -> Callable[P, R]:
    """Run a write method of `DjangoStore` holding this process's write lock on
    its SQLite database, around one of the store's own autocommitted writes; other
    processes' writers meet it in SQLite's busy timeout. Never inside an atomic block
    (ATOMIC_REQUESTS, a caller's ``transaction.atomic``): that transaction may already
    hold SQLite's write lock, and waiting here for a thread that waits for it would
    stall both until the busy timeout. Other databases lock rows, not the file: no lock
    there."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        store = args[0]
        assert isinstance(store, DjangoStore)
        connection = connections[store.using]
        if connection.vendor != "sqlite" or connection.in_atomic_block:
            return method(*args, **kwargs)
        with _write_lock(store.using):
            return method(*args, **kwargs)

    return wrapper


def _to_db(epoch: float) -> datetime:
    """An epoch as the DateTimeField expects it under the project's USE_TZ."""
    value = datetime.fromtimestamp(epoch, timezone.utc)
    return value if settings.USE_TZ else dj_timezone.make_naive(value)


def _from_db(value: object) -> object:
    """A raw time as ``read_row`` takes it. Naive values are UTC under USE_TZ, else in
    the project's time zone (``read_row`` would take them for UTC). Anything this cannot
    read goes to ``read_row`` as it is, which marks the row unreadable, never raises."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            return value
    if isinstance(value, datetime) and dj_timezone.is_naive(value):
        if settings.USE_TZ:
            return value.replace(tzinfo=timezone.utc)
        try:
            return dj_timezone.make_aware(value).astimezone(timezone.utc)
        except (ValueError, OverflowError):
            return value
    return value


def _db_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A core field dict (epoch times, core column names, text already through the
    codec) as ORM update kwargs."""
    out: dict[str, Any] = {}
    for column, value in fields.items():
        if column in _DATETIME_COLUMNS and value is not None:
            value = _to_db(float(value))
        out["event_id" if column == "id" else column] = value
    return out


def _stored_outcomes(outcomes: Mapping[str, HandlerOutcome]) -> dict[str, Any]:
    # The core's stored form (names and errors through the codec): jsonb refuses NUL and
    # lone surrogates even escaped, and handler errors may quote any sender data.
    stored: dict[str, Any] = json.loads(base.dump_outcomes(outcomes))
    return stored


def _model_values(row: Mapping[str, Any], resource_id: str) -> dict[str, Any]:
    """A row from ``base.new_row`` as model field values (``outcomes`` left to the
    model's default, the empty object)."""
    values = _db_fields(row)
    values["resource_id"] = resource_id
    return values


def _stored(row: Mapping[str, Any]) -> StoredEvent:
    mapping = dict(row)
    mapping["id"] = mapping.pop("event_id")
    for column in _DATETIME_COLUMNS:
        mapping[column] = _from_db(mapping.pop(f"{column}{_RAW}", None))
    return base.read_row(mapping)


_ENDPOINT_FIELDS = ("name", "secrets", "enabled", "created_at", "updated_at")


def _epoch(value: object) -> float:
    """A DateTimeField's value (as the ORM reads it) as epoch seconds."""
    when = _from_db(value)
    assert isinstance(when, datetime)
    return when.timestamp()


def _endpoint(row: Mapping[str, Any]) -> EndpointRecord:
    return base.read_endpoint(
        row["name"],
        row["secrets"],
        row["enabled"],
        _epoch(row["created_at"]),
        _epoch(row["updated_at"]),
    )


def _readable(rows: QuerySet[WebhookEvent]) -> QuerySet[WebhookEvent, dict[str, Any]]:
    return rows.values(*_READ_FIELDS, **_READ_TIMES)


def recycle_connections() -> None:
    """``close_old_connections()``, minus connections inside an atomic block (an inline
    runner processes in the caller's thread, whose transaction is not ours to end)."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


@contextmanager
def _recycled() -> Iterator[None]:
    # For calls from pollers that live for the whole process, outside any request: give
    # back a stale or broken connection each time, as Django does after a request.
    recycle_connections()
    try:
        yield
    finally:
        recycle_connections()


#: Databases whose SQL has ``INSERT ... ON CONFLICT DO NOTHING`` (SQLite 3.24+,
#: PostgreSQL 9.5+): a duplicate inserts nothing and says so in the row count, with no
#: error, no savepoint and no error line in the server's log.
_ON_CONFLICT_VENDORS = frozenset({"sqlite", "postgresql"})


@functools.cache
def _field(name: str) -> Field[Any, Any]:
    field = WebhookEvent._meta.get_field(name)
    assert isinstance(field, Field)
    return field


def _params(values: Mapping[str, Any], connection: BaseDatabaseWrapper) -> list[Any]:
    """Model field values (see `_db_fields`) as the driver takes them: times as the
    database keeps them (Django's adaptation), JSON through its field; text, numbers and
    bytes as they are, as from any DB-API caller."""
    return [
        value
        if value is None
        else connection.ops.adapt_datetimefield_value(value)
        if name in _DATETIME_COLUMNS
        else _field(name).get_db_prep_save(value, connection)
        if name == "outcomes"
        else value
        for name, value in values.items()
    ]


# The statements run through Django's cursor: the insert-if-absent, and the transitions
# of a claimed event, which a worker makes for every event it processes (built by the
# ORM, each would cost several times the write itself). Column names are the model's
# own: plain lower-case words, unquoted as in the core's SQL.
_TABLE = WebhookEvent._meta.db_table
_KEY = "endpoint = %s AND event_id = %s"
_CLAIMABLE_NOW = f"{_KEY} AND status IN {status_list(CLAIMABLE)} AND due_at <= %s"
_HELD = f"{_KEY} AND lease_token = %s AND status = '{Status.PROCESSING.value}'"


@functools.lru_cache(maxsize=64)
def _insert_sql(names: tuple[str, ...]) -> str:
    # A new event's outcomes are the empty object, written as a literal: JSON text for
    # SQLite, a jsonb constant for PostgreSQL.
    columns, marks = ", ".join(names), ", ".join(["%s"] * len(names))
    return (
        f"INSERT INTO {_TABLE} ({columns}, outcomes) VALUES ({marks}, '{{}}') "
        "ON CONFLICT DO NOTHING"
    )


@functools.lru_cache(maxsize=64)
def _update_sql(names: tuple[str, ...], where: str, also: str = "") -> str:
    sets = ", ".join([*(f"{name} = %s" for name in names), *filter(None, [also])])
    return f"UPDATE {_TABLE} SET {sets or 'lease_token = lease_token'} WHERE {where}"


@functools.lru_cache(maxsize=8)
def _claimed_columns(vendor: str) -> str:
    raw = _RAW_TIME_SQL.get(vendor, "{0}")
    return ", ".join([*_READ_FIELDS, *(raw.format(c) for c in sorted(_DATETIME_COLUMNS))])


def _returns_rows(connection: BaseDatabaseWrapper) -> bool:
    """Whether an UPDATE can return the rows it changed: PostgreSQL, and SQLite from
    3.35 (the version Django's own INSERT ... RETURNING needs)."""
    return connection.vendor == "postgresql" or (
        connection.vendor == "sqlite" and connection.features.can_return_columns_from_insert
    )


#: How a finish merges a JSON object parameter into ``outcomes`` in one UPDATE, as the
#: core's SQL stores do; any other database reads, merges and writes back.
_MERGE_OUTCOMES = {
    "sqlite": SQLITE.merge_outcomes.replace("?", "%s"),
    "postgresql": POSTGRES.merge_outcomes,
}


#: The keys of a row `_claimed_columns` reads, as `_stored` takes them.
_CLAIMED_NAMES = (*_READ_FIELDS, *_READ_TIMES)


_KIND_CHARS = 32


@base.store_edge(DatabaseError)
class DjangoStore(base.RecordsRows, base.ClaimedWrites):
    """Events in the ``WebhookEvent`` table of database ``using`` (default ``"default"``)."""

    blocking = True
    #: Django's ORM refuses calls from a thread where an event loop runs.
    event_loop_safe = False

    def __init__(self, using: str = "default", *, clock: Callable[[], float] = time.time):
        self.using = using
        self.clock = clock
        _inbox_aliases.add(using)
        connection_created.connect(_tune_new, dispatch_uid="iverton_webhooks_temp_store")

    def __repr__(self) -> str:
        return f"<DjangoStore using={self.using!r}>"

    def _all(self) -> QuerySet[WebhookEvent]:
        rows: QuerySet[WebhookEvent] = WebhookEvent.objects.using(self.using)
        return rows

    def _rows(self, endpoint: str | None = DEFAULT_ENDPOINT) -> QuerySet[WebhookEvent]:
        rows = self._all()
        if endpoint is not None:
            rows = rows.filter(endpoint=store_text(endpoint))
        return rows

    def _event(self, event_id: str, endpoint: str, **conditions: Any) -> QuerySet[WebhookEvent]:
        # One filter() call: each call copies the whole query.
        rows: QuerySet[WebhookEvent] = self._all().filter(
            endpoint=store_text(endpoint), event_id=store_text(event_id), **conditions
        )
        return rows

    @_migrate_hint
    def insert_row(self, row: dict[str, Any], resource_id: str | None) -> bool:
        # In autocommit the insert is its own committed transaction when it returns, and
        # a duplicate is not an error, so a caller's transaction (ATOMIC_REQUESTS) is
        # never left broken. Values are made before the write lock is taken: other
        # writers wait only for the SQL.
        if resource_id is None:
            resource_id = resource_id_of(row["body"])
        values = _model_values(row, resource_id)
        if self._insert(values):
            return True
        key = [row["endpoint"], row["id"]]  # as new_row stored them
        self._write(f"UPDATE {_TABLE} SET deliveries = deliveries + 1 WHERE {_KEY}", key)
        return False

    def _insert(self, values: dict[str, Any]) -> bool:
        connection = connections[self.using]
        if connection.vendor not in _ON_CONFLICT_VENDORS:
            return self._create(values)
        # A NULL column is left to the table's own NULL: only what a new event holds is sent.
        values = {name: value for name, value in values.items() if value is not None}
        return self._write(_insert_sql(tuple(values)), _params(values, connection)) == 1

    @_serialized
    def _write(self, sql: str, params: Sequence[Any]) -> int:
        """Run one autocommitted write through Django's cursor; its row count."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
            return int(cursor.rowcount)

    def _read(self, sql: str, params: Sequence[Any]) -> Any:
        """The first row of one query through Django's cursor, or None."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone()

    @_serialized
    def _create(self, values: dict[str, Any]) -> bool:
        # Any other database: the ORM's insert in a savepoint, a duplicate rolled back.
        try:
            with transaction.atomic(using=self.using):
                self._all().create(**values)
        except IntegrityError:
            return False
        return True

    @_migrate_hint
    def claim(
        self, event_id: str, lease_seconds: float, *, endpoint: str = DEFAULT_ENDPOINT
    ) -> Claim | None:
        now = self.clock()
        token = base.new_token()
        fields = _db_fields(base.claim_fields(now, lease_seconds, token))
        key = [store_text(endpoint), store_text(event_id)]
        connection = connections[self.using]
        columns = _claimed_columns(connection.vendor)
        sql = _update_sql(tuple(fields), _CLAIMABLE_NOW, "attempts = attempts + 1")
        params = [*_params(fields, connection), *key, now]
        if _returns_rows(connection):
            row = self._returning(f"{sql} RETURNING {columns}", params)
        else:
            row = self._claim_then_read(sql, params, columns, event_id, endpoint, token)
        if row is None:
            return None
        return Claim(event=_stored(dict(zip(_CLAIMED_NAMES, row, strict=True))), token=token)

    @_serialized
    def _returning(self, sql: str, params: Sequence[Any]) -> Any:
        """The row one autocommitted ``UPDATE ... RETURNING`` changed, or None."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(sql, params)
            # Read to the end: SQLite commits a RETURNING statement once it is stepped through.
            rows = cursor.fetchall()
        return rows[0] if rows else None

    def _claim_then_read(
        self,
        sql: str,
        params: Sequence[Any],
        columns: str,
        event_id: str,
        endpoint: str,
        token: str,
    ) -> Any:
        """The claim where an UPDATE returns no rows: the UPDATE, then the row read by
        its new lease token once the write lock is given back (while the lease holds,
        its holder is the only writer of the row)."""
        if not self._write(sql, params):
            return None
        try:
            return self._read(
                f"SELECT {columns} FROM {_TABLE} WHERE {_KEY} AND lease_token = %s",
                [store_text(endpoint), store_text(event_id), token],
            )
        except Exception:
            # Taken but not read (the connection broke between the two statements): give
            # the lease back now, or the event would wait for it to run out.
            self._give_back(event_id, endpoint, token)
            raise

    def _give_back(self, event_id: str, endpoint: str, token: str) -> None:
        now = self.clock()
        try:
            with _recycled():  # a broken connection is replaced first
                self._expire(event_id, endpoint, token, now)
        except Exception:
            log.warning(
                "could not give back the lease on event %s: it runs out on its own",
                printable(event_id),
            )

    @_serialized
    def _expire(self, event_id: str, endpoint: str, token: str, now: float) -> None:
        self._event(event_id, endpoint, lease_token=token, status=Status.PROCESSING.value).update(
            lease_until=now, due_at=now
        )

    @_migrate_hint
    def _claimed(
        self, claim: Claim, fields: Mapping[str, Any], outcomes: Mapping[str, HandlerOutcome]
    ) -> bool:
        held = [store_text(claim.event.endpoint), store_text(claim.event.id), claim.token]
        connection = connections[self.using]
        values = _db_fields(fields)
        params = _params(values, connection)
        merge = _MERGE_OUTCOMES.get(connection.vendor)
        also = ""
        if outcomes and merge is not None:
            also = merge
            params.append(base.dump_outcomes(outcomes))
        elif outcomes:
            # Read, merge, write back, each guarded by the lease token. No transaction is
            # needed: while the lease holds, its holder is the only writer of the row.
            row = self._read(f"SELECT outcomes FROM {_TABLE} WHERE {_HELD}", held)
            if row is None:
                return False
            current = json.loads(row[0]) if row[0] else {}
            values["outcomes"] = {**current, **_stored_outcomes(outcomes)}
            params = _params(values, connection)
        sql = _update_sql(tuple(values), _HELD, also)
        return self._write(sql, [*params, *held]) == 1

    @_migrate_hint
    def due(self, limit: int = 100, *, endpoint: str = DEFAULT_ENDPOINT) -> list[str]:
        with _recycled():
            ids = (
                self._rows(endpoint)
                .filter(status__in=base.values(CLAIMABLE), due_at__lte=self.clock())
                .order_by("due_at")
                .values_list("event_id", flat=True)[:limit]
            )
            return [base.load_text(event_id) for event_id in ids]

    @_migrate_hint
    def oldest_due(self, *, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
        with _recycled():
            found = (
                self._rows(endpoint)
                .filter(status__in=base.values(CLAIMABLE), due_at__lte=self.clock())
                .aggregate(oldest=Min("due_at"))["oldest"]
            )
        return None if found is None else float(found)

    @_migrate_hint
    @_serialized
    def note_failure(self, endpoint: str, kind: str) -> int:
        answers = FailedAnswers.objects.using(self.using)
        key = store_text(endpoint)
        with transaction.atomic(using=self.using):
            answers.get_or_create(endpoint=key)
            # The kind is only ever shown: cut to fit its column.
            kind = store_text(kind)[:_KIND_CHARS]
            answers.filter(endpoint=key).update(failures=F("failures") + 1, kind=kind)
            return int(answers.values_list("failures", flat=True).get(endpoint=key))

    @_migrate_hint
    @_serialized
    def clear_failures(self, endpoint: str) -> None:
        answers = FailedAnswers.objects.using(self.using).filter(endpoint=store_text(endpoint))
        # Read first: most answers are 2xx and there is nothing to clear.
        if answers.filter(failures__gt=0).exists():
            answers.update(failures=0)

    # Newest-only marks: each step is conditional UPDATEs, whose row count decides.

    def _mark(self, key: MarkKey) -> QuerySet[ResourceMark]:
        marks: QuerySet[ResourceMark] = ResourceMark.objects.using(self.using).filter(
            endpoint=store_text(key.endpoint),
            resource=store_text(key.resource),
            handler=store_text(key.handler),
        )
        return marks

    @_migrate_hint
    @_serialized
    def take_mark(
        self, key: MarkKey, created_at: float, event_id: str, holder: str, hold_seconds: float
    ) -> MarkAnswer:
        now, stored_id = self.clock(), store_text(event_id)
        mark = self._mark(key)
        # Racing first takes: get_or_create reads the row another one created.
        ResourceMark.objects.using(self.using).get_or_create(
            endpoint=store_text(key.endpoint),
            resource=store_text(key.resource),
            handler=store_text(key.handler),
        )
        newer_or_same = Q(applied_at__gt=created_at) | Q(applied_id=stored_id)
        held = Q(hold_until__gt=now) & ~Q(holder=store_text(holder))
        taken = (
            mark.exclude(newer_or_same)
            .exclude(held)
            .update(holder=store_text(holder), hold_until=now + hold_seconds)
        )
        if taken:
            return MarkAnswer.RUN
        # The applied event only moves forward: superseded then means superseded now.
        return MarkAnswer.SUPERSEDED if mark.filter(newer_or_same).exists() else MarkAnswer.BUSY

    @_migrate_hint
    @_serialized
    def renew_mark(self, key: MarkKey, holder: str, hold_seconds: float) -> bool:
        held = self._mark(key).filter(holder=store_text(holder))
        return bool(held.update(hold_until=self.clock() + hold_seconds) == 1)

    @_migrate_hint
    @_serialized
    def release_mark(self, key: MarkKey, holder: str, applied: tuple[float, str] | None) -> None:
        mark = self._mark(key)
        with transaction.atomic(using=self.using):
            mark.filter(holder=store_text(holder)).update(holder=None, hold_until=None)
            if applied is not None:
                created_at, event_id = applied
                older = Q(applied_at__isnull=True) | Q(applied_at__lte=created_at)
                mark.filter(older).update(applied_at=created_at, applied_id=store_text(event_id))

    # Endpoint registry (see base.EndpointRegistry): one WebhookEndpoint row each.

    def _endpoints(self, name: str) -> QuerySet[WebhookEndpoint]:
        rows: QuerySet[WebhookEndpoint] = WebhookEndpoint.objects.using(self.using).filter(
            name=store_text(name)
        )
        return rows

    @_migrate_hint
    @_serialized
    def add_endpoint(self, name: str, secret: str) -> bool:
        now = _to_db(self.clock())
        # get_or_create: of racing adds, one creates the row and the others read it.
        _, created = WebhookEndpoint.objects.using(self.using).get_or_create(
            name=store_text(name),
            defaults={
                "secrets": base.dump_secrets((EndpointSecret(secret),)),
                "enabled": True,
                "created_at": now,
                "updated_at": now,
            },
        )
        return bool(created)

    @_migrate_hint
    def get_endpoint(self, name: str) -> EndpointRecord | None:
        row = self._endpoints(name).values(*_ENDPOINT_FIELDS).first()
        return None if row is None else _endpoint(row)

    @_migrate_hint
    def list_endpoints(self) -> list[EndpointRecord]:
        rows = WebhookEndpoint.objects.using(self.using).values(*_ENDPOINT_FIELDS)
        # Sorted here, by the names as read: the database orders the stored (possibly
        # escaped) text by its own collation.
        return sorted((_endpoint(row) for row in rows), key=lambda endpoint: endpoint.name)

    @_migrate_hint
    @_serialized
    def rotate_endpoint(self, name: str, secret: str, grace_seconds: float) -> bool:
        rows = self._endpoints(name)
        with transaction.atomic(using=self.using):
            if connections[self.using].vendor == "sqlite":
                # SQLite locks no rows (select_for_update does nothing there): a first
                # write takes its database write lock, so no other process can write
                # between the read below and the update.
                rows.update(updated_at=F("updated_at"))
            stored = rows.select_for_update().values_list("secrets", flat=True).first()
            if stored is None:
                return False
            now = self.clock()
            secrets = base.rotated(base.load_secrets(stored), secret, now, grace_seconds)
            rows.update(secrets=base.dump_secrets(secrets), updated_at=_to_db(now))
        return True

    @_migrate_hint
    @_serialized
    def set_endpoint_enabled(self, name: str, enabled: bool) -> bool:
        changed = self._endpoints(name).update(
            enabled=bool(enabled), updated_at=_to_db(self.clock())
        )
        return bool(changed == 1)

    @_migrate_hint
    @_serialized
    def remove_endpoint(self, name: str) -> bool:
        return bool(self._endpoints(name).delete()[0])

    @_migrate_hint
    def get(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> StoredEvent | None:
        row = _readable(self._event(event_id, endpoint)).first()
        return None if row is None else _stored(row)

    @_migrate_hint
    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
        *,
        endpoint: str | None = DEFAULT_ENDPOINT,
    ) -> list[StoredEvent]:
        rows = self._rows(endpoint).order_by("-id")
        if status is not None:
            rows = rows.filter(status=Status(status).value)
        if event_type is not None:
            rows = rows.filter(type=store_text(event_type))
        return [_stored(row) for row in _readable(rows)[:limit]]

    @_migrate_hint
    @_serialized
    def replay(
        self, event_id: str, *, rerun_all: bool = False, endpoint: str = DEFAULT_ENDPOINT
    ) -> bool:
        fields = _db_fields(base.replay_fields(self.clock()))
        if rerun_all:
            fields["outcomes"] = {}
        replayed = self._event(event_id, endpoint, status__in=base.values(REPLAYABLE)).update(
            **fields
        )
        return bool(replayed == 1)

    @_migrate_hint
    @_serialized
    def resolve(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> bool:
        fields = _db_fields(base.resolve_fields(self.clock()))
        resolved = self._event(event_id, endpoint, status__in=base.values(RESOLVABLE)).update(
            **fields
        )
        return bool(resolved == 1)

    @_migrate_hint
    @_serialized
    def prune(self, received_before: float, *, endpoint: str | None = None) -> int:
        old = self._rows(endpoint).filter(
            status__in=base.values(FINISHED), received_at__lt=_to_db(received_before)
        )
        return int(old.delete()[0])

    @_migrate_hint
    def stats(self, *, endpoint: str | None = DEFAULT_ENDPOINT) -> dict[Status, int]:
        counts: dict[Status, int] = {}
        for row in self._rows(endpoint).order_by().values("status").annotate(n=Count("id")):
            try:
                status = Status(row["status"])
            except ValueError:  # a status written by a newer version: show it as quarantined
                status = Status.QUARANTINED
            counts[status] = counts.get(status, 0) + int(row["n"])
        return counts

    @_migrate_hint
    def count(self, *, endpoint: str | None = None) -> int:
        return self._rows(endpoint).count()

    def close(self) -> None:
        """Connections belong to Django: nothing to close here."""
