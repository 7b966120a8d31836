"""The inbox lifecycle, defined once: statuses, what each transition writes, and the
protocol every store implements.

Lifecycle of one event::

    record ──> pending ──claim──> processing ──> done         (every handler succeeded)
      │           ^                  │  │  └──> unhandled    (no handler matched its type)
      │           │   retry later    │  └──> dead            (attempts used up)
      │           └──── failed <─────┘
      └──> quarantined                (signed, but the body cannot be read as an event)

    processing whose lease expired (its worker died) is claimable again;
    replay puts any finished or failed event back to pending.

Stores never decide anything: the functions below say which fields each transition
writes (as epoch seconds and plain values), and a store applies them in its own
language (SQL, Lua, the Django ORM, a dict). A new status or a new column is a change
here plus one place per store.

Every transition after ``claim`` names the claim's token, so a worker that lost its
lease (it was too slow and another worker took over) cannot overwrite the result.
"""

from __future__ import annotations

import functools
import inspect
import json
import secrets
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import Enum
from typing import Any, NamedTuple, Protocol, TypeVar, runtime_checkable
from urllib.parse import unquote

from .._errors import ConfigurationError, StoreUnavailable

#: The endpoint an event belongs to when the receiver was not given one.
DEFAULT_ENDPOINT = "default"


class Status(str, Enum):
    """Where an event stands in its lifecycle."""

    PENDING = "pending"
    PROCESSING = "processing"
    DONE = "done"
    UNHANDLED = "unhandled"
    FAILED = "failed"
    DEAD = "dead"
    QUARANTINED = "quarantined"

    def __str__(self) -> str:
        return self.value


#: Waiting for a worker: due when ``due_at`` has passed. A ``processing`` event is due
#: once its lease has run out (its ``due_at`` is the lease's end).
CLAIMABLE = frozenset({Status.PENDING, Status.FAILED, Status.PROCESSING})
#: Nothing more will happen to these on their own; they may be pruned after retention.
FINISHED = frozenset({Status.DONE, Status.UNHANDLED, Status.DEAD, Status.QUARANTINED})
#: ``replay`` puts these back to pending (never one that a worker holds).
REPLAYABLE = FINISHED | {Status.FAILED}
#: ``resolve`` marks these done by hand, without running handlers.
RESOLVABLE = frozenset({Status.FAILED, Status.DEAD, Status.UNHANDLED, Status.QUARANTINED})


def values(statuses: frozenset[Status]) -> tuple[str, ...]:
    """The status names of a set, in a stable order (for SQL ``IN`` lists and Lua)."""
    return tuple(sorted(status.value for status in statuses))


# Text in a store --------------------------------------------------------------------
#
# The one codec every store keeps text through (why and how: docs/stores.md, "Any
# text, in every store"), applied by the row builders and read_row below.

#: What a text stored in its escaped form starts with.
ESCAPED_PREFIX = 'json:"'


def _storable(value: str) -> bool:
    if "\x00" in value or value.startswith(ESCAPED_PREFIX):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        return False
    return True


def store_text(value: str) -> str:
    r"""``value`` as every store can hold it: itself, or its escaped form.

    >>> store_text("evt_1"), store_text("a\x00b"), store_text("\ud83d")
    ('evt_1', 'json:"a\\u0000b"', 'json:"\\ud83d"')
    """
    return value if _storable(value) else "json:" + json.dumps(value)


def load_text(value: str) -> str:
    r"""The text `store_text` stored as ``value``.

    >>> load_text('json:"a\\u0000b"') == "a\x00b", load_text("evt_1")
    (True, 'evt_1')
    """
    if value.startswith(ESCAPED_PREFIX):
        try:
            decoded = json.loads(value[len("json:") :])
        except ValueError:  # not written by store_text: shown as it is
            return value
        if isinstance(decoded, str):
            return decoded
    return value


def _stored_or_none(value: str | None) -> str | None:
    return None if value is None else store_text(value)


