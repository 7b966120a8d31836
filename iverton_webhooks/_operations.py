"""What every command line does, written once: the inbox commands (events, stats,
replay, worker, prune), send-test and the endpoint registry's commands, with their
arguments.

``iverton-webhooks``, ``flask iverton`` and the Django management commands are thin
shells around this module: each adds the arguments of `COMMANDS`, `SEND_TEST` and
`ENDPOINT_ACTIONS` to its parser (argparse, or click built from the same table), finds
the user's own `Processor` (its store, router, retry policy, lease and handler timeout)
and passes it here with the parsed options, so the three agree on flags, defaults,
messages and exit codes:

- ``0`` (`OK`): done, or nothing to do (no events listed, no dead or unhandled
  event to replay, nothing due, nothing old enough to prune): a cron job that finds
  nothing has not failed;
- ``1`` (`FAILED`): some of the work asked for could not be done (a named event
  not replayed, the endpoint refused ``send-test``), or ``stats`` past a threshold;
- ``2`` (`USAGE`): a usage or configuration error (a missing inbox, a prune
  span that breaks the retention rule, a worker with no handlers, a URL that cannot be
  reached).

An operation writes its normal lines through ``out``. When it cannot finish it raises
a `WebhookError`: `OperationError` carries its exit code, any other is a usage error
(`exit_code`); each shell shows the message the way its framework shows errors.

Every human-readable line goes through `printable`: ids, types and errors come
from signed but foreign input, and must not reach a terminal as escape sequences.
JSON lines keep the exact values (``json.dumps`` escapes control characters itself).
A registered endpoint's secret is the one value never shown: it is read from standard
input and only ever printed masked.
"""

from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass
from datetime import datetime, timedelta, timezone
from typing import IO, TYPE_CHECKING, Any, cast
from urllib.parse import urljoin

from ._directory import CACHE_SECONDS, check_endpoint_name
from ._errors import ConfigurationError, WebhookError
from ._health import Thresholds
from ._settings import ROTATION_GRACE, SENDER_RETRY_SPAN
from ._signature import SIGNATURE_HEADER, sign, validate_secrets
from ._text import printable
from .inbox.base import (
    CLAIMABLE,
    EndpointRecord,
    EndpointRegistry,
    Status,
    Store,
    StoredEvent,
    StoreOperations,
    masked_secret,
)
from .samples import sample_body

if TYPE_CHECKING:
    from ._processor import Processor
    from ._worker import Result

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


def exit_code(error: WebhookError) -> int:
    """The exit code of a command that ends with ``error``."""
    return error.code if isinstance(error, OperationError) else USAGE


# The arguments, for argparse and click alike ------------------------------------------


