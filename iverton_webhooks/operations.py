"""What every command line does, written once: list, replay, work, prune and stats.

``iverton-webhooks``, ``flask iverton`` and the Django management commands are thin
shells around these functions: each finds the user's own :class:`Processor` (its store,
router, retry policy, lease and handler timeout) and passes it here, so the three agree
on flags, defaults, messages and exit codes:

- ``0`` (:data:`OK`): done;
- ``1`` (:data:`NOTHING_DONE`): nothing to do, or only part of it done; for ``stats``
  with thresholds, a threshold exceeded (unhealthy);
- ``2`` (:data:`USAGE`): a usage or configuration error (a missing inbox, a prune
  span that breaks the retention rule, a worker with no handlers).

An operation writes its normal lines through ``out`` and, when it ends with a non-zero
code, raises :class:`OperationError` whose message is the last line; each shell shows
that message the way its framework shows errors and exits with the code.

Every human-readable line goes through :func:`printable`: ids, types and errors come
from signed but foreign input, and must not reach a terminal as escape sequences.
JSON lines keep the exact values (``json.dumps`` escapes control characters itself).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, unquote

from .errors import ConfigurationError, WebhookError
from .events import EVENT_TYPES
from .health import Health, Thresholds
from .inbox.base import Status, StoredEvent
from .router import Router
from .text import printable

if TYPE_CHECKING:
    from .worker import Result

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_INTERVAL",
    "DEFAULT_LIMIT",
    "NOTHING_DONE",
    "OK",
    "USAGE",
    "Operable",
    "OperationError",
    "event_line",
    "has_handlers",
    "list_events",
    "missing_inbox",
    "printable",
    "prune",
    "replay",
    "stats",
    "thresholds",
    "work",
]

OK, NOTHING_DONE, USAGE = 0, 1, 2

#: Defaults shared by every command line.
DEFAULT_LIMIT = 50
DEFAULT_INTERVAL = 5.0
DEFAULT_BATCH = 1000

#: Wide enough for every status name ("quarantined"), so columns stay aligned.
STATUS_WIDTH = max(len(status.value) for status in Status)

Echo = Callable[[str], None]


class OperationError(WebhookError):
    """A command that could not do (all of) its work: the message to show, and the
    exit code (:data:`NOTHING_DONE` or :data:`USAGE`)."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(printable(message))
        self.code = code


class Operable(Protocol):
    """What the operations need of a :class:`~iverton_webhooks.processor.Processor`."""

    @property
    def endpoint(self) -> str: ...

    @property
    def router(self) -> Router: ...

    def recover(self, limit: int | None = None) -> dict[Result, int]: ...

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool: ...

    def replay_dead(self, *, rerun_all: bool = False) -> list[str]: ...

    def prune(self, older_than: timedelta | None = None) -> int: ...

    def stats(self) -> dict[Status, int]: ...

    def health(self) -> Health: ...

    def list(
        self, status: Status | str | None = None, event_type: str | None = None, limit: int = 100
    ) -> Sequence[StoredEvent]: ...

    def get(self, event_id: str) -> StoredEvent | None: ...


def event_line(event: StoredEvent) -> str:
    """One escaped line for a terminal: id, type, status, attempts, deliveries, error."""
    error = f"  {printable(event.last_error)}" if event.last_error else ""
    return (
        f"{printable(event.id):32} {printable(event.type):24} "
        f"{event.status.value:{STATUS_WIDTH}} "
        f"attempts={event.attempts} deliveries={event.deliveries}{error}"
    )


def list_events(
    processor: Operable,
    out: Echo,
    *,
    status: str | None = None,
    event_type: str | None = None,
    limit: int = DEFAULT_LIMIT,
    as_json: bool = False,
) -> int:
    """Stored events of the processor's endpoint, newest first, filtered by status and
    type. ``as_json``: one exact JSON object per line (nothing at all when empty)."""
    if limit < 1:
        raise OperationError(f"--limit must be at least 1, not {limit}")
    events = processor.list(status=status, event_type=event_type, limit=limit)
    for event in events:
        out(json.dumps(event.to_json()) if as_json else event_line(event))
    if not events and not as_json:
        out("no events")
    return OK


