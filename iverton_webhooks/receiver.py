"""The request pipeline every adapter calls: size, signature, envelope, record, hand off.

>>> from iverton_webhooks import Receiver, sign
>>> from iverton_webhooks.samples import sample_body
>>> receiver = Receiver(secret="whsec_test", store="memory://", runner="inline")
>>> body = sample_body("contact.created", id="evt_doc")
>>> receiver.receive("POST", body, {"X-Iverton-Signature": sign(body, "whsec_test")}).status
200
>>> receiver.receive("POST", body, {"X-Iverton-Signature": sign(body, "whsec_test")}).body
b'{"status":"duplicate"}'
>>> receiver.receive("POST", body, {"X-Iverton-Signature": "sha256=00"}).status
401
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Protocol

from .errors import ConfigurationError, InvalidPayload, InvalidSignature
from .events import Envelope, parse_envelope
from .inbox import open_store
from .inbox.base import Store
from .router import Router, default_router
from .runners import AsyncioRunner, InlineRunner, Runner, ThreadRunner
from .signature import SIGNATURE_HEADER, Verifier
from .worker import Result, RetryPolicy, process, process_async

log = logging.getLogger("iverton_webhooks")

#: From the first attempt to the sender's last retry: 1 min + 5 min + 30 min + 2 h + 24 h.
SENDER_RETRY_SPAN = timedelta(minutes=1 + 5 + 30 + 120 + 1440)
DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
_JSON = (("Content-Type", "application/json"),)


@dataclass(frozen=True)
class Reply:
    """What the adapter should answer: status, body bytes and headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = field(default=_JSON)

    @classmethod
    def json(cls, code: int, **content: str) -> Reply:
        """A reply whose body is ``content`` as compact JSON."""
        return cls(code, json.dumps(content, separators=(",", ":")).encode())


# Replies that never vary are built once.
ACCEPTED = Reply.json(200, status="accepted")
DUPLICATE = Reply.json(200, status="duplicate")
UNKNOWN_TYPE = Reply.json(200, status="accepted", note="unknown event type")
BAD_SIGNATURE = Reply.json(401, error="invalid signature")
TOO_LARGE = Reply.json(413, error="body too large")
STORE_DOWN = Reply.json(503, error="temporarily unable to record the event; retry later")
WRONG_METHOD = Reply(405, b'{"error":"method not allowed"}', (*_JSON, ("Allow", "POST")))


class HeadersLike(Protocol):
    """What the receiver needs of request headers: Django's, Werkzeug's and Starlette's
    header objects all fit, as does a plain dict."""

    def get(self, key: str, /) -> str | None: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


RunnerSpec = Runner | str | None
StoreSpec = Store | str | None


