"""What every command line does, written once: list, replay, work, prune, stats and
send-test.

``iverton-webhooks``, ``flask iverton`` and the Django management commands are thin
shells around these functions: each finds the user's own `Processor` (its store,
router, retry policy, lease and handler timeout) and passes it here, so the three agree
on flags, defaults, messages and exit codes:

- ``0`` (`OK`): done, or nothing to do (no events listed, no dead or unhandled
  event to replay, nothing due, nothing old enough to prune): a cron job that finds
  nothing has not failed;
- ``1`` (`FAILED`): some of the work asked for could not be done (a named event
  not replayed, the endpoint refused ``send-test``), or ``stats`` past a threshold;
- ``2`` (`USAGE`): a usage or configuration error (a missing inbox, a prune
  span that breaks the retention rule, a worker with no handlers, a URL that cannot be
  reached).

An operation writes its normal lines through ``out`` and, when it ends with a non-zero
code, raises `OperationError` whose message is the last line; each shell shows
that message the way its framework shows errors and exits with the code.

Every human-readable line goes through `printable`: ids, types and errors come
from signed but foreign input, and must not reach a terminal as escape sequences.
JSON lines keep the exact values (``json.dumps`` escapes control characters itself).
"""

from __future__ import annotations

import argparse
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from email.message import Message
from typing import IO, TYPE_CHECKING, Any, Protocol
from urllib.parse import urljoin

from . import inbox
from ._errors import ConfigurationError, WebhookError
from ._health import Health, Thresholds
from ._router import Router
from ._text import printable
from .events import EVENT_TYPES
from .inbox.base import Status, StoredEvent

if TYPE_CHECKING:
    from ._worker import Result

__all__ = [
    "DEFAULT_BATCH",
    "DEFAULT_INTERVAL",
    "DEFAULT_LIMIT",
    "EVENTS_HEADER",
    "FAILED",
    "OK",
    "USAGE",
    "Operable",
    "OperationError",
    "add_events_arguments",
    "add_worker_arguments",
    "event_line",
    "has_handlers",
    "list_events",
    "missing_inbox",
    "printable",
    "prune",
    "replay",
    "send_test",
    "stats",
    "thresholds",
    "work",
]

OK, FAILED, USAGE = 0, 1, 2

#: Defaults shared by every command line.
DEFAULT_LIMIT = 50
DEFAULT_INTERVAL = 5.0
DEFAULT_BATCH = 1000

#: Wide enough for every status name ("quarantined"), so columns stay aligned.
STATUS_WIDTH = max(len(status.value) for status in Status)
#: A time as ``events`` shows it: ISO 8601 in UTC, to the second.
TIME_WIDTH = len("2026-01-01T00:00:00+00:00")
_COLUMNS = (
    f"{{:32}} {{:24}} {{:{STATUS_WIDTH}}} {{:{TIME_WIDTH}}} {{:{TIME_WIDTH}}} {{:>8}} {{:>10}}"
)
#: The header row of ``events``, aligned with `event_line`.
EVENTS_HEADER = (
    _COLUMNS.format(
        "ID", "TYPE", "STATUS", "RECEIVED (UTC)", "NEXT ATTEMPT (UTC)", "ATTEMPTS", "DELIVERIES"
    )
    + "  ERROR"
)
#: How much of an answer's body ``send-test`` shows (a framework's debug page is 64 KB).
EXCERPT_CHARS = 300

Echo = Callable[[str], None]


class OperationError(WebhookError):
    """A command that could not do (all of) its work: the message to show, and the
    exit code (`FAILED` or `USAGE`)."""

    def __init__(self, message: str, code: int = USAGE) -> None:
        super().__init__(printable(message))
        self.code = code