def replay(
    processor: Operable,
    out: Echo,
    ids: Sequence[str] = (),
    *,
    dead: bool = False,
    rerun_all: bool = False,
) -> int:
    """Put events back to pending: the ones named, or (``dead``) every dead event, whose
    ids are read once before any is replayed (one that dies again is not replayed twice).

    Replay only requeues: the app's runner or a running ``worker`` processes them, so
    the command behaves the same whichever process runs it. Handlers that already
    succeeded are kept unless ``rerun_all``.
    """
    if ids and dead:
        raise OperationError("name event ids or pass --dead, not both")
    if dead:
        replayed = processor.replay_dead(rerun_all=rerun_all)
        if not replayed:
            raise OperationError("no dead events", NOTHING_DONE)
        out(f"replayed {len(replayed)} dead event(s); the worker will process them")
        return OK
    if not ids:
        raise OperationError("name event ids or pass --dead")
    refused: list[str] = []
    for event_id in ids:
        if processor.replay(event_id, rerun_all=rerun_all):
            out(f"{printable(event_id)}: replayed")
        else:
            refused.append(_why_not_replayed(processor, event_id))
    done = len(ids) - len(refused)
    summary = f"replayed {done} of {len(ids)} event(s)"
    if refused:
        raise OperationError(f"{summary}; not replayed: {', '.join(refused)}", NOTHING_DONE)
    out(f"{summary}; the worker will process them")
    return OK


def _why_not_replayed(processor: Operable, event_id: str) -> str:
    event = processor.get(event_id)
    if event is None:
        return f"{event_id} (no such event)"
    return f"{event_id} (it is {event.status.value})"


def has_handlers(router: Router) -> bool:
    """True when some handler would run for at least one known event type."""
    return any(router.handlers_for(event_type) for event_type in EVENT_TYPES)