@dataclass(frozen=True)
class HandlerOutcome:
    """The result of the latest run of one handler on one event.

    ``superseded``: a newest-only handler was not given the event, because that
    resource had a newer one applied (or this one already). It counts as a success:
    the handler is never run on that event again.

    >>> HandlerOutcome.from_json({"ok": True, "at": 2.0, "superseded": True}).to_json()
    {'ok': True, 'error': '', 'at': 2.0, 'superseded': True}
    """

    ok: bool
    error: str | None = None
    at: float = 0.0
    superseded: bool = False

    def to_json(self) -> dict[str, Any]:
        # No nulls: stores merge these with JSON merge-patch, where null means "delete".
        # "superseded" is written only when true: a superseded outcome is final (never
        # re-run, so never merged over) until a replay of every handler clears them all.
        value: dict[str, Any] = {"ok": self.ok, "error": self.error or "", "at": self.at}
        if self.superseded:
            value["superseded"] = True
        return value

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> HandlerOutcome:
        return cls(
            ok=bool(value["ok"]),
            error=value.get("error") or None,
            at=float(value.get("at", 0.0)),
            superseded=bool(value.get("superseded", False)),
        )

    @classmethod
    def superseded_at(cls, at: float) -> HandlerOutcome:
        """A newest-only handler not given the event at ``at``: see ``superseded``."""
        return cls(ok=True, at=at, superseded=True)

    @classmethod
    def succeeded(cls, at: float) -> HandlerOutcome:
        """A handler run that succeeded at ``at`` (epoch seconds)."""
        return cls(ok=True, at=at)


def _stored_outcome(outcome: HandlerOutcome) -> dict[str, Any]:
    return {**outcome.to_json(), "error": store_text(outcome.error or "")}


def outcome_json(outcome: HandlerOutcome) -> str:
    """One outcome as a store keeps it: compact JSON, its error through `store_text`."""
    return json.dumps(_stored_outcome(outcome), separators=(",", ":"))


def dump_outcomes(outcomes: Mapping[str, HandlerOutcome]) -> str:
    """The outcomes as a store keeps them: compact JSON, names and errors through
    `store_text` (so the JSON holds no NUL and no lone surrogate, which
    PostgreSQL's jsonb refuses even escaped).

    >>> dump_outcomes({"h": HandlerOutcome(ok=False, error="boom", at=1.5)})
    '{"h":{"ok":false,"error":"boom","at":1.5}}'
    """
    stored = {store_text(name): _stored_outcome(o) for name, o in outcomes.items()}
    return json.dumps(stored, separators=(",", ":"))


def load_outcomes(
    text: str | bytes | Mapping[str, Mapping[str, Any] | HandlerOutcome] | None,
) -> dict[str, HandlerOutcome]:
    """Outcomes from what `dump_outcomes` wrote (JSON text, or the mapping a driver
    parsed it into), or from a mapping of `HandlerOutcome` (a store that keeps
    the objects themselves: taken as they are)."""
    if not text:
        return {}
    raw = json.loads(text) if isinstance(text, (str, bytes)) else text
    loaded: dict[str, HandlerOutcome] = {}
    for name, value in raw.items():
        if isinstance(value, HandlerOutcome):
            loaded[name] = value
            continue
        outcome = HandlerOutcome.from_json(value)
        error = None if outcome.error is None else load_text(outcome.error)
        loaded[load_text(name)] = replace(outcome, error=error)
    return loaded


# What each transition writes ------------------------------------------------------
#
# Column names are the stores' own: ``due_at`` is the one time a worker looks at (when a
# pending event arrived, when a failed one may retry, when a lease runs out);
# ``lease_token`` names the worker holding the lease. Times are epoch seconds.


@dataclass(frozen=True)
class Verdict:
    """How a claimed event leaves ``processing``: the one place that decides between
    done, unhandled, a retry and dead.

    >>> Verdict.after_attempt({}, matched=False, attempts=1, max_attempts=3, retry_at=9.0).status
    <Status.UNHANDLED: 'unhandled'>
    >>> failed = {"h": HandlerOutcome(ok=False, error="boom")}
    >>> Verdict.after_attempt(failed, matched=True, attempts=1, max_attempts=3, retry_at=9.0)
    Verdict(status=<Status.FAILED: 'failed'>, error='h: boom', retry_at=9.0)
    >>> Verdict.after_attempt(failed, matched=True, attempts=3, max_attempts=3, retry_at=9.0).status
    <Status.DEAD: 'dead'>
    """

    status: Status
    error: str | None = None
    retry_at: float | None = None
    #: What ``attempts`` goes back to when this attempt does not count (see `busy`);
    #: None keeps the count the claim made.
    attempts: int | None = field(default=None, repr=False)

    @classmethod
    def after_attempt(
        cls,
        outcomes: Mapping[str, HandlerOutcome],
        *,
        matched: bool,
        attempts: int,
        max_attempts: int,
        retry_at: float | Callable[[], float],
    ) -> Verdict:
        """``retry_at`` may be a function, called only when the verdict is a retry (so a
        verdict of done draws no jitter)."""
        failures = [f"{name}: {o.error}" for name, o in outcomes.items() if not o.ok]
        if failures:
            error = "; ".join(failures)
            if attempts >= max_attempts:
                return cls(Status.DEAD, error)
            return cls(Status.FAILED, error, retry_at() if callable(retry_at) else retry_at)
        return cls.succeeded(matched)

    @classmethod
    def busy(cls, retry_at: float, attempts: int) -> Verdict:
        """A newest-only handler found its resource's mark held by another worker: back
        to pending, due at ``retry_at``, and the attempt the claim counted (``attempts``
        is the claimed event's count) is taken back, so waiting never leads to dead.
        The outcomes of handlers that already succeeded are kept (they never re-run).

        >>> busy = Verdict.busy(5.0, attempts=3)
        >>> busy.status, busy.retry_at, busy.attempts
        (<Status.PENDING: 'pending'>, 5.0, 2)
        """
        return cls(Status.PENDING, None, retry_at, max(attempts - 1, 0))

    @staticmethod
    def succeeded(matched: bool) -> Verdict:
        """The verdict of an attempt with no failed handler: done, or unhandled when no
        handler matched."""
        return Verdict(Status.DONE if matched else Status.UNHANDLED)