class Operable(Protocol):
    """What the operations need of a `Processor`."""

    @property
    def endpoint(self) -> str: ...

    @property
    def router(self) -> Router: ...

    def recover(self, limit: int | None = None) -> dict[Result, int]: ...

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool: ...

    def replay_dead(self, *, rerun_all: bool = False) -> list[str]: ...

    def replay_unhandled(self) -> list[str]: ...

    def prune(self, older_than: timedelta | None = None) -> int: ...

    def stats(self) -> dict[Status, int]: ...

    def health(self) -> Health: ...

    def list(
        self, status: Status | str | None = None, event_type: str | None = None, limit: int = 100
    ) -> Sequence[StoredEvent]: ...

    def get(self, event_id: str) -> StoredEvent | None: ...


def when(moment: datetime | None) -> str:
    """A time for a terminal: ISO 8601 in UTC to the second, ``-`` for none."""
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def event_line(event: StoredEvent) -> str:
    """One escaped line for a terminal, under `EVENTS_HEADER`: id, type, status,
    received and next attempt times, attempts, deliveries, last error (or the
    newest-only handlers the event was superseded for)."""
    superseded = [printable(name) for name, o in sorted(event.outcomes.items()) if o.superseded]
    error = ""
    if event.last_error:
        error = f"  {printable(event.last_error)}"
    elif superseded:
        error = f"  (superseded for {', '.join(superseded)})"
    return (
        _COLUMNS.format(
            printable(event.id),
            printable(event.type),
            event.status.value,
            when(event.received_at),
            when(event.next_attempt_at),
            event.attempts,
            event.deliveries,
        )
        + error
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
    if as_json:
        for event in events:
            out(json.dumps(event.to_json()))
        return OK
    if not events:
        out("no events")
        return OK
    out(EVENTS_HEADER)
    for event in events:
        out(event_line(event))
    return OK


def replay(
    processor: Operable,
    out: Echo,
    ids: Sequence[str] = (),
    *,
    dead: bool = False,
    unhandled: bool = False,
    rerun_all: bool = False,
) -> int:
    """Put events back to pending: the ones named, every dead event (``dead``), or every
    unhandled one (``unhandled``: once a handler for it exists). The ids of a group are
    read once before any is replayed (one that dies again is not replayed twice); an
    empty group is nothing to do (exit 0).

    Replay only requeues: the app's runner or a running ``worker`` processes them, so
    the command behaves the same whichever process runs it. Handlers that already
    succeeded are kept unless ``rerun_all``.
    """
    if sum((bool(ids), dead, unhandled)) > 1:
        raise OperationError("name event ids, or pass --dead or --unhandled: one of them")
    if dead or unhandled:
        group = "dead" if dead else "unhandled"
        if unhandled:
            replayed = processor.replay_unhandled()
        else:
            replayed = processor.replay_dead(rerun_all=rerun_all)
        if not replayed:
            out(f"no {group} events: nothing to replay")
        else:
            out(f"replayed {len(replayed)} {group} event(s); the worker will process them")
        return OK
    if not ids:
        raise OperationError("name event ids, or pass --dead or --unhandled")
    refused: list[str] = []
    for event_id in ids:
        if processor.replay(event_id, rerun_all=rerun_all):
            out(f"{printable(event_id)}: replayed")
        else:
            refused.append(_why_not_replayed(processor, event_id))
    done = len(ids) - len(refused)
    summary = f"replayed {done} of {len(ids)} event(s)"
    if refused:
        raise OperationError(f"{summary}; not replayed: {', '.join(refused)}", FAILED)
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


#: The stats threshold flags, their help, and the keyword of `Thresholds` each sets.
def add_events_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``events`` options, for every argparse-based command line (ours, Django's)."""
    parser.add_argument(
        "--status", choices=[s.value for s in Status], help="only events in this status"
    )
    parser.add_argument("--type", dest="event_type", help="only events of this type")
    parser.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_LIMIT,
        help=f"at most this many, newest first (default: {DEFAULT_LIMIT})",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def add_worker_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``worker`` options, for every argparse-based command line (ours, Django's)."""
    parser.add_argument("--once", action="store_true", help="until nothing is due, then exit")
    parser.add_argument(
        "--interval",
        type=float,
        default=DEFAULT_INTERVAL,
        help=f"seconds between passes (default: {DEFAULT_INTERVAL:g})",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=DEFAULT_BATCH,
        help=f"events per pass (default: {DEFAULT_BATCH})",
    )


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
    """`Thresholds` from the flags' values; a negative one is a usage error."""
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
    event has waited. With ``limits``: exit 1 (`FAILED`) naming each limit
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
        for warning in health.warnings:
            out(f"  warning: {printable(warning)}")
        if limits is not None and limits.any and not problems:
            out("healthy")
    if problems:
        raise OperationError(f"unhealthy: {'; '.join(problems)}", FAILED)
    return OK


# send-test ----------------------------------------------------------------------------


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The sender does not follow redirects, so send-test must not either: a 3xx is
    the answer (urllib would turn a POST into a GET after a 301 or 302)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def send_test(out: Echo, url: str, event_type: str, secret: str, *, timeout: float = 10.0) -> int:
    """POST a signed sample event of ``event_type`` to ``url``, as the dashboard's "Send
    Test" button does, and show the status with at most `EXCERPT_CHARS` of the
    answer, escaped. A redirect is explained (the sender would not follow it); any
    answer but a 2xx exits 1, an unreachable URL 2."""
    from ._signature import SIGNATURE_HEADER, sign
    from .samples import sample_body

    try:
        body = sample_body(event_type)
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
        )
    except ValueError as error:  # not a known type, or not a URL
        raise OperationError(str(error)) from None
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            status, headers, text = _answer(response.status, response.headers, response)
    except urllib.error.HTTPError as error:
        status, headers, text = _answer(error.code, error.headers, error)
    except OSError as error:  # refused, unreachable, timed out
        reason = getattr(error, "reason", None) or error
        raise OperationError(f"could not reach {url}: {reason}") from None
    except ValueError as error:  # e.g. an unknown URL scheme
        raise OperationError(f"cannot send to {url}: {error}") from None
    out(f"{status} {text}".rstrip())
    if 200 <= status < 300:
        return OK
    location = headers.get("Location")
    if 300 <= status < 400 and location:
        raise OperationError(redirect_advice(url, status, location), FAILED)
    raise OperationError(
        f"{url} answered {status}: the sender would count a failed delivery", FAILED
    )


def redirect_advice(url: str, status: int, location: str) -> str:
    """What a redirect from the webhook URL means: the sender posts once and does not
    follow it, so the delivery fails until the configured URL is the final one."""
    target = urljoin(url, location)
    if target.rstrip("/") == url.rstrip("/"):
        need = "needs its trailing slash" if target.endswith("/") else "must not end with '/'"
        reason = f"the URL {need}"
    else:
        reason = "the endpoint redirects elsewhere"
    return (
        f"{status}: {reason}: use {target} (the sender does not follow redirects, so each "
        "delivery to this URL fails)"
    )


def _answer(status: int, headers: Message, body: IO[bytes]) -> tuple[int, Message, str]:
    # Read a little past the excerpt only: a debug page may be tens of kilobytes.
    raw = body.read(EXCERPT_CHARS * 4 + 1)
    text = raw.decode("utf-8", "replace")
    excerpt = printable(text[:EXCERPT_CHARS])
    if len(text) > EXCERPT_CHARS or len(raw) > EXCERPT_CHARS * 4:
        excerpt += " ..."
    return int(status), headers, excerpt


# Read commands must not create an inbox ---------------------------------------------


def missing_inbox(url: str) -> str | None:
    """Why the inbox at store URL ``url`` does not exist yet, or None if it does.

    Opening a store creates it (file, table or keys); a read command on a typo'd URL
    would then print nothing and exit 0. Call this first and refuse with the reason.
    Each store says it for itself (`iverton_webhooks.inbox.missing_inbox`).
    """
    return inbox.missing_inbox(url)