def work(
    processor: Operable,
    out: Echo,
    *,
    once: bool = False,
    interval: float = DEFAULT_INTERVAL,
    batch: int = DEFAULT_BATCH,
    no_handlers_hint: str = "pass --app MODULE",
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Process due events (pending, retries whose time came, crashed workers' leases)
    with the processor's own handlers, ``batch`` at a time. ``once``: until nothing is
    due, then exit; otherwise every ``interval`` seconds until interrupted.

    Refuses to start without a handler: it would mark every event unhandled.
    """
    if batch < 1:
        raise OperationError(f"--batch must be at least 1, not {batch}")
    if interval < 0:
        raise OperationError(f"--interval must not be negative, not {interval}")
    if not has_handlers(processor.router):
        raise OperationError(f"no handlers: {no_handlers_hint}")
    total: dict[Result, int] = {}
    try:
        while True:
            counts = processor.recover(limit=batch)
            handled = sum(counts.values())
            if handled and not once:
                out(_processed(counts))
            for result, n in counts.items():
                total[result] = total.get(result, 0) + n
            # A short batch means nothing else was due. Only "skipped" (another worker
            # holds them) or "store_down" results: looping at once would only spin.
            drained = handled < batch or all(r.value in _NO_PROGRESS for r in counts)
            if once and drained:
                out(_processed(total))
                return OK
            if drained:
                sleep(interval)
    except KeyboardInterrupt:
        out("stopped")
        return OK


_NO_PROGRESS = frozenset({"skipped", "store_down"})


def _processed(counts: dict[Result, int]) -> str:
    parts = ", ".join(f"{result.value}={n}" for result, n in counts.items() if n)
    return f"processed {sum(counts.values())} event(s)" + (f" ({parts})" if parts else "")


def prune(processor: Operable, out: Echo, *, older_than_hours: float | None = None) -> int:
    """Delete finished events received more than ``older_than_hours`` ago (default: the
    processor's retention). The processor refuses a span that would forget an id the
    sender may still retry, or one not longer than ``max_age``: exit 2 with the reason."""
    span = None if older_than_hours is None else timedelta(hours=older_than_hours)
    try:
        deleted = processor.prune(span)
    except (ConfigurationError, OverflowError) as error:
        raise OperationError(f"prune refused: {error}") from None
    out(f"deleted {deleted} event(s)")
    return OK


#: The stats threshold flags, their help, and the keyword of :class:`Thresholds` each sets.
THRESHOLD_FLAGS = (
    ("--max-dead", "max_dead", int, "unhealthy above this many dead events"),
    ("--max-quarantined", "max_quarantined", int, "unhealthy above this many quarantined"),
    ("--max-unhandled", "max_unhandled", int, "unhealthy above this many unhandled"),
    (
        "--max-due-age",
        "max_due_age",
        float,
        "unhealthy when the oldest due event has waited longer (seconds): no worker?",
    ),
)


def thresholds(**limits: float | None) -> Thresholds:
    """:class:`Thresholds` from the flags' values; a negative one is a usage error."""
    try:
        return Thresholds(**limits)  # type: ignore[arg-type]
    except ValueError as error:
        raise OperationError(str(error)) from None


def stats(
    processor: Operable,
    out: Echo,
    *,
    as_json: bool = False,
    limits: Thresholds | None = None,
) -> int:
    """How many events are in each status (zeros included) and how long the oldest due
    event has waited. With ``limits``: exit 1 (:data:`NOTHING_DONE`) naming each limit
    exceeded, for a cron job or a probe; 0 when healthy."""
    health = processor.health()
    problems = limits.problems(health) if limits is not None else []
    if as_json:
        out(json.dumps({**health.to_json(), "problems": problems}))
    else:
        out(f"endpoint {printable(processor.endpoint)}: {health.total} event(s)")
        for status, n in health.every_status.items():
            out(f"  {status.value:{STATUS_WIDTH}} {n}")
        age = health.oldest_due_age
        out(f"  {'oldest-due':{STATUS_WIDTH}} {'-' if age is None else f'{age:.0f}s'}")
        if limits is not None and limits.any and not problems:
            out("healthy")
    if problems:
        raise OperationError(f"unhealthy: {'; '.join(problems)}", NOTHING_DONE)
    return OK


# Read commands must not create an inbox ---------------------------------------------


def missing_inbox(url: str) -> str | None:
    """Why the inbox at store URL ``url`` does not exist yet, or None if it does.

    Opening a store creates it (file, table or keys); a read command on a typo'd URL
    would then print nothing and exit 0. Call this first and refuse with the reason.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or scheme == "memory":
        return None  # open_store reports a bad URL itself; memory is always empty
    try:
        if scheme == "sqlite":
            return _missing_sqlite(rest[1:] if rest.startswith("/") else rest)
        if scheme in ("postgresql", "postgres"):
            return _missing_postgres(url)
        if scheme in ("redis", "rediss"):
            return _missing_redis(url)
    except ImportError:
        return None  # open_store names the extra to install
    return None


def _missing_sqlite(path: str) -> str | None:
    path = path or "webhooks.sqlite3"
    if not os.path.exists(path):
        return f"no inbox at {os.path.abspath(path)}: the file does not exist (check --store)"
    try:
        with sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True) as conn:
            found = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'iverton_events'"
            ).fetchone()
    except sqlite3.Error as error:
        return f"{os.path.abspath(path)} is not an SQLite inbox: {error}"
    if found is None:
        return f"{os.path.abspath(path)} holds no iverton_events table: not an inbox"
    return None


def _query_option(url: str, key: str) -> tuple[str, str | None]:
    from .inbox import _pop_query

    return _pop_query(url, key)


def _missing_postgres(url: str) -> str | None:
    import psycopg

    dsn, table = _query_option(url, "table")
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


def _missing_redis(url: str) -> str | None:
    import redis

    dsn, prefix = _query_option(url, "prefix")
    prefix = prefix or "iverton"
    client: Any = redis.Redis.from_url(dsn, socket_timeout=5, socket_connect_timeout=5)
    try:
        for _ in client.scan_iter(match="{" + prefix + "}:*", count=1000):
            return None
    except redis.RedisError as error:
        return f"cannot reach the Redis inbox: {error}"
    finally:
        client.close()
    return f"no keys under {{{prefix}}} on {dsn}: no inbox there (check --store)"