def new_row(
    endpoint: str,
    event_id: str,
    event_type: str,
    created_at: float,
    body: bytes,
    now: float,
    status: Status | str = Status.PENDING,
    error: str | None = None,
) -> dict[str, Any]:
    """Every column of a newly recorded event (``outcomes`` empty), in the order every
    store writes them; text through `store_text`.

    >>> row = new_row(endpoint="default", event_id="evt_1", event_type="deal.won",
    ...               created_at=1.0, body=b"{}", now=2.0)
    >>> row["status"], row["due_at"], row["processed_at"]
    ('pending', 2.0, None)
    >>> new_row(endpoint="default", event_id="evt_1", event_type="x", created_at=1.0,
    ...         body=b"{}", now=2.0, status="quarantined")["processed_at"]
    2.0
    """
    status = Status(status)
    finished = status in FINISHED
    return {
        "endpoint": store_text(endpoint),
        "id": store_text(event_id),
        "type": store_text(event_type),
        "created_at": created_at,
        "received_at": now,
        "body": bytes(body),
        "status": status.value,
        "attempts": 0,
        "deliveries": 1,
        "due_at": None if finished else now,
        "next_attempt_at": None,
        "lease_until": None,
        "lease_token": None,
        "processed_at": now if finished else None,
        "last_error": _stored_or_none(error),
    }


class RecordsRows:
    """`Store.record` written once: a store inherits it and implements only
    `insert_row`, given every column of the new event from `new_row`."""

    clock: Callable[[], float]

    def record(
        self,
        event_id: str,
        event_type: str,
        created_at: datetime,
        body: bytes,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        status: Status = Status.PENDING,
        error: str | None = None,
        resource_id: str | None = None,
    ) -> bool:
        """Store the event if its id is new (True) or count one more delivery (False)."""
        row = new_row(
            endpoint=endpoint,
            event_id=event_id,
            event_type=event_type,
            created_at=created_at.timestamp(),
            body=body,
            now=self.clock(),
            status=status,
            error=error,
        )
        return self.insert_row(row, resource_id)

    def insert_row(self, row: dict[str, Any], resource_id: str | None) -> bool:
        """Insert ``row`` unless ``(row["endpoint"], row["id"])`` exists; then add one
        to that event's ``deliveries``. True if inserted. Atomic across processes.
        ``resource_id`` is as `Store.record` was given it."""
        raise NotImplementedError


class ClaimedWrites:
    """`Store.renew`, `Store.checkpoint` and `Store.finish` written
    once, for a store whose one lease-checked write is ``_claimed(claim, fields,
    outcomes)``: apply ``fields`` and merge ``outcomes`` if the claim's token still holds
    the lease, returning whether it did."""

    clock: Callable[[], float]

    def _claimed(
        self, claim: Claim, fields: Mapping[str, Any], outcomes: Mapping[str, HandlerOutcome]
    ) -> bool:
        raise NotImplementedError

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        return self._claimed(claim, renew_fields(self.clock(), lease_seconds), {})

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._claimed(claim, {}, outcomes)

    def finish(
        self, claim: Claim, outcomes: Mapping[str, HandlerOutcome], verdict: Verdict
    ) -> bool:
        return self._claimed(claim, finish_fields(verdict, self.clock()), outcomes)


def new_token() -> str:
    """A claim's lease token: 32 random hex digits."""
    return secrets.token_hex(16)