class Receiver:
    """Verifies, records and dispatches Iverton webhook requests. Framework-free.

    ``secret`` or ``secrets`` (several, for rotation: every one is accepted).
    ``store``: a :class:`Store`, or a URL: ``"sqlite:///path.db"`` (default
    ``sqlite:///webhooks.sqlite3``), ``"postgresql://..."``, ``"redis://..."``, ``"memory://"``.
    ``runner``: ``"thread"`` (default), ``"asyncio"``, ``"inline"``, a :class:`Runner`
    (e.g. ``CeleryRunner(app)``) or a Runner class.
    ``max_age``: refuse verified events older than this (off by default; see README).
    ``process_context``: a context-manager factory entered around each synchronous
    :meth:`process` call (e.g. a Flask app context).
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        secrets: Sequence[str] | None = None,
        router: Router | None = None,
        store: StoreSpec = None,
        runner: RunnerSpec = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_age: timedelta | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        retry: RetryPolicy | None = None,
        lease: timedelta = timedelta(minutes=5),
        process_context: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        self.verifier = Verifier(_secrets(secret, secrets))
        check_retention(retention, max_age)  # before opening (and maybe creating) a store
        self.router = router if router is not None else default_router
        self.store: Store = open_store(store)
        self.max_body_bytes = max_body_bytes
        self.retention = retention
        self.max_age = max_age
        self.retry = retry or RetryPolicy()
        self.lease_seconds = lease.total_seconds()
        self.process_context = process_context or nullcontext
        self.runner = _make_runner(runner)
        self.runner.bind(self)

    def __repr__(self) -> str:
        return (
            f"<Receiver {self.verifier!r} store={self.store!r} runner={type(self.runner).__name__}>"
        )

    # The request path ------------------------------------------------------------

    def receive(self, method: str, body: bytes, headers: HeadersLike | Mapping[str, str]) -> Reply:
        """Handle one request; never raises for anything the client sent."""
        if method.upper() != "POST":
            return WRONG_METHOD
        if len(body) > self.max_body_bytes:
            return TOO_LARGE
        try:
            secret_index = self.verifier.verify(body, header(headers, SIGNATURE_HEADER))
        except InvalidSignature:
            log.warning("refused a request with an invalid signature (%d bytes)", len(body))
            return BAD_SIGNATURE
        try:
            envelope = parse_envelope(body)
        except InvalidPayload as exc:
            log.warning("refused a signed but malformed payload: %s", exc)
            return Reply.json(400, error="invalid payload", detail=str(exc))
        if self.max_age is not None and _too_old(envelope, self.max_age):
            log.warning("refused event %s (%s): older than max_age", envelope.id, envelope.type)
            return Reply.json(400, error="event too old", detail="created_at is before max_age")
        try:
            is_new = self.store.record(envelope.id, envelope.type, envelope.created_at, body)
        except Exception:
            log.exception(
                "event %s (%s): store unavailable, answering 503", envelope.id, envelope.type
            )
            return STORE_DOWN
        if not is_new:
            log.info(
                "event %s (%s): duplicate delivery, not dispatched", envelope.id, envelope.type
            )
            return DUPLICATE
        log.info("event %s (%s) recorded (secret #%d)", envelope.id, envelope.type, secret_index)
        try:
            self.runner.submit(envelope.id)
        except Exception:
            # Recorded is what the 2xx promises; recovery will process it.
            log.exception(
                "event %s (%s): hand-off failed, left pending", envelope.id, envelope.type
            )
        return ACCEPTED if envelope.is_known_type else UNKNOWN_TYPE

    async def receive_async(
        self, method: str, body: bytes, headers: HeadersLike | Mapping[str, str]
    ) -> Reply:
        """:meth:`receive` for async adapters: a blocking store is called in a thread."""
        if isinstance(self.runner, AsyncioRunner):
            # Submitting happens in the worker thread; it needs to know this loop.
            self.runner.attach(asyncio.get_running_loop())
        if self.store.blocking:
            return await asyncio.to_thread(self.receive, method, body, headers)
        return self.receive(method, body, headers)

    # The processing path ---------------------------------------------------------

    def process(self, event_id: str) -> Result:
        """Claim and process one stored event in this thread, inside ``process_context``
        (adapters use it for an app context or to recycle database connections)."""
        with self.process_context():
            return process(
                self.store,
                self.router,
                event_id,
                lease_seconds=self.lease_seconds,
                policy=self.retry,
            )

    async def process_async(self, event_id: str) -> Result:
        """Claim and process one stored event on the running loop."""
        return await process_async(
            self.store, self.router, event_id, lease_seconds=self.lease_seconds, policy=self.retry
        )

    def recover(self, limit: int = 1000) -> dict[Result, int]:
        """Process, in this thread, every event that is due now: pending ones, retries
        whose time has come, and ones whose worker died. Returns counts by result."""
        counts: dict[Result, int] = {}
        for event_id in self.store.due(limit):
            result = self.process(event_id)
            counts[result] = counts.get(result, 0) + 1
        return counts

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        """Queue a finished, failed or dead event again and hand it to the runner."""
        if not self.store.replay(event_id, rerun_all=rerun_all):
            return False
        self.runner.submit(event_id)
        return True

    def replay_dead(self) -> int:
        """Replay every dead event; returns how many."""
        replayed = 0
        while dead := self.store.list(status="dead", limit=500):
            replayed += sum(self.replay(event.id) for event in dead)
        return replayed

    def prune(self, older_than: timedelta | None = None) -> int:
        """Delete done and dead events received more than ``older_than`` ago
        (default: the retention). Refuses a span that would forget ids the sender may
        still retry."""
        span = self.retention if older_than is None else older_than
        check_retention(span, self.max_age)
        return self.store.prune(time.time() - span.total_seconds())

    def start(self) -> None:
        """Start the runner now rather than at the first request, so events left over from
        a previous run are recovered at once. Call it after any fork (e.g. in a gunicorn
        ``post_fork`` hook, or per worker), never before."""
        start = getattr(self.runner, "start", None)
        if callable(start):
            start()

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the runner (waiting up to ``timeout`` s for work in hand) and the store."""
        self.runner.close(timeout)
        self.store.close()


def header(headers: HeadersLike | Mapping[str, str], name: str) -> str | None:
    """Case-insensitive lookup that is fast for the common spellings."""
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
        if value is None:
            lowered = name.lower()
            for key, candidate in headers.items():
                if key.lower() == lowered:
                    return candidate
    return value


def check_retention(retention: timedelta, max_age: timedelta | None) -> None:
    """Refuse settings under which a legitimate retry could be processed twice or refused."""
    if retention <= SENDER_RETRY_SPAN:
        raise ConfigurationError(
            f"retention {retention} is shorter than the sender's retry span "
            f"({SENDER_RETRY_SPAN}): a late retry would no longer be recognised as a duplicate. "
            "Keep events for at least 2 days (default 7)."
        )
    if max_age is not None and not (SENDER_RETRY_SPAN < max_age < retention):
        raise ConfigurationError(
            f"max_age must be longer than the sender's retry span ({SENDER_RETRY_SPAN}), so "
            f"legitimate retries are accepted, and shorter than retention ({retention}), so an "
            "event is refused by age before its id is forgotten."
        )


def _too_old(envelope: Envelope, max_age: timedelta) -> bool:
    return envelope.created_at.timestamp() < time.time() - max_age.total_seconds()


def _secrets(secret: str | None, secrets: Sequence[str] | None) -> list[str]:
    found = ([secret] if secret else []) + list(secrets or [])
    if not found:
        raise ConfigurationError(
            "no webhook secret configured: pass secret='whsec_...' (the endpoint's signing "
            "secret from the Iverton dashboard) or secrets=[new, old] while rotating"
        )
    return found


#: The runner names ``Receiver(runner=...)`` accepts.
RUNNERS: dict[str, Callable[[], Runner]] = {
    "thread": ThreadRunner,
    "asyncio": AsyncioRunner,
    "inline": InlineRunner,
}


def _make_runner(spec: RunnerSpec | Any) -> Runner:
    if spec is None:
        return ThreadRunner()
    if isinstance(spec, str):
        try:
            return RUNNERS[spec]()
        except KeyError:
            raise ConfigurationError(
                f"unknown runner {spec!r}: use 'thread', 'asyncio', 'inline' or a Runner"
            ) from None
    if isinstance(spec, type):
        spec = spec()  # a Runner class (which also passes the protocol check) is built
    if isinstance(spec, Runner):
        return spec
    raise ConfigurationError(f"{spec!r} is not a Runner")