@dataclass(frozen=True)
class Argument:
    """One option (``--limit``) or positional argument (``ids``) of a command."""

    name: str
    help: str
    _: KW_ONLY
    #: Where the parsed value goes, the operation's keyword (default: from ``name``).
    dest: str = ""
    kind: type[int] | type[float] | None = None
    default: object = None
    #: An option that takes no value: False, or True when given.
    flag: bool = False
    choices: tuple[str, ...] = ()
    metavar: str | None = None
    #: A positional argument given any number of times.
    many: bool = False

    @property
    def positional(self) -> bool:
        return not self.name.startswith("-")

    @property
    def key(self) -> str:
        return self.dest or self.name.lstrip("-").replace("-", "_")

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add it to an argparse parser (ours, Django's)."""
        if self.positional:
            nargs = "*" if self.many else None
            parser.add_argument(self.key, nargs=nargs, metavar=self.metavar, help=self.help)
        elif self.flag:
            parser.add_argument(self.name, dest=self.key, action="store_true", help=self.help)
        else:
            parser.add_argument(
                self.name,
                dest=self.key,
                type=self.kind or str,
                default=self.default,
                choices=self.choices or None,
                help=self.help,
            )


@dataclass(frozen=True)
class Command:
    """A command's help (a phrase, as argparse lists it) and its arguments."""

    help: str
    arguments: tuple[Argument, ...] = ()

    @property
    def sentence(self) -> str:
        """The help as a sentence, as click and Django show a command's."""
        return f"{self.help[0].upper()}{self.help[1:]}."

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        for argument in self.arguments:
            argument.add_to(parser)


# The inbox commands --------------------------------------------------------------------


def when(moment: datetime | None) -> str:
    """A time for a terminal: ISO 8601 in UTC to the second, ``-`` for none."""
    if moment is None:
        return "-"
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds")


def event_line(event: StoredEvent) -> str:
    """One escaped line for a terminal, under `EVENTS_HEADER`; without an error, the
    newest-only handlers the event was superseded for."""
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
    processor: Processor,
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
    elif not events:
        out("no events")
    else:
        out(EVENTS_HEADER)
        for event in events:
            out(event_line(event))
    return OK


def replay(
    processor: Processor,
    out: Echo,
    ids: Sequence[str] = (),
    *,
    dead: bool = False,
    unhandled: bool = False,
    rerun_all: bool = False,
) -> int:
    """Put events back to pending: the ones named, every dead event (``dead``), or every
    unhandled one (``unhandled``: once a handler for it exists); an empty group is
    nothing to do. Replay only requeues: the app's runner or a running ``worker``
    processes them, so the command behaves the same whichever process runs it."""
    if sum((bool(ids), dead, unhandled)) > 1:
        raise OperationError("name event ids, or pass --dead or --unhandled: one of them")
    if dead or unhandled:
        group = "dead" if dead else "unhandled"
        replayed = (
            processor.replay_dead(rerun_all=rerun_all) if dead else processor.replay_unhandled()
        )
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
            event = processor.get(event_id)
            why = "no such event" if event is None else f"it is {event.status.value}"
            refused.append(f"{event_id} ({why})")
    summary = f"replayed {len(ids) - len(refused)} of {len(ids)} event(s)"
    if refused:
        raise OperationError(f"{summary}; not replayed: {', '.join(refused)}", FAILED)
    out(f"{summary}; the worker will process them")
    return OK


def work(
    processor: Processor,
    out: Echo,
    *,
    once: bool = False,
    interval: float = DEFAULT_INTERVAL,
    batch: int = DEFAULT_BATCH,
    no_handlers_hint: str,
) -> int:
    """Process due events (pending, retries whose time came, crashed workers' leases)
    with the processor's own handlers, ``batch`` at a time. ``once``: until nothing is
    due, then exit; otherwise every ``interval`` seconds until interrupted. Refuses to
    start without a handler: it would mark every event unhandled."""
    if batch < 1:
        raise OperationError(f"--batch must be at least 1, not {batch}")
    if interval < 0:
        raise OperationError(f"--interval must not be negative, not {interval}")
    if not processor.router.has_handlers():
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
                time.sleep(interval)
    except KeyboardInterrupt:
        out("stopped")
        return OK


_NO_PROGRESS = frozenset({"skipped", "store_down"})


def _processed(counts: dict[Result, int]) -> str:
    parts = ", ".join(f"{result.value}={n}" for result, n in counts.items() if n)
    return f"processed {sum(counts.values())} event(s)" + (f" ({parts})" if parts else "")


def prune(processor: Processor, out: Echo, *, older_than_hours: float | None = None) -> int:
    """Delete finished events received more than ``older_than_hours`` ago (default: the
    processor's retention); a span the processor refuses is a usage error."""
    span = None if older_than_hours is None else timedelta(hours=older_than_hours)
    try:
        deleted = processor.prune(span)
    except (ConfigurationError, OverflowError) as error:
        raise OperationError(f"prune refused: {error}") from None
    out(f"deleted {deleted} event(s)")
    return OK


def stats(processor: Processor, out: Echo, *, as_json: bool = False, **limits: float | None) -> int:
    """How many events are in each status (zeros included) and how long the oldest due
    event has waited. ``limits``, the keywords of `Thresholds` (``max_dead``, ...):
    exit 1 (`FAILED`) naming each one exceeded, for a cron job or a probe."""
    try:
        thresholds = Thresholds(**limits)  # type: ignore[arg-type]
    except ValueError as error:  # a negative limit
        raise OperationError(str(error)) from None
    health = processor.health()
    problems = thresholds.problems(health)
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
        if thresholds.any and not problems:
            out("healthy")
    if problems:
        raise OperationError(f"unhealthy: {'; '.join(problems)}", FAILED)
    return OK


#: The inbox commands: what each command line offers for the processor it finds.
COMMANDS = {
    "events": Command(
        "list stored events, newest first",
        (
            Argument(
                "--status",
                "only events in this status",
                choices=tuple(status.value for status in Status),
            ),
            Argument("--type", "only events of this type", dest="event_type"),
            Argument(
                "--limit",
                f"at most this many, newest first (default: {DEFAULT_LIMIT})",
                kind=int,
                default=DEFAULT_LIMIT,
            ),
            Argument("--json", "one JSON object per line", dest="as_json", flag=True),
        ),
    ),
    "stats": Command(
        "events in each status; exit 1 past a --max-* threshold",
        (
            Argument("--json", "one JSON object", dest="as_json", flag=True),
            Argument("--max-dead", "unhealthy above this many dead events", kind=int),
            Argument("--max-quarantined", "unhealthy above this many quarantined", kind=int),
            Argument("--max-unhandled", "unhealthy above this many unhandled", kind=int),
            Argument(
                "--max-due-age",
                "unhealthy when the oldest due event has waited longer (seconds): no worker?",
                kind=float,
            ),
        ),
    ),
    "replay": Command(
        "queue events again (the app's runner or the worker processes them)",
        (
            Argument("ids", "the events to replay", metavar="ID", many=True),
            Argument("--dead", "replay every dead event", flag=True),
            Argument(
                "--unhandled",
                "replay every unhandled event (once a handler for it exists)",
                flag=True,
            ),
            Argument("--rerun-all", "re-run handlers that succeeded", flag=True),
        ),
    ),
    "worker": Command(
        "process due events (pending, retries, crashed) with the app's handlers",
        (
            Argument("--once", "until nothing is due, then exit", flag=True),
            Argument(
                "--interval",
                f"seconds between passes (default: {DEFAULT_INTERVAL:g})",
                kind=float,
                default=DEFAULT_INTERVAL,
            ),
            Argument(
                "--batch",
                f"events per pass (default: {DEFAULT_BATCH})",
                kind=int,
                default=DEFAULT_BATCH,
            ),
        ),
    ),
    "prune": Command(
        "delete finished events past the retention",
        (
            Argument(
                "--older-than-hours",
                "delete finished events received longer ago than this (default: the retention)",
                kind=float,
            ),
        ),
    ),
}


def run(
    name: str,
    processor: Processor,
    out: Echo,
    options: Mapping[str, Any],
    *,
    no_handlers_hint: str,
) -> int:
    """Inbox command ``name`` of `COMMANDS` with the options a command line parsed (it
    reads its own only); a ``worker`` with no handlers tells what to do: ``no handlers:
    {no_handlers_hint}``."""
    values = {argument.key: options[argument.key] for argument in COMMANDS[name].arguments}
    if name == "worker":
        return work(processor, out, **values, no_handlers_hint=no_handlers_hint)
    operations: dict[str, Callable[..., int]] = {
        "events": list_events,
        "stats": stats,
        "replay": replay,
        "prune": prune,
    }
    return operations[name](processor, out, **values)


# send-test ----------------------------------------------------------------------------

#: Each shell adds its own ``--url`` and ``--secret`` (or takes the secret from its settings).
SEND_TEST = Command(
    'POST a signed sample event to a URL, as the dashboard\'s "Send Test" button does',
    (
        Argument("event_type", "the event type, e.g. deal.won", metavar="TYPE"),
        Argument(
            "--timeout",
            "seconds to wait for the answer (default: 10)",
            kind=float,
            default=10.0,
        ),
    ),
)


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
            status, location, text = (
                response.status,
                response.headers["Location"],
                _excerpt(response),
            )
    except urllib.error.HTTPError as error:
        status, location, text = error.code, error.headers["Location"], _excerpt(error)
    except OSError as error:  # refused, unreachable, timed out
        reason = getattr(error, "reason", None) or error
        raise OperationError(f"could not reach {url}: {reason}") from None
    except ValueError as error:  # e.g. an unknown URL scheme
        raise OperationError(f"cannot send to {url}: {error}") from None
    out(f"{status} {text}".rstrip())
    if 200 <= status < 300:
        return OK
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


def _excerpt(body: IO[bytes]) -> str:
    # Read a little past the excerpt only: a debug page may be tens of kilobytes.
    raw = body.read(EXCERPT_CHARS * 4 + 1)
    text = raw.decode("utf-8", "replace")
    excerpt = printable(text[:EXCERPT_CHARS])
    if len(text) > EXCERPT_CHARS or len(raw) > EXCERPT_CHARS * 4:
        excerpt += " ..."
    return excerpt


# Registered endpoints -----------------------------------------------------------------

#: A longer grace is taken for a typo: no rotation needs the previous secret that long.
MAX_GRACE = timedelta(days=365)
_GRACE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
SECRET_PROMPT = "signing secret from the Iverton dashboard (not shown): "

_NAME = Argument("name", "the endpoint's name (part of its URL)", metavar="NAME")
#: The ``endpoints`` subcommands, in the order help lists them. No option carries a
#: secret: it is read from standard input (see `read_secret`).
ENDPOINT_ACTIONS = {
    "add": Command(
        "register an endpoint, enabled (its secret is read from standard input)", (_NAME,)
    ),
    "list": Command(
        "every registered endpoint, its secrets masked",
        (
            Argument(
                "--json", "one JSON object per endpoint (secrets masked)", dest="as_json", flag=True
            ),
        ),
    ),
    "rotate": Command(
        "make a new secret current (read from standard input); the previous one stays "
        "valid for --grace",
        (
            _NAME,
            Argument(
                "--grace",
                "how long the previous secret is still accepted: seconds, or with a unit "
                "(30m, 27h, 2d); 0 for a leaked secret (default: "
                f"{ROTATION_GRACE.total_seconds() / 3600:g}h, past the sender's retries)",
            ),
        ),
    ),
    "disable": Command("answer the endpoint's requests 404 (its events are kept)", (_NAME,)),
    "enable": Command("accept the endpoint's requests again", (_NAME,)),
    "remove": Command(
        "forget the endpoint and its secrets (its events are kept)",
        (
            _NAME,
            Argument(
                "--force",
                "remove it even though some of its events are not finished yet",
                flag=True,
            ),
        ),
    ),
}
ENDPOINTS = Command(
    f"the endpoints registered in the store: {', '.join(ENDPOINT_ACTIONS)} (secrets are read "
    "from standard input)"
)


def add_endpoints_arguments(
    parser: argparse.ArgumentParser,
    common: Callable[[argparse.ArgumentParser], None] | None = None,
) -> None:
    """The ``endpoints`` subcommands and their options, for every argparse-based command
    line (ours, Django's); ``common`` adds a shell's own options to each."""
    actions = parser.add_subparsers(
        dest="action", required=True, metavar="ACTION", help=", ".join(ENDPOINT_ACTIONS)
    )
    for action, command in ENDPOINT_ACTIONS.items():
        sub = actions.add_parser(action, help=command.help, description=command.help)
        command.add_arguments(sub)
        if common is not None:
            common(sub)


def grace_seconds(text: str | None) -> float:
    """``--grace`` in seconds: a number of seconds, or one with a unit (``s``, ``m``,
    ``h``, ``d``); `ROTATION_GRACE` when not given.

    >>> grace_seconds("27h"), grace_seconds("90"), grace_seconds("0")
    (97200.0, 90.0, 0.0)
    """
    if text is None:
        return ROTATION_GRACE.total_seconds()
    found = _GRACE.fullmatch(text.strip().lower())
    if found is None:
        raise OperationError(
            f"--grace {text}: give seconds (3600) or a number with s, m, h or d "
            "(30m, 27h); 0 ends the previous secret at once"
        )
    seconds = float(found[1]) * _UNIT_SECONDS[found[2]]
    if seconds > MAX_GRACE.total_seconds():
        raise OperationError(
            f"--grace {text}: longer than {MAX_GRACE.days} days; a previous secret should "
            "stop being accepted soon after the sender stops using it"
        )
    return seconds


def read_secret() -> str:
    """A signing secret from standard input: its first line without the line ending,
    or typed at a prompt that does not echo it when the input is a terminal. Never from
    an argument, which other users see in ``ps`` and the shell keeps in its history.
    Refuses what `validate_secrets` refuses, and bytes that are not UTF-8 (the sender
    signs with the secret's UTF-8 bytes)."""
    stdin = sys.stdin
    try:
        if stdin is not None and stdin.isatty():
            line = getpass.getpass(SECRET_PROMPT)
        else:
            line = _first_line(stdin)
    except (EOFError, KeyboardInterrupt):
        raise OperationError("no secret given: nothing changed") from None
    secret = line.removesuffix("\n").removesuffix("\r")
    try:
        validate_secrets([secret])
    except ConfigurationError as error:
        # It is the only secret: its position in a list would mean nothing here.
        message = str(error).replace("webhook secret #0", "the secret read from standard input")
        raise OperationError(message) from None
    return secret


def _first_line(stdin: IO[str] | None) -> str:
    if stdin is None:
        return ""
    raw = getattr(stdin, "buffer", None)
    if raw is None:
        return stdin.readline()
    # Bytes, decoded strictly: a text stream might replace or escape what is not UTF-8,
    # and the endpoint would get a secret the sender never signs with. A BOM from an
    # editor is not part of the secret.
    try:
        return cast(bytes, raw.readline()).decode("utf-8-sig")
    except UnicodeDecodeError:
        raise OperationError(
            "the secret read from standard input is not UTF-8 text: copy it again from "
            "the Iverton dashboard"
        ) from None


def registry_of(processors: Sequence[Processor]) -> tuple[Store, bool]:
    """The store whose registry the ``endpoints`` commands change for an app with these
    processors (the one that serves a registry, else the app's only store: endpoints may
    be registered before ``endpoint_registry`` is on), and whether the app serves it."""
    serving = _stores(p for p in processors if p.settings.endpoint_registry)
    if len(serving) == 1:
        return serving[0], True
    if len(serving) > 1:
        raise OperationError(
            f"the app has {len(serving)} receivers serving registered endpoints from "
            "different stores: keep one registry per app"
        )
    stores = _stores(processors)
    if len(stores) == 1:
        return stores[0], False
    if not stores:
        raise OperationError("the app has no webhook receiver")
    raise OperationError(
        f"none of the app's {len(processors)} receivers serves registered endpoints: turn "
        "endpoint_registry (the ENDPOINT_REGISTRY setting) on for one of them"
    )


def _stores(processors: Iterable[Processor]) -> list[Store]:
    found: dict[int, Store] = {}
    for processor in processors:
        found.setdefault(id(processor.store), processor.store)
    return list(found.values())


def registered_processor(processors: Sequence[Processor], name: str) -> Processor | None:
    """The processor for the events of registered endpoint ``name``: ``for_endpoint``
    of the processor that serves the registry holding it; None if none does. For the
    per-endpoint commands, when no receiver of the app has that endpoint."""
    try:
        check_endpoint_name(name)
    except ConfigurationError:
        return None  # no endpoint can be registered under it: no store read
    for processor in processors:
        if not processor.settings.endpoint_registry or processor.endpoint == name:
            continue
        if cast(EndpointRegistry, processor.store).get_endpoint(name) is not None:
            return processor.for_endpoint(name)
    return None


def endpoints(
    store: Store,
    out: Echo,
    action: str,
    options: Mapping[str, Any],
    *,
    serving: bool | None = None,
) -> int:
    """Run ``endpoints`` subcommand ``action`` (`ENDPOINT_ACTIONS`) on the registry of
    ``store``, with the options a command line parsed. ``serving``: whether the app
    serves that registry (None: unknown); when it does not, say so, since its requests
    would be refused. ``add`` and ``rotate`` read the secret once the name and options
    are checked."""
    if not isinstance(store, EndpointRegistry):
        raise OperationError(
            f"{type(store).__name__} keeps no endpoints (it does not implement "
            "EndpointRegistry): use a built-in store"
        )
    if action == "list":
        _list_endpoints(store, out, as_json=options["as_json"])
    else:
        name = check_endpoint_name(options["name"])
        if action == "add":
            _add(store, out, name)
        elif action == "rotate":
            _rotate(store, out, name, grace_seconds(options["grace"]))
        elif action == "remove":
            _remove(store, out, name, force=options["force"])
        else:
            _set_enabled(store, out, name, action == "enable")
    if serving is False:
        out(
            "warning: this app's receiver does not serve registered endpoints: their "
            "requests are answered 404 until endpoint_registry (ENDPOINT_REGISTRY) is on"
        )
    return OK


def _unknown(name: str) -> OperationError:
    return OperationError(f"no registered endpoint {name}", FAILED)


def _add(registry: EndpointRegistry, out: Echo, name: str) -> None:
    if registry.get_endpoint(name) is not None:
        raise _exists(name)  # before asking for a secret that would not be used
    new = read_secret()
    if not registry.add_endpoint(name, new):
        raise _exists(name)
    out(f"added endpoint {name}, enabled, secret {printable(masked_secret(new))}")
    out(
        f"its URL is the webhook path followed by /{name} (/webhooks/iverton/{name} by "
        f"default); running servers accept its requests within {CACHE_SECONDS:g} s"
    )


def _exists(name: str) -> OperationError:
    return OperationError(
        f"endpoint {name} is registered already (rotate changes its secret)", FAILED
    )


def _rotate(registry: EndpointRegistry, out: Echo, name: str, grace: float) -> None:
    before = registry.get_endpoint(name)
    if before is None:
        raise _unknown(name)
    new = read_secret()
    if not registry.rotate_endpoint(name, new, grace):
        raise _unknown(name)  # removed meanwhile
    after = registry.get_endpoint(name)
    now = _now(registry)
    out(f"rotated endpoint {name}: its current secret is {printable(masked_secret(new))}")
    # The store drops a secret whose grace is over, so each one valid before is looked
    # for after: kept with its end, or gone.
    ends = {s.secret: s.valid_until for s in (after.secrets if after is not None else ())}
    for old in before.secrets:
        if old.secret == new or (old.valid_until is not None and old.valid_until <= now):
            continue
        which = "the previous" if old.valid_until is None else "an earlier"
        shown = printable(masked_secret(old.secret))
        until = ends.get(old.secret)
        if until is not None and until > now:
            out(f"{which} secret {shown} is accepted until {_utc(until)}")
        else:
            out(f"{which} secret {shown} is no longer accepted")
    if 0 < grace < SENDER_RETRY_SPAN.total_seconds():
        hours = SENDER_RETRY_SPAN.total_seconds() / 3600
        out(
            f"warning: the sender retries a delivery for up to {hours:.1f} h: a retry "
            f"signed with the previous secret after {_utc(now + grace)} is refused"
        )
    out(f"running servers take the change within {CACHE_SECONDS:g} s")


def _set_enabled(registry: EndpointRegistry, out: Echo, name: str, enabled: bool) -> None:
    before = registry.get_endpoint(name)
    if before is None:
        raise _unknown(name)
    if before.enabled == enabled:
        out(f"endpoint {name} is {'enabled' if enabled else 'disabled'} already")
        return
    if not registry.set_endpoint_enabled(name, enabled):
        raise _unknown(name)
    if enabled:
        out(
            f"enabled endpoint {name}: running servers accept its requests within "
            f"{CACHE_SECONDS:g} s"
        )
    else:
        out(
            f"disabled endpoint {name}: within {CACHE_SECONDS:g} s running servers answer "
            "its requests 404, which the sender counts as failed deliveries; its stored "
            "events are kept and still processed"
        )


def unfinished_events(registry: EndpointRegistry, name: str) -> int:
    """How many of endpoint ``name``'s events a worker still owes (pending, processing,
    or failed and due again). Workers process registered endpoints only, so removing
    one with such events would leave them where they are until it is added again."""
    if not isinstance(registry, StoreOperations):
        return 0
    counts = registry.stats(endpoint=name)
    return sum(n for status, n in counts.items() if status in CLAIMABLE)


def _remove(registry: EndpointRegistry, out: Echo, name: str, *, force: bool) -> None:
    unfinished = unfinished_events(registry, name)
    if unfinished and not force:
        raise OperationError(
            f"endpoint {name} still has {unfinished} unfinished event(s), which no worker "
            "processes once it is removed: disable it now (its requests get 404 while they "
            "finish) and remove it later, or pass --force",
            FAILED,
        )
    if not registry.remove_endpoint(name):
        raise _unknown(name)
    out(
        f"removed endpoint {name} and its secrets: within {CACHE_SECONDS:g} s running "
        "servers answer its requests 404; its stored events are kept"
    )
    if unfinished:
        out(
            f"warning: {unfinished} of its events are not finished, and no worker processes "
            "them while it is not registered: add it again to have them processed"
        )


def _list_endpoints(registry: EndpointRegistry, out: Echo, *, as_json: bool) -> None:
    now = _now(registry)
    found = [_endpoint_json(record, now) for record in registry.list_endpoints()]
    if as_json:
        for shown in found:
            out(json.dumps(shown))
        return
    if not found:
        out("no endpoints")
        return
    names = [printable(shown["name"]) for shown in found]
    width = max(len("NAME"), *map(len, names))
    columns = f"{{:{width}}} {{:8}} {{:{TIME_WIDTH}}} {{:{TIME_WIDTH}}} {{}}"
    out(columns.format("NAME", "STATUS", "CREATED (UTC)", "UPDATED (UTC)", "SECRETS"))
    for name, shown in zip(names, found, strict=True):
        secrets = ", ".join(
            f"{printable(s['masked'])} {s['state']}"
            + (f" until {s['valid_until']}" if s["state"] == "valid" else "")
            for s in shown["secrets"]
        )
        status = "enabled" if shown["enabled"] else "disabled"
        out(columns.format(name, status, shown["created_at"], shown["updated_at"], secrets))


def _endpoint_json(record: EndpointRecord, now: float) -> dict[str, Any]:
    """What ``endpoints list`` shows of an endpoint, as ``--json`` prints it: the
    secrets masked, each ``current``, ``valid`` (until a time) or ``expired``."""

    def state(valid_until: float | None) -> str:
        if valid_until is None:
            return "current"
        return "valid" if valid_until > now else "expired"

    return {
        "name": record.name,
        "enabled": record.enabled,
        "created_at": _utc(record.created_at),
        "updated_at": _utc(record.updated_at),
        "secrets": [
            {
                "masked": masked_secret(s.secret),
                "state": state(s.valid_until),
                "valid_until": None if s.valid_until is None else _utc(s.valid_until),
            }
            for s in record.secrets
        ],
    }


def _now(registry: EndpointRegistry) -> float:
    # A secret's valid_until is on the store's clock.
    clock = getattr(registry, "clock", None)
    return float(clock()) if callable(clock) else time.time()


def _utc(epoch: float) -> str:
    return when(datetime.fromtimestamp(epoch, timezone.utc))