def claim_fields(now: float, lease_seconds: float, token: str) -> dict[str, Any]:
    """Taking the lease; the store also adds one to ``attempts``."""
    until = now + lease_seconds
    return {
        "status": Status.PROCESSING.value,
        "lease_token": token,
        "lease_until": until,
        "due_at": until,
    }


def renew_fields(now: float, lease_seconds: float) -> dict[str, Any]:
    """Extending a lease still held (the heartbeat of a long handler)."""
    until = now + lease_seconds
    return {"lease_until": until, "due_at": until}


def finish_fields(verdict: Verdict, now: float) -> dict[str, Any]:
    """Leaving ``processing``; the store also merges the outcomes in."""
    finished = verdict.status in FINISHED
    return {
        "status": verdict.status.value,
        "last_error": _stored_or_none(verdict.error),
        "due_at": verdict.retry_at,
        "next_attempt_at": verdict.retry_at,
        "lease_until": None,
        "lease_token": None,
        "processed_at": now if finished else None,
    } | ({} if verdict.attempts is None else {"attempts": verdict.attempts})


def replay_fields(now: float) -> dict[str, Any]:
    """Back to pending, due now, attempts counted afresh (``last_error`` is kept as history;
    with ``rerun_all`` the store also clears the outcomes)."""
    return {
        "status": Status.PENDING.value,
        "attempts": 0,
        "due_at": now,
        "next_attempt_at": None,
        "lease_until": None,
        "lease_token": None,
        "processed_at": None,
    }


def resolve_fields(now: float) -> dict[str, Any]:
    """Marked done by hand."""
    return {
        "status": Status.DONE.value,
        "due_at": None,
        "next_attempt_at": None,
        "lease_until": None,
        "lease_token": None,
        "processed_at": now,
    }


