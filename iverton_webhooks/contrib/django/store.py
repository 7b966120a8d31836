"""``DjangoStore``: the core :class:`~iverton_webhooks.Store` over the ``WebhookEvent`` model.

Same semantics as the other stores: the unique ``(endpoint, event_id)`` key makes
``record`` an atomic insert-if-absent across processes and hosts; every transition
after ``claim`` is a conditional UPDATE on the lease token, so a worker that lost its
lease changes nothing. What each transition writes comes from ``inbox/base.py``; this
module only translates column names and times to the ORM.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from datetime import datetime, timezone
from typing import Any, ClassVar, NamedTuple, ParamSpec, TypeVar

from django.conf import settings
from django.db import DatabaseError, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created
from django.db.backends.utils import CursorWrapper
from django.db.models import Count, F, Field, Func, Min, QuerySet, TextField
from django.db.models.constants import OnConflict
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone as dj_timezone

from ...errors import StoreUnavailable
from ...inbox import base
from ...inbox.base import (
    CLAIMABLE,
    DEFAULT_ENDPOINT,
    FINISHED,
    REPLAYABLE,
    RESOLVABLE,
    Claim,
    HandlerOutcome,
    Status,
    StoredEvent,
    Verdict,
)
from ...inbox.sql import bound_mask
from ...text import printable
from .models import KEY_MAX_LENGTH, FailedAnswers, WebhookEvent

log = logging.getLogger("iverton_webhooks")

P = ParamSpec("P")
R = TypeVar("R")

#: Columns the ORM holds as DateTimeFields; the core writes every time as epoch seconds.
_DATETIME_COLUMNS = frozenset({"created_at", "received_at", "processed_at"})
#: What ``read_row`` needs, by model field name (``event_id`` is the core's ``id``);
#: the datetime columns are read raw, see :class:`_RawTime`.
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


class _RawTime(Func):
    """A datetime column read without Django's conversion, so that a value Python
    cannot hold (a year-10000 time a wave-1 receiver stored, say) makes its row
    unreadable (listed, quarantined) instead of failing every query that touches it.

    PostgreSQL gives epoch seconds; SQLite the stored text (an expression, so sqlite3
    does not convert it by the column's declared type), parsed in :func:`_from_db`. A
    text output field has no converter, so the value arrives untouched; other
    databases return what their driver builds.
    """

    template = "%(expressions)s"
    output_field = TextField()

    def as_sqlite(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> Any:
        return self.as_sql(compiler, connection, template="(%(expressions)s || '')", **extra)

    def as_postgresql(
        self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra: Any
    ) -> Any:
        return self.as_sql(
            compiler, connection, template="EXTRACT(EPOCH FROM %(expressions)s)::float8", **extra
        )


_READ_TIMES = {f"{column}{_RAW}": _RawTime(column) for column in sorted(_DATETIME_COLUMNS)}

MIGRATE_HINT = "run `python manage.py migrate` to create or update it"


def missing_schema(exc: BaseException) -> bool:
    """Whether a database error says the inbox table or one of its columns is missing
    (SQLite "no such table/column", PostgreSQL "relation/column ... does not exist",
    MySQL "doesn't exist" / "Unknown column")."""
    text = str(exc).lower()
    table = WebhookEvent._meta.db_table.lower()
    return (
        "no such table" in text
        or "no such column" in text
        or "unknown column" in text
        or (table in text and ("does not exist" in text or "doesn't exist" in text))
        or ("column" in text and "does not exist" in text)
    )


def _migrate_hint(method: Callable[P, R]) -> Callable[P, R]:
    """A missing table (``migrate`` not run) becomes a :class:`StoreUnavailable` whose
    message, logged with the 503, says how to fix it instead of only "no such table"."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except DatabaseError as exc:
            if not missing_schema(exc):
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


def _tune(connection: BaseDatabaseWrapper) -> None:
    """Once per SQLite connection of an inbox alias: scratch tables in memory. SQLite
    builds small ones for RETURNING and for IN lists (a claim's status list); with the
    default temp_store each is a temporary file created and deleted per statement, most
    of the cost of a claim. Normally done as the connection opens (:func:`_tune_new`); else at the
    store's first write on it, outside any transaction (SQLite refuses the change in
    one once temporary storage is in use)."""
    connection.ensure_connection()
    raw = connection.connection
    if getattr(connection, "_iverton_tuned", None) is raw:
        return
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA temp_store=MEMORY")
    connection._iverton_tuned = raw  # type: ignore[attr-defined]


def _tune_new(sender: object, connection: BaseDatabaseWrapper, **kwargs: object) -> None:
    """``connection_created`` receiver: :func:`_tune` for SQLite inbox aliases."""
    if connection.vendor == "sqlite" and connection.alias in _inbox_aliases:
        _tune(connection)


def _serialized(method: Callable[P, R]) -> Callable[P, R]:
    """Run a write method of :class:`DjangoStore` holding this process's write lock on
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
        _tune(connection)
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


def clean_text(value: str, limit: int | None = None) -> str:
    """Text a database will take: PostgreSQL refuses NUL in text and in jsonb, so a NUL
    is written as the four characters ``\\x00`` (visible, and never the reason an
    authentic event is refused); cut to ``limit`` characters for a varchar."""
    cleaned = value.replace("\x00", "\\x00")
    return cleaned if limit is None else cleaned[:limit]


def _resource_id(body: bytes) -> str:
    # Only for searching in the admin: the receiver has already validated the envelope.
    try:
        data = json.loads(body).get("data")
        return clean_text(str(data.get("id", "")), 255) if isinstance(data, dict) else ""
    except (ValueError, AttributeError, RecursionError):
        return ""


# On SQLite the database reads ``data.id`` itself while inserting (its JSON functions
# are in C, and the body is bound again rather than parsed again in Python); a body
# that is not JSON (a quarantined one) gets "". ``resource_id``, when not NULL, is the
# id read in Python instead: SQLite's text functions stop at a NUL, so a body with an
# escaped NUL is read by _resource_id, which escapes it visibly.
_SQLITE_RESOURCE_ID = (
    "coalesce(%(resource_id)s, iif(json_valid(CAST(%(body)s AS TEXT)), substr(coalesce("
    "CAST(json_extract(CAST(%(body)s AS TEXT), '$.data.id') AS TEXT), ''), 1, 255), ''))"
)

#: Columns every backend takes as the core writes them (text and numbers).
_AS_IS_COLUMNS = (
    "endpoint",
    "id",
    "status",
    "attempts",
    "deliveries",
    "due_at",
    "next_attempt_at",
    "lease_until",
    "lease_token",
)
#: Columns with a conversion of their own in _Insert.params (the datetimes too).
_CONVERTED_COLUMNS = frozenset({"type", "last_error", *_DATETIME_COLUMNS})


def _utc_text(epoch: float) -> str:
    """What Django's SQLite backend writes for an aware datetime under USE_TZ with the
    database in UTC (``str`` of the naive UTC time), without building it twice."""
    # str() of the aware time ends in "+00:00": cut, rather than a replace(tzinfo=None),
    # whose keyword parsing cost more than the rest of this.
    return str(datetime.fromtimestamp(epoch, timezone.utc))[:-6]


def _time_writer(connection: BaseDatabaseWrapper) -> Callable[[float], Any]:
    """Epoch seconds -> this connection's value for a DateTimeField."""
    if connection.vendor == "sqlite" and settings.USE_TZ and connection.timezone_name == "UTC":
        return _utc_text  # the common case, checked per insert: tests switch settings
    adapt = connection.ops.adapt_datetimefield_value
    return lambda epoch: adapt(_to_db(epoch))


@dataclass(frozen=True)
class _Insert:
    """The insert-if-absent statement for one database vendor, built once: the
    backend's own "ignore conflicts" spelling (SQLite ``INSERT OR IGNORE``, PostgreSQL
    ``ON CONFLICT DO NOTHING``, MySQL ``INSERT IGNORE``), so a duplicate inserts
    nothing (rowcount 0) instead of raising.

    Parameters are named (``%(id)s``, a dict), which every Django backend takes: on
    SQLite, Django turns a positional ``%s`` statement into ``?`` with a regular
    expression on every execute, which on this 600-character statement cost more
    instructions than SQLite's insert (~100k); the named form is one ``%`` format."""

    sql: str
    #: Columns the model field converts (the body, the JSON outcomes): (name, field).
    prepared: tuple[tuple[str, Field[Any, Any]], ...]
    #: A prepared column's value when the row has none, if it is plain text (reused).
    plain_defaults: dict[str, str]
    #: The database computes ``resource_id`` from the body (SQLite).
    resource_id_in_sql: bool
    #: ``sql`` with the parameters that are None written as NULL, by which are bound,
    #: and the same in the driver's own style (SQLite) or None (see _watched).
    variants: dict[tuple[bool, ...], tuple[str, str | None]] = dataclass_field(
        default_factory=dict, init=False, compare=False
    )

    _built: ClassVar[dict[str, _Insert]] = {}

    @classmethod
    def of(cls, connection: BaseDatabaseWrapper) -> _Insert:
        found = cls._built.get(connection.vendor)
        if found is None:
            found = cls._built[connection.vendor] = cls._build(connection)
        return found

    @classmethod
    def _build(cls, connection: BaseDatabaseWrapper) -> _Insert:
        meta = WebhookEvent._meta
        fields = [f for f in meta.concrete_fields if f.name not in ("id", "resource_id")]
        names = ["id" if f.attname == "event_id" else str(f.attname) for f in fields]
        in_sql = connection.vendor == "sqlite"
        ops, quote = connection.ops, connection.ops.quote_name
        columns = [quote(str(f.column)) for f in fields] + [quote("resource_id")]
        marks = [f"%({name})s" for name in names]
        marks.append(_SQLITE_RESOURCE_ID if in_sql else "%(resource_id)s")
        suffix = ops.on_conflict_suffix_sql(fields, OnConflict.IGNORE, None, None)
        sql = (
            f"{ops.insert_statement(on_conflict=OnConflict.IGNORE)} {quote(meta.db_table)} "
            f"({', '.join(columns)}) VALUES ({', '.join(marks)}) {suffix}"
        ).rstrip()
        plain = {*_AS_IS_COLUMNS, *_CONVERTED_COLUMNS}
        prepared = tuple(
            (name, field) for name, field in zip(names, fields, strict=True) if name not in plain
        )
        defaults = {
            name: value
            for name, field in prepared
            if isinstance(value := field.get_db_prep_save(field.get_default(), connection), str)
        }
        return cls(sql, prepared, defaults, in_sql)

    def statement(self, params: Mapping[str, Any]) -> tuple[str, str | None]:
        """The statement for ``params``, for Django's cursor and (SQLite) for the driver.

        A None is written as ``NULL``, not bound (the sqlite3 driver binds a None after
        a failed attribute lookup, an exception made and dropped each; a pending
        event's insert has five). A shape or two, built once each."""
        present = bound_mask(params.values())
        found = self.variants.get(present)
        if found is None:
            sql = self.sql
            for name, is_bound in zip(params, present, strict=True):
                if not is_bound:
                    sql = sql.replace(f"%({name})s", "NULL")
            # SQLite's named style, as Django's SQLite cursor makes it on every execute.
            direct = (
                sql % {name: f":{name}" for name in params} if self.resource_id_in_sql else None
            )
            found = self.variants[present] = (sql, direct)
        return found

    def params(self, row: Mapping[str, Any], connection: BaseDatabaseWrapper) -> dict[str, Any]:
        # Only the columns the backend stores differently from the Python value go
        # through a conversion (times, the body, the JSON outcomes); text and numbers as
        # they are: a model field's full get_db_prep_save on 16 columns cost more than
        # the insert itself.
        params = {name: row.get(name) for name in _AS_IS_COLUMNS}
        # A quarantined body's type is whatever could be read: made to fit.
        params["type"] = clean_text(row["type"], KEY_MAX_LENGTH)
        error = row.get("last_error")
        params["last_error"] = None if error is None else clean_text(str(error))
        to_db = _time_writer(connection)
        for name in _DATETIME_COLUMNS:
            epoch = row.get(name)
            params[name] = None if epoch is None else to_db(float(epoch))
        for name, field in self.prepared:
            if name in row:
                params[name] = field.get_db_prep_save(row[name], connection)
            elif name in self.plain_defaults:
                params[name] = self.plain_defaults[name]
            else:
                params[name] = field.get_db_prep_save(field.get_default(), connection)
        body = row["body"]
        if not self.resource_id_in_sql or b"\\u0000" in body:
            params["resource_id"] = _resource_id(body)
        else:
            params["resource_id"] = None
        return params


def _db_fields(fields: Mapping[str, Any]) -> dict[str, Any]:
    """A core field dict (epoch times, core column names) as ORM update kwargs."""
    out: dict[str, Any] = {}
    for column, value in fields.items():
        if column in _DATETIME_COLUMNS and value is not None:
            value = _to_db(float(value))
        elif column == "last_error" and value is not None:
            value = clean_text(str(value))
        out["event_id" if column == "id" else column] = value
    return out


def _outcomes_json(outcomes: Mapping[str, HandlerOutcome]) -> dict[str, Any]:
    # jsonb refuses \u0000 as well: handler errors may quote any sender data.
    merged: dict[str, Any] = {}
    for name, outcome in outcomes.items():
        value = outcome.to_json()
        value["error"] = clean_text(value["error"])
        merged[clean_text(name)] = value
    return merged


def _stored(row: Mapping[str, Any]) -> StoredEvent:
    mapping = dict(row)
    mapping["id"] = mapping.pop("event_id")
    for column in _DATETIME_COLUMNS:
        mapping[column] = _from_db(mapping.pop(f"{column}{_RAW}", None))
    return base.read_row(mapping)


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


class _Prepared(NamedTuple):
    """One insert, ready to run: built before the write lock is taken."""

    sql: str
    #: The statement for the driver itself, where it may take it (SQLite), else None.
    direct: str | None
    params: dict[str, Any]
    row: Mapping[str, Any]


# Django's own methods, to tell when something has wrapped them.
_DJANGO_EXECUTE = CursorWrapper.execute
_DJANGO_CURSOR = BaseDatabaseWrapper.cursor


def _watched(connection: BaseDatabaseWrapper) -> bool:
    """Whether something observes this connection's queries through Django: the debug
    cursor (``DEBUG``, ``connection.queries``), ``connection.execute_wrapper`` (OpenTelemetry,
    Scout), a wrapped ``cursor`` on the connection (django-debug-toolbar) or on its class,
    or a wrapped ``CursorWrapper.execute`` (Sentry)."""
    return bool(
        connection.execute_wrappers
        or connection.queries_logged
        or "cursor" in connection.__dict__
        or type(connection).cursor is not _DJANGO_CURSOR
        or CursorWrapper.execute is not _DJANGO_EXECUTE
    )


class DjangoStore(base.RecordsRows):
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

    def _rows(self, endpoint: str | None = DEFAULT_ENDPOINT) -> QuerySet[WebhookEvent]:
        rows: QuerySet[WebhookEvent] = WebhookEvent.objects.using(self.using)
        if endpoint is not None:
            rows = rows.filter(endpoint=endpoint)
        return rows

    def _event(self, event_id: str, endpoint: str) -> QuerySet[WebhookEvent]:
        rows: QuerySet[WebhookEvent] = self._rows(endpoint).filter(event_id=event_id)
        return rows

    @_migrate_hint
    def insert_row(self, row: dict[str, Any]) -> bool:
        # One raw insert-if-absent, no ORM model, no savepoint: in autocommit it is its
        # own committed transaction when execute() returns, and a duplicate is not an
        # error, so a caller's transaction (ATOMIC_REQUESTS) is never left broken.
        connection = connections[self.using]
        insert = _Insert.of(connection)
        # Built before the write lock is taken: other writers wait only for the SQL.
        params = insert.params(row, connection)
        return self._insert_one(_Prepared(*insert.statement(params), params, row))

    @_serialized
    def _insert_one(self, prepared: _Prepared) -> bool:
        connection = connections[self.using]
        if prepared.direct is not None and not _watched(connection):
            # Straight to the driver when nothing watches Django's cursor: its layers
            # (a cursor object, execute wrappers, the statement rewritten per execute)
            # cost an ack a twentieth of its time. Errors become Django's, as there.
            if connection.connection is None:
                connection.ensure_connection()
            with connection.wrap_database_errors:
                cursor = connection.connection.execute(prepared.direct, prepared.params)
            if cursor.rowcount == 1:
                return True
        else:
            with connection.cursor() as cursor:
                cursor.execute(prepared.sql, prepared.params)
                if cursor.rowcount == 1:
                    return True
        row = prepared.row
        self._event(row["id"], row["endpoint"]).update(deliveries=F("deliveries") + 1)
        return False

    @_migrate_hint
    def claim(
        self, event_id: str, lease_seconds: float, *, endpoint: str = DEFAULT_ENDPOINT
    ) -> Claim | None:
        now = self.clock()
        token = uuid.uuid4().hex
        if not self._take(event_id, endpoint, now, lease_seconds, token):
            return None
        # Read once the write lock is given back: while the lease holds, its holder is
        # the only writer of the row. Found gone only if the lease has already expired
        # (then as if this worker had crashed: the event is recovered).
        try:
            row = _readable(self._event(event_id, endpoint).filter(lease_token=token)).first()
        except Exception:
            # Taken but not read (the connection broke between the two statements): give
            # the lease back now, or the event would wait for it to run out.
            self._give_back(event_id, endpoint, token)
            raise
        return None if row is None else Claim(event=_stored(row), token=token)

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
        self._event(event_id, endpoint).filter(
            lease_token=token, status=Status.PROCESSING.value
        ).update(lease_until=now, due_at=now)

    @_serialized
    def _take(
        self, event_id: str, endpoint: str, now: float, lease_seconds: float, token: str
    ) -> bool:
        fields = _db_fields(base.claim_fields(now, lease_seconds, token))
        taken = (
            self._event(event_id, endpoint)
            .filter(status__in=base.values(CLAIMABLE), due_at__lte=now)
            .update(attempts=F("attempts") + 1, **fields)
        )
        return bool(taken)

    def _held(self, claim: Claim) -> QuerySet[WebhookEvent]:
        rows: QuerySet[WebhookEvent] = self._event(claim.event.id, claim.event.endpoint).filter(
            lease_token=claim.token, status=Status.PROCESSING.value
        )
        return rows

    def _update_claimed(
        self, claim: Claim, outcomes: Mapping[str, HandlerOutcome], fields: Mapping[str, Any]
    ) -> bool:
        # Read, merge, write back, each guarded by the lease token. No transaction is
        # needed: while the lease holds, its holder is the only writer of the row (and a
        # read-then-write transaction would fail at once on a busy SQLite database).
        # For the same reason the read takes no write lock: only the UPDATE waits.
        current = self._held(claim).values_list("outcomes", flat=True).first()
        if current is None:
            return False
        merged = {**current, **_outcomes_json(outcomes)}
        return self._write_claimed(claim, {"outcomes": merged, **_db_fields(fields)})

    @_serialized
    def _write_claimed(self, claim: Claim, values: dict[str, Any]) -> bool:
        return bool(self._held(claim).update(**values) == 1)

    @_migrate_hint
    @_serialized
    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        fields = _db_fields(base.renew_fields(self.clock(), lease_seconds))
        return bool(self._held(claim).update(**fields) == 1)

    @_migrate_hint
    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._update_claimed(claim, outcomes, {})

    @_migrate_hint
    def finish(
        self, claim: Claim, outcomes: Mapping[str, HandlerOutcome], verdict: Verdict
    ) -> bool:
        return self._update_claimed(claim, outcomes, base.finish_fields(verdict, self.clock()))

    @_migrate_hint
    def due(self, limit: int = 100, *, endpoint: str = DEFAULT_ENDPOINT) -> list[str]:
        with _recycled():
            ids = (
                self._rows(endpoint)
                .filter(status__in=base.values(CLAIMABLE), due_at__lte=self.clock())
                .order_by("due_at")
                .values_list("event_id", flat=True)[:limit]
            )
            return list(ids)

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
        with transaction.atomic(using=self.using):
            answers.get_or_create(endpoint=endpoint)
            answers.filter(endpoint=endpoint).update(failures=F("failures") + 1, kind=kind)
            return int(answers.values_list("failures", flat=True).get(endpoint=endpoint))

    @_migrate_hint
    @_serialized
    def clear_failures(self, endpoint: str) -> None:
        answers = FailedAnswers.objects.using(self.using).filter(endpoint=endpoint)
        # Read first: most answers are 2xx and there is nothing to clear.
        if answers.filter(failures__gt=0).exists():
            answers.update(failures=0)

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
            rows = rows.filter(type=event_type)
        return [_stored(row) for row in _readable(rows)[:limit]]

    @_migrate_hint
    @_serialized
    def replay(
        self, event_id: str, *, rerun_all: bool = False, endpoint: str = DEFAULT_ENDPOINT
    ) -> bool:
        fields = _db_fields(base.replay_fields(self.clock()))
        if rerun_all:
            fields["outcomes"] = {}
        replayed = (
            self._event(event_id, endpoint)
            .filter(status__in=base.values(REPLAYABLE))
            .update(**fields)
        )
        return bool(replayed == 1)

    @_migrate_hint
    @_serialized
    def resolve(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> bool:
        fields = _db_fields(base.resolve_fields(self.clock()))
        resolved = (
            self._event(event_id, endpoint)
            .filter(status__in=base.values(RESOLVABLE))
            .update(**fields)
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