@dataclass(frozen=True)
class StoredEvent:
    """One row of the inbox. Times are UTC datetimes; ``body`` is the raw signed bytes.

    ``unreadable`` is set (and ``status`` shown as quarantined) when the store holds a
    row it cannot fully read, e.g. a time outside what Python can represent, written by
    an older version: such a row is listed and quarantined, never allowed to block.
    """

    id: str
    type: str
    created_at: datetime
    received_at: datetime
    body: bytes
    status: Status
    attempts: int = 0
    deliveries: int = 1
    next_attempt_at: datetime | None = None
    lease_until: datetime | None = None
    processed_at: datetime | None = None
    last_error: str | None = None
    outcomes: Mapping[str, HandlerOutcome] = field(default_factory=dict)
    endpoint: str = DEFAULT_ENDPOINT
    unreadable: str | None = None

    @property
    def succeeded_handlers(self) -> frozenset[str]:
        return frozenset(name for name, outcome in self.outcomes.items() if outcome.ok)

    def summary(self) -> str:
        """One line for a terminal: id, type, status, attempts, deliveries, last error."""
        error = f"  {self.last_error}" if self.last_error else ""
        return (
            f"{self.id:32} {self.type:22} {self.status.value:11} "
            f"attempts={self.attempts} deliveries={self.deliveries}{error}"
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (times as ISO-8601, the body as text) for CLIs and logs."""

        def when(value: datetime | None) -> str | None:
            return None if value is None else value.isoformat()

        return {
            "id": self.id,
            "endpoint": self.endpoint,
            "type": self.type,
            "status": self.status.value,
            "created_at": when(self.created_at),
            "received_at": when(self.received_at),
            "attempts": self.attempts,
            "deliveries": self.deliveries,
            "next_attempt_at": when(self.next_attempt_at),
            "lease_until": when(self.lease_until),
            "processed_at": when(self.processed_at),
            "last_error": self.last_error,
            "outcomes": {name: o.to_json() for name, o in self.outcomes.items()},
            "body": self.body.decode("utf-8", "replace"),
        }


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _when(value: Any) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(float(value), timezone.utc)


def read_row(row: Mapping[str, Any]) -> StoredEvent:
    """Build a `StoredEvent` from a store's row, keyed by column name; times may
    be epoch seconds or datetimes, ``outcomes`` JSON text or a dict, ``body`` any
    bytes-like, text as `store_text` wrote it.

    Never raises for what a row holds: a value it cannot read makes the event
    ``unreadable`` (shown as quarantined, with the reason), so one bad row cannot stop
    a listing, a claim or a worker.
    """
    try:
        last_error = row.get("last_error")
        return StoredEvent(
            id=load_text(str(row["id"])),
            type=load_text(str(row["type"])),
            created_at=_when(row["created_at"]) or _EPOCH,
            received_at=_when(row["received_at"]) or _EPOCH,
            body=bytes(row["body"]),
            status=Status(row["status"]),
            attempts=int(row["attempts"]),
            deliveries=int(row["deliveries"]),
            next_attempt_at=_when(row.get("next_attempt_at")),
            lease_until=_when(row.get("lease_until")),
            processed_at=_when(row.get("processed_at")),
            last_error=None if last_error is None else load_text(str(last_error)),
            outcomes=load_outcomes(row.get("outcomes")),
            endpoint=load_text(str(row.get("endpoint") or DEFAULT_ENDPOINT)),
        )
    except Exception as exc:  # any unreadable value, whatever its kind
        reason = f"unreadable stored row: {type(exc).__name__}: {exc}"[:500]
        body = row.get("body")
        return StoredEvent(
            id=load_text(str(row.get("id"))),
            endpoint=load_text(str(row.get("endpoint") or DEFAULT_ENDPOINT)),
            type=load_text(str(row.get("type"))),
            created_at=_EPOCH,
            received_at=_EPOCH,
            body=bytes(body) if isinstance(body, (bytes, bytearray, memoryview)) else b"",
            status=Status.QUARANTINED,
            last_error=reason,
            unreadable=reason,
        )


@dataclass(frozen=True)
class Claim:
    """Proof that one worker holds the lease on one event."""

    event: StoredEvent
    token: str


# The store's edge -------------------------------------------------------------------

_Class = TypeVar("_Class", bound=type)


def store_edge(*driver_errors: type[Exception]) -> Callable[[_Class], _Class]:
    """A class decorator for a store: its constructor and each public method raise
    `StoreUnavailable` (the driver's error as its
    ``__cause__``) for any of ``driver_errors``, so what calls a store (the receiver
    answering 503, the processor retrying a write) never sees a driver's exception::

        @store_edge(sqlite3.Error, OSError)
        class SQLiteStore(SQLStore): ...
    """

    def decorate(cls: _Class) -> _Class:
        names = {"__init__"} | {
            name
            for klass in cls.__mro__
            for name, value in vars(klass).items()
            if not name.startswith("_") and inspect.isfunction(value)
        }
        for name in names:
            method = getattr(cls, name)
            if inspect.isfunction(method) and not hasattr(method, "__store_edge__"):
                setattr(cls, name, _unavailable_on(method, driver_errors))
        return cls

    return decorate


def _unavailable_on(
    method: Callable[..., Any], errors: tuple[type[Exception], ...]
) -> Callable[..., Any]:
    @functools.wraps(method)
    def guarded(self: object, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except errors as exc:
            raise StoreUnavailable(
                f"{type(self).__name__}.{method.__name__}: {type(exc).__name__}: {exc}"
            ) from exc

    guarded.__store_edge__ = True  # type: ignore[attr-defined]
    return guarded


@runtime_checkable
class Store(Protocol):
    """What the receiver and the processor need from a durable inbox: the required part
    of a store (the optional ones, checked for where they are used: `StoreOperations`,
    `AnswerCounter`, `ResourceMarks`, `EndpointRegistry`).

    Implementations must make `record` and `claim` atomic across every
    process and host that shares the store: that is what makes dedupe and
    "one worker at a time" hold. Events are keyed by ``(endpoint, id)``: receivers with
    different endpoints share a store without seeing each other's events. Methods that
    take ``endpoint=None`` mean every endpoint. `iverton_webhooks.testing.StoreContract`
    is the test suite a store proves itself with.
    """

    #: True when calls do I/O that may block (async adapters then call it in a thread).
    blocking: bool
    clock: Callable[[], float]

    def record(
        self,
        event_id: str,
        event_type: str,
        created_at: datetime,
        body: bytes,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        status: Status = Status.PENDING,
        error: str | None = None,
        resource_id: str | None = None,
    ) -> bool:
        """Store the event if its id is new (True) or count one more delivery (False).
        ``status`` is pending, or quarantined (with ``error`` saying why).
        ``resource_id`` is ``Envelope.resource_id`` when the caller parsed the body: a
        store that keeps it (for searching) reads it with ``resource_id_of`` when None."""
        ...

    def claim(
        self, event_id: str, lease_seconds: float, *, endpoint: str = DEFAULT_ENDPOINT
    ) -> Claim | None:
        """Take the lease on a claimable event that is due, or None."""
        ...

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        """Extend a lease still held; False if it was lost."""
        ...

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        """Merge handler outcomes while still processing; False if the lease was lost."""
        ...

    def finish(
        self, claim: Claim, outcomes: Mapping[str, HandlerOutcome], verdict: Verdict
    ) -> bool:
        """Merge outcomes and write `finish_fields`; False if the lease was lost."""
        ...

    def due(self, limit: int = 100, *, endpoint: str = DEFAULT_ENDPOINT) -> list[str]:
        """Ids that a worker may claim now, soonest due first."""
        ...

    def get(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> StoredEvent | None: ...

    def oldest_due(self, *, endpoint: str = DEFAULT_ENDPOINT) -> float | None:
        """The earliest ``due_at`` (epoch seconds) among the events due now, or None:
        how long the inbox has kept a worker waiting."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class StoreOperations(Protocol):
    """The optional part of a store that operations need: the ``events``, ``replay``,
    ``resolve``, ``prune`` and ``stats`` commands, the admin and health counts. Without
    it a store still receives and processes; those commands refuse it by name (see
    `operations_of`)."""

    def list(
        self,
        status: Status | str | None = None,
        event_type: str | None = None,
        limit: int = 100,
        *,
        endpoint: str | None = DEFAULT_ENDPOINT,
    ) -> Sequence[StoredEvent]:
        """Newest first, filtered by status and type."""
        ...

    def replay(
        self, event_id: str, *, rerun_all: bool = False, endpoint: str = DEFAULT_ENDPOINT
    ) -> bool:
        """Queue a `REPLAYABLE` event again. Handlers that already succeeded are
        kept unless ``rerun_all``."""
        ...

    def resolve(self, event_id: str, *, endpoint: str = DEFAULT_ENDPOINT) -> bool:
        """Mark a `RESOLVABLE` event done by hand, without running handlers."""
        ...

    def prune(self, received_before: float, *, endpoint: str | None = None) -> int:
        """Delete `FINISHED` events received before the given epoch; return how many."""
        ...

    def stats(self, *, endpoint: str | None = DEFAULT_ENDPOINT) -> dict[Status, int]:
        """How many events are in each status (statuses with none are left out)."""
        ...

    def count(self, *, endpoint: str | None = None) -> int:
        """How many events the store holds (every endpoint when None)."""
        ...


@runtime_checkable
class AnswerCounter(Protocol):
    """The optional part of a store that counts failed answers in a row across every
    process sharing it (the sender disables an endpoint after 5). Without it each
    process counts its own answers alone."""

    def note_failure(self, endpoint: str, kind: str) -> int:
        """Count one more non-2xx answer in a row for ``endpoint`` (``kind`` says which);
        returns the count. Atomic across every process sharing the store."""
        ...

    def clear_failures(self, endpoint: str) -> None:
        """A 2xx: the endpoint's failures in a row start again from zero. Cheap when
        there are none (it reads before it writes)."""
        ...


@runtime_checkable
class CompleteStore(Store, StoreOperations, AnswerCounter, Protocol):
    """A store with every part, as every built-in store is."""


def operations_of(store: Store) -> StoreOperations:
    """``store`` as `StoreOperations`; `ConfigurationError` naming what is missing
    when a store lacks that part."""
    if isinstance(store, StoreOperations):
        return store
    raise ConfigurationError(
        f"{type(store).__name__} does not implement StoreOperations (missing: "
        f"{', '.join(missing_members(store, StoreOperations))}): listing, replay, resolve, "
        "prune and stats need it"
    )


def missing_members(obj: object, part: type) -> list[str]:
    """What ``obj`` lacks of the protocol ``part``, in the protocol's order: attributes it
    does not have, methods it has not as something callable."""
    attributes = [name for name in inspect.get_annotations(part) if not hasattr(obj, name)]
    methods = [name for name, value in vars(part).items() if inspect.isfunction(value)]
    return attributes + [
        name
        for name in methods
        if not name.startswith("_") and not callable(getattr(obj, name, None))
    ]


# Newest-only marks ------------------------------------------------------------------


class MarkKey(NamedTuple):
    """Whose mark: one newest-only handler on one resource of one endpoint.
    ``resource`` is the event's family and ``data.id`` (``"deal/d_1"``)."""

    endpoint: str
    resource: str
    handler: str


class MarkAnswer(str, Enum):
    """What `ResourceMarks.take_mark` decided."""

    #: The caller holds the mark now: run the handler, then `release_mark`.
    RUN = "run"
    #: This event, or a newer one of the resource, was already applied: skip it.
    SUPERSEDED = "superseded"
    #: Another holder has the mark and its hold has not run out: try again later.
    BUSY = "busy"


@runtime_checkable
class ResourceMarks(Protocol):
    """The optional part of a store that newest-only handlers need: per `MarkKey`, the
    newest event applied (its ``created_at`` and id) and who holds the mark now.

    Each method is one atomic step across every process and host sharing the store.
    Times are epoch seconds on the store's ``clock``; text goes through `store_text`.
    """

    def take_mark(
        self, key: MarkKey, created_at: float, event_id: str, holder: str, hold_seconds: float
    ) -> MarkAnswer:
        """SUPERSEDED when the applied event is ``event_id`` itself or was created after
        ``created_at``; else BUSY when another holder's hold has not ended; else RUN,
        holding the mark for ``holder`` until ``hold_seconds`` from now. Events with the
        same ``created_at`` and different ids are not ordered: each is RUN in turn."""
        ...

    def renew_mark(self, key: MarkKey, holder: str, hold_seconds: float) -> bool:
        """Extend ``holder``'s hold to ``hold_seconds`` from now; False if it lost it."""
        ...

    def release_mark(self, key: MarkKey, holder: str, applied: tuple[float, str] | None) -> None:
        """End ``holder``'s hold (if it still has it). ``applied`` is ``(created_at,
        event_id)`` of the event its handler just succeeded on: it becomes the applied
        event unless a newer one already is, whether or not the hold was kept (the
        handler did apply it). None (the handler failed) leaves it."""
        ...


# Endpoints that live in the store ---------------------------------------------------


def masked_secret(secret: str) -> str:
    """``secret`` as a repr, a log line or a page may show it: its first characters
    (at most 6, the dashboard's ``whsec_``, which tells nothing, and never more than a
    third of it), an ellipsis, and for a secret of 28 characters or more (as long as the
    dashboard's) its last 4, so that two secrets of one endpoint can be told apart.

    >>> masked_secret("whsec_9f8a7b6c5d4e3f2a1b0c9d8e7f6a"), masked_secret("short")
    ('whsec_…7f6a', 's…')
    """
    tail = secret[-4:] if len(secret) >= 28 else ""
    return secret[: min(6, len(secret) // 3)] + "…" + tail


@dataclass(frozen=True, repr=False)
class EndpointSecret:
    """One signing secret of a registered endpoint: the current one (``valid_until``
    None), or an earlier one still accepted until ``valid_until`` (epoch seconds on the
    store's clock), after which it is refused. Its repr masks the secret."""

    secret: str
    valid_until: float | None = None

    def __repr__(self) -> str:
        return f"EndpointSecret({masked_secret(self.secret)!r}, valid_until={self.valid_until!r})"


@dataclass(frozen=True)
class EndpointRecord:
    """An endpoint kept in the store (`EndpointRegistry`): its name, its secrets (the
    current one first), whether it takes requests, and when it was created and last
    changed (epoch seconds on the store's clock). Its repr masks the secrets (each
    `EndpointSecret`'s does)."""

    name: str
    secrets: tuple[EndpointSecret, ...]
    enabled: bool
    created_at: float
    updated_at: float

    def valid_secrets(self, now: float) -> tuple[str, ...]:
        """The secrets a signature may be checked against at ``now``: the current one
        first, then the earlier ones whose ``valid_until`` is after ``now``."""
        current = [s.secret for s in self.secrets if s.valid_until is None]
        earlier = [
            s.secret for s in self.secrets if s.valid_until is not None and s.valid_until > now
        ]
        return (*current, *earlier)


def rotated(
    secrets: Sequence[EndpointSecret], new_secret: str, now: float, grace_seconds: float
) -> tuple[EndpointSecret, ...]:
    """The secrets after a rotation to ``new_secret`` at ``now``, the one place the
    rule lives: the new secret is current; the one that was current stays valid until
    ``now + grace_seconds``; earlier ones keep their own ``valid_until``; those past
    it (and an earlier copy of ``new_secret``) are dropped.

    >>> before = (EndpointSecret("whsec_b"), EndpointSecret("whsec_a", 500.0),
    ...           EndpointSecret("whsec_0", 50.0))
    >>> [(s.secret, s.valid_until) for s in rotated(before, "whsec_c", 100.0, 3600)]
    [('whsec_c', None), ('whsec_b', 3700.0), ('whsec_a', 500.0)]
    """
    others = [s for s in secrets if s.secret != new_secret]
    previous = [
        EndpointSecret(s.secret, now + grace_seconds) for s in others if s.valid_until is None
    ]
    earlier = [s for s in others if s.valid_until is not None]
    still = [s for s in (*previous, *earlier) if s.valid_until is not None and s.valid_until > now]
    return (EndpointSecret(new_secret), *still)


def dump_secrets(secrets: Sequence[EndpointSecret]) -> str:
    """Secrets as a store keeps them: compact JSON, each secret through `store_text`.

    >>> dump_secrets((EndpointSecret("whsec_1"), EndpointSecret("whsec_0", 2.5)))
    '[{"secret":"whsec_1","valid_until":null},{"secret":"whsec_0","valid_until":2.5}]'
    """
    stored = [{"secret": store_text(s.secret), "valid_until": s.valid_until} for s in secrets]
    return json.dumps(stored, separators=(",", ":"))


def load_secrets(text: str | bytes) -> tuple[EndpointSecret, ...]:
    """The secrets `dump_secrets` wrote. Anything else is read as no secret: that
    endpoint accepts no signature until its next rotation replaces them, and its row
    blocks no listing.

    >>> load_secrets('[{"secret":"whsec_9f8a7b6c5d4e","valid_until":null}]')
    (EndpointSecret('whsec_…', valid_until=None),)
    >>> load_secrets("{oops")
    ()
    """
    try:
        return tuple(
            EndpointSecret(
                load_text(item["secret"]),
                None if item["valid_until"] is None else float(item["valid_until"]),
            )
            for item in json.loads(text)
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return ()


def read_endpoint(
    name: str, secrets: str | bytes, enabled: object, created_at: float, updated_at: float
) -> EndpointRecord:
    """An `EndpointRecord` from what a store keeps: ``name`` through `store_text`,
    ``secrets`` as `dump_secrets` wrote them, ``enabled`` anything truthy (SQLite's
    1), times as epoch seconds."""
    return EndpointRecord(
        name=load_text(name),
        secrets=load_secrets(secrets),
        enabled=bool(enabled),
        created_at=float(created_at),
        updated_at=float(updated_at),
    )


@runtime_checkable
class EndpointRegistry(Protocol):
    """The optional part of a store that keeps endpoints and their secrets, for apps
    whose endpoints come and go at run time. Each method is one atomic step across
    every process and host sharing the store; times are epoch seconds on the store's
    ``clock``; names and secrets go through `store_text`. A store keeps the secrets it
    is given: checking them is its callers' work."""

    def add_endpoint(self, name: str, secret: str) -> bool:
        """Register ``name``, enabled, with ``secret`` current; False if it exists."""
        ...

    def get_endpoint(self, name: str) -> EndpointRecord | None:
        """The endpoint named ``name``, or None."""
        ...

    def list_endpoints(self) -> list[EndpointRecord]:
        """Every registered endpoint, by name."""
        ...

    def rotate_endpoint(self, name: str, secret: str, grace_seconds: float) -> bool:
        """Make ``secret`` current, by `rotated`, in one read-modify-write that no
        concurrent rotation can interleave with; False if there is no such endpoint."""
        ...

    def set_endpoint_enabled(self, name: str, enabled: bool) -> bool:
        """Enable or disable ``name``; False if there is no such endpoint."""
        ...

    def remove_endpoint(self, name: str) -> bool:
        """Forget ``name`` and its secrets (its events stay); False if it was not there."""
        ...


class OpensFromURL(Protocol):
    """What a store class gives the registry of store URLs (see
    `iverton_webhooks.inbox.register_store`)."""

    @classmethod
    def from_url(cls, url: str) -> Store:
        """A store for ``url`` (its scheme is one the class was registered for)."""
        ...

    @classmethod
    def missing_inbox(cls, url: str) -> str | None:
        """Why no inbox exists yet at ``url`` (nothing may be created while checking),
        or None if one does."""
        ...


def pop_query(url: str, key: str) -> tuple[str, str | None]:
    """Take our own option out of a URL's query, so the driver never sees it.

    The other parameters keep their exact spelling: libpq does not read ``+`` as a
    space, so decoding and re-encoding them could change their meaning.

    >>> pop_query("postgresql://h/db?sslmode=require&table=t1", "table")
    ('postgresql://h/db?sslmode=require', 't1')
    """
    base, _, query = url.partition("?")  # not urlsplit: it drops the "//" of "scheme:///db"
    kept, value = [], None
    for item in query.split("&") if query else []:
        name, _, raw = item.partition("=")
        if unquote(name) == key:
            value = unquote(raw)
        else:
            kept.append(item)
    return (f"{base}?{'&'.join(kept)}" if kept else base), value
