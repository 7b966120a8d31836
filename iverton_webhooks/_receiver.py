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
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol, cast

from . import _answers as answers
from ._answers import AT_RISK_AFTER, AnswerLog, StoreAnswerLog, likely_cause
from ._directory import EndpointDirectory, SignatureCheck
from ._errors import ConfigurationError, InvalidPayload, InvalidSignature, StoreUnavailable
from ._logs import fields
from ._processor import Processor
from ._router import Router
from ._settings import Settings
from ._signature import PREFIX, SIGNATURE_HEADER, Verifier
from ._text import printable
from ._worker import Result, RetryPolicy
from .events import Envelope, parse_envelope, salvage_id_and_type
from .hooks import Hook, Hooks, Notice
from .inbox import open_store
from .inbox.base import EndpointRegistry, Status, Store
from .runners import BaseRunner, make_runner
from .telemetry import ANSWER, ENDPOINT, EVENT_ID, EVENT_TYPE, HTTP_STATUS, Telemetry

__all__ = ["Receiver", "Reply", "header"]

log = logging.getLogger("iverton_webhooks")


@dataclass(frozen=True)
class Reply:
    """What the adapter should answer: status, body bytes and headers."""

    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    #: What the reply is called in metrics (``iverton.requests``'s ``answer``) and logs;
    #: not part of what is sent, so not compared.
    answer: str = field(default="other", compare=False, repr=False)

    @classmethod
    def json(cls, code: int, **content: str) -> Reply:
        """A reply whose body is ``content`` as compact JSON."""
        return cls(code, json.dumps(content, separators=(",", ":")).encode())


#: What each reply below is called in metrics and logs, for a reply built elsewhere.
ANSWER_OF: dict[Reply, str] = {}


def _answer(answer: str, code: int, *headers: tuple[str, str], **content: str) -> Reply:
    reply = Reply.json(code, **content)
    reply = replace(reply, headers=reply.headers + headers, answer=answer)
    ANSWER_OF[reply] = answer
    return reply


# Replies that never vary are built once.
ACCEPTED = _answer("accepted", 200, status="accepted")
DUPLICATE = _answer("duplicate", 200, status="duplicate")
UNKNOWN_TYPE = _answer("accepted", 200, status="accepted", note="unknown event type")
QUARANTINED = _answer("quarantined", 200, status="quarantined")
EXPIRED = _answer("expired", 200, status="expired")
#: One body whatever the cause (never registered, disabled, removed, a name no endpoint
#: may have), so the answer tells a prober nothing.
UNKNOWN_ENDPOINT = _answer("unknown_endpoint", 404, error="no such endpoint")
BAD_SIGNATURE = _answer("refused", 401, error="invalid signature")
TOO_LARGE = _answer("too_large", 413, error="body too large")
#: The adapter could not read the body to its end (client gone, chunk cut short).
UNREADABLE = _answer("unreadable", 400, error="the request body could not be read")
STORE_DOWN = _answer("store_down", 503, error="temporarily unable to record the event; retry later")
WRONG_METHOD = _answer("wrong_method", 405, ("Allow", "POST"), error="method not allowed")

#: The hook each answer fires.
HOOK_OF_ANSWER = {
    "accepted": Hook.RECEIVED,
    "duplicate": Hook.DUPLICATE,
    "quarantined": Hook.QUARANTINED,
    "expired": Hook.EXPIRED,
    "refused": Hook.REFUSED,
    "store_down": Hook.STORE_DOWN,
}
#: The answer-log kind of each failed answer the sender counts (a 405 is not the sender).
_KIND_OF_STATUS = {401: answers.NO_SIGNATURE, 413: answers.TOO_LARGE, 503: answers.STORE_DOWN}
_WELL_FORMED = re.compile(re.escape(PREFIX) + "[0-9a-f]{64}")


#: Makes a step's child span; None when not tracing (each step is then a plain call:
#: three no-op context managers cost an ack more than its dedupe lookup).
_SpanMaker = Callable[..., AbstractContextManager[Any]] | None


class _Seen:
    """What one request turned out to be, for the hooks, spans and the answer log.

    Defaults on the class, no ``__init__``: every request makes one, and most set
    nothing or two fields."""

    endpoint: str = ""
    event_id: str | None = None
    event_type: str | None = None
    error: str | None = None
    well_formed_signature: bool = False


class HeadersLike(Protocol):
    """What the receiver needs of request headers: Django's, Werkzeug's and Starlette's
    header objects all fit, as does a plain dict."""

    def get(self, key: str, /) -> str | None: ...

    def items(self) -> Iterable[tuple[str, str]]: ...


class Receiver:
    """Verifies, records and hands off Iverton webhook requests. Framework-free.

    ``secret`` or ``secrets`` (a list of several, for rotation: every one is accepted).
    ``endpoint``: the name this receiver's events are kept under, so several receivers
    (one per Iverton endpoint) can share a store without seeing each other's events.
    ``endpoint_registry``: also receive for the endpoints registered in the store
    (``receive(..., endpoint=name)``; see docs/endpoints.md); the secret is then
    optional, and without one only registered endpoints are served.
    ``store``: a `Store`, or a URL: ``"sqlite:///path.db"`` (default
    ``sqlite:///webhooks.sqlite3``), ``"postgresql://..."``, ``"redis://..."``, ``"memory://"``.
    ``runner``: ``"thread"`` (default), ``"asyncio"``, ``"inline"``, a runner
    (e.g. ``CeleryRunner(app)``) or a runner class.
    ``max_age``: verified events older than this are answered ``expired`` and not
    recorded (off by default; see README).
    ``lease``, ``handler_timeout``, ``retry``, ``process_context``: see `Processor`,
    which the receiver builds and keeps as `processor`.
    ``hooks``: the `Hooks` to fire (default: a new set, as `hooks`). ``telemetry``: where
    spans and metrics go (default: the global OpenTelemetry providers, when installed).
    ``answer_log``: where consecutive non-2xx answers are counted for the disablement
    warning (default: in the store, shared by every process).
    """

    def __init__(
        self,
        secret: str | None = None,
        *,
        secrets: Sequence[str] | None = None,
        endpoint: str | None = None,
        router: Router | None = None,
        store: Store | str | None = None,
        runner: BaseRunner | str | type[BaseRunner] | None = None,
        max_body_bytes: int | None = None,
        max_age: timedelta | float | None = None,
        retention: timedelta | float | None = None,
        retry: RetryPolicy | None = None,
        lease: timedelta | float | None = None,
        handler_timeout: timedelta | float | None = None,
        process_context: Callable[[], AbstractContextManager[object]] | None = None,
        hooks: Hooks | None = None,
        telemetry: Telemetry | None = None,
        answer_log: AnswerLog | None = None,
        settings: Settings | None = None,
        endpoint_registry: bool | None = None,
    ) -> None:
        # Every option is checked here, before a store is opened (and maybe created).
        self.settings = settings = (settings or Settings()).replace(
            secrets=_secrets(secret, secrets),
            endpoint=endpoint,
            store=store,
            runner=runner,
            max_body_bytes=max_body_bytes,
            max_age=max_age,
            retention=retention,
            retry=retry,
            lease=lease,
            handler_timeout=handler_timeout,
            endpoint_registry=endpoint_registry,
        )
        if not settings.secrets and not settings.endpoint_registry:
            raise ConfigurationError(
                "no webhook secret configured: pass secret='whsec_...' (the endpoint's signing "
                "secret from the Iverton dashboard) or secrets=[new, old] while rotating"
            )
        #: None: this receiver's own endpoint has no secret (registered endpoints only).
        self.verifier = Verifier(list(settings.secrets)) if settings.secrets else None
        self.store: Store = open_store(settings.store)
        self.processor = Processor(
            self.store,
            router,
            settings=settings,
            process_context=process_context,
            hooks=hooks,
            telemetry=telemetry,
        )
        if answer_log is None:
            answer_log = StoreAnswerLog(self.store)
        elif not isinstance(answer_log, AnswerLog):
            raise ConfigurationError(
                f"answer_log must have note(endpoint, ok, kind) and a quiet dict (it may "
                f"stay empty), as iverton_webhooks._answers.AnswerLog says; got "
                f"{type(answer_log).__name__}"
            )
        self.answer_log = answer_log
        self.max_body_bytes = settings.max_body_bytes
        self.runner = make_runner(settings.runner)
        self.runner.bind(self.processor)
        self._said_no_handlers = False
        #: Where registered endpoints' secrets are looked up; None without the registry.
        self.directory = (
            EndpointDirectory(cast(EndpointRegistry, self.store))
            if settings.endpoint_registry
            else None
        )

    @property
    def endpoint(self) -> str:
        return self.processor.endpoint

    @property
    def hooks(self) -> Hooks:
        """The lifecycle hooks, shared with `processor`."""
        return self.processor.hooks

    @property
    def telemetry(self) -> Telemetry:
        return self.processor.telemetry

    @property
    def router(self) -> Router:
        return self.processor.router

    @property
    def max_age(self) -> timedelta | None:
        return self.processor.max_age

    def __repr__(self) -> str:
        return (
            f"<Receiver {self.verifier!r} endpoint={self.endpoint!r} store={self.store!r} "
            f"runner={type(self.runner).__name__}>"
        )

    # The request path ------------------------------------------------------------

    def receive(
        self,
        method: str,
        body: bytes,
        headers: HeadersLike | Mapping[str, str],
        endpoint: str | None = None,
    ) -> Reply:
        """Handle one request; never raises for anything the client sent. ``endpoint``:
        the name the request's URL gives (the receiver's own endpoint when None)."""
        if not isinstance(body, (bytes, bytearray, memoryview)):
            # A str here means the adapter decoded the body: the signature is over bytes.
            raise TypeError(f"receive() needs the raw body as bytes, not {type(body).__name__}")
        telemetry = self.processor.telemetry
        # Asked once per request: with no SDK set up no span is made at all, and no
        # clock is read for the ack's duration.
        tracing, metering = telemetry.switches()
        seen = _Seen()
        seen.endpoint = self.processor.endpoint if endpoint is None else endpoint
        if not (tracing or metering):
            reply = self._receive(method, body, headers, seen, None)
            if (
                reply is ACCEPTED
                and Hook.RECEIVED not in self.processor.hooks.watched
                and time.monotonic() < self.answer_log.quiet.get(seen.endpoint, 0.0)
            ):
                return reply  # most acks: no hook to fire, nothing for the answer log
            self._answered(reply, seen, None)
            return reply
        started = time.perf_counter()
        if not tracing:
            reply = self._receive(method, body, headers, seen, None)
        else:
            with telemetry.span("iverton.receive", {ENDPOINT: seen.endpoint}) as span:
                reply = self._receive(method, body, headers, seen, telemetry.span)
                if span.is_recording():
                    span.set_attributes({ANSWER: reply.answer, HTTP_STATUS: reply.status})
                    if seen.event_id is not None:
                        span.set_attributes({EVENT_ID: seen.event_id, EVENT_TYPE: seen.event_type})
        self._answered(reply, seen, time.perf_counter() - started if metering else None)
        return reply

    def _receive(
        self,
        method: str,
        body: bytes,
        headers: HeadersLike | Mapping[str, str],
        seen: _Seen,
        span: _SpanMaker,
    ) -> Reply:
        if method.upper() != "POST":
            return WRONG_METHOD
        endpoint = seen.endpoint
        verifier: SignatureCheck | None = self.verifier
        registered = endpoint != self.processor.endpoint
        if registered:
            try:
                verifier = None if self.directory is None else self.directory.checker(endpoint)
            except StoreUnavailable:
                log.exception(
                    "endpoint %s: the registry could not be read, answering 503",
                    printable(endpoint),
                    extra=fields(endpoint=endpoint),
                )
                return STORE_DOWN
        if verifier is None:
            log.info("no enabled endpoint named %s: answered 404", printable(endpoint))
            return UNKNOWN_ENDPOINT
        if len(body) > self.max_body_bytes:
            return TOO_LARGE
        signature = header(headers, SIGNATURE_HEADER)
        try:
            if span is None:
                secret_index = verifier.verify(body, signature)
            else:
                with span("iverton.verify"):
                    secret_index = verifier.verify(body, signature)
        except InvalidSignature:
            secret_index = self._verify_again(endpoint, body, signature) if registered else -1
        if secret_index < 0:
            seen.well_formed_signature = isinstance(signature, str) and bool(
                _WELL_FORMED.fullmatch(signature)
            )
            log.warning(
                "refused a request with an invalid signature (%d bytes)",
                len(body),
                extra=fields(endpoint=endpoint),
            )
            return BAD_SIGNATURE
        try:
            if span is None:
                envelope = parse_envelope(body)
            else:
                with span("iverton.parse"):
                    envelope = parse_envelope(body)
        except InvalidPayload as exc:
            return self._quarantine(bytes(body), str(exc), seen, span)
        seen.event_id, seen.event_type = envelope.id, envelope.type

        max_age = self.processor.max_age
        if max_age is not None:
            outside = _outside_window(envelope, max_age, self.processor.retention)
            if outside is not None:
                log.warning(
                    "event %s (%s) is %s: answered 'expired', not recorded",
                    printable(envelope.id),
                    printable(envelope.type),
                    outside,
                    extra=self._about(envelope, endpoint),
                )
                return EXPIRED
        args = (envelope.id, envelope.type, envelope.created_at, body)
        resource_id = envelope.resource_id
        try:
            if span is None:
                is_new = self.store.record(*args, endpoint=endpoint, resource_id=resource_id)
            else:
                with span("iverton.record"):
                    is_new = self.store.record(*args, endpoint=endpoint, resource_id=resource_id)
        except Exception:
            self._store_failed(envelope.id, envelope.type, endpoint)
            return STORE_DOWN
        informing = log.isEnabledFor(logging.INFO)
        if not is_new:
            if informing:
                log.info(
                    "event %s (%s): duplicate delivery, not dispatched",
                    printable(envelope.id),
                    printable(envelope.type),
                    extra=self._about(envelope, endpoint),
                )
            return DUPLICATE
        if informing:
            log.info(
                "event %s (%s) recorded (secret #%d)",
                printable(envelope.id),
                printable(envelope.type),
                secret_index,
                extra=self._about(envelope, endpoint, status=Status.PENDING.value),
            )
        if span is not None:
            # Its processing joins this request's trace, whichever thread runs it here.
            self.telemetry.remember(endpoint, envelope.id)
        try:
            if registered:
                self.runner.submit(envelope.id, endpoint)
            else:
                self.runner.submit(envelope.id)
        except Exception:
            # Recorded is what the 2xx promises; recovery will process it.
            log.exception(
                "event %s (%s): hand-off failed, left pending",
                printable(envelope.id),
                printable(envelope.type),
                extra=self._about(envelope, endpoint),
            )
        return ACCEPTED if envelope.is_known_type else UNKNOWN_TYPE

    def _verify_again(self, endpoint: str, body: bytes, signature: object) -> int:
        """A registered endpoint's signature that failed, checked once more against the
        registry's latest secrets (a rotation may have just happened); -1 if it fails."""
        assert self.directory is not None
        try:
            verifier = self.directory.checker(endpoint, recheck=True)
            return -1 if verifier is None else verifier.verify(body, signature)
        except (InvalidSignature, StoreUnavailable):
            return -1

    def _about(self, envelope: Envelope, endpoint: str, **more: Any) -> dict[str, Any]:
        """A log record's fields for this event (built only for a record that is logged:
        most acks log nothing at INFO)."""
        found = fields(event_id=envelope.id, event_type=envelope.type, endpoint=endpoint)
        return {**found, **more}

    def _answered(self, reply: Reply, seen: _Seen, seconds: float | None) -> None:
        """After the request: metrics (``seconds`` None: none are recorded), the answer's
        hook, the disablement warning."""
        processor = self.processor
        endpoint = seen.endpoint
        answer = reply.answer
        if reply is UNKNOWN_ENDPOINT:
            # Any name can be asked for: none becomes a metric label or an answer count.
            if seconds is not None:
                processor.telemetry.answered(processor.endpoint, answer, seconds)
            return
        if seconds is not None:
            processor.telemetry.answered(endpoint, answer, seconds)
        hook = HOOK_OF_ANSWER.get(answer)
        if hook is not None and processor.hooks.wants(hook):
            processor.hooks.emit(
                Notice(
                    hook,
                    endpoint,
                    event_id=seen.event_id,
                    event_type=seen.event_type,
                    error=seen.error,
                    status_code=reply.status,
                )
            )
        ok = 200 <= reply.status < 300
        kind = answers.OK if ok else _KIND_OF_STATUS.get(reply.status)
        if kind is None:
            return  # a wrong method: not the sender
        if kind == answers.NO_SIGNATURE and seen.well_formed_signature:
            kind = answers.SIGNATURE
        try:
            in_a_row = self.answer_log.note(endpoint, ok, kind)
        except Exception as exc:
            log.warning(
                "could not count this answer for the disablement warning: %s",
                printable(exc),
                extra=fields(endpoint=endpoint),
            )
            return
        if in_a_row == AT_RISK_AFTER:
            cause = likely_cause(kind)
            log.error(
                "endpoint %s answered %d non-2xx responses in a row; the sender disables an "
                "endpoint after 5 failed deliveries. Likely cause: %s",
                printable(endpoint),
                in_a_row,
                cause,
                extra=fields(endpoint=endpoint, status=reply.status),
            )
            self.hooks.emit(
                Notice(Hook.ENDPOINT_AT_RISK, endpoint, status_code=reply.status, detail=cause)
            )

    def _store_failed(self, event_id: str, event_type: str, endpoint: str) -> None:
        """Log the exception being handled: the store could not record the event."""
        log.exception(
            "event %s (%s): store unavailable, answering 503",
            printable(event_id),
            printable(event_type),
            extra=fields(event_id=event_id, event_type=event_type, endpoint=endpoint),
        )

    def _quarantine(self, body: bytes, reason: str, seen: _Seen, span: _SpanMaker) -> Reply:
        # Signed, so it came from the sender: refusing it would count towards disabling
        # the endpoint. Keep it aside, unprocessed, for a replay after a fix.
        event_id, event_type = salvage_id_and_type(body)
        key = event_id or f"sha256:{hashlib.sha256(body).hexdigest()}"
        seen.event_id, seen.event_type = key, event_type or "(unreadable)"
        seen.error = reason[:500]
        try:
            with nullcontext() if span is None else span("iverton.record"):
                is_new = self.store.record(
                    key,
                    seen.event_type,
                    datetime.now(timezone.utc),
                    body,
                    endpoint=seen.endpoint,
                    status=Status.QUARANTINED,
                    error=seen.error,
                )
        except Exception:
            self._store_failed(key, seen.event_type, seen.endpoint)
            return STORE_DOWN
        if is_new:
            log.error(
                "event %s: signed but unreadable, quarantined (not processed): %s",
                printable(key),
                printable(reason),
                extra=fields(
                    event_id=key,
                    event_type=seen.event_type,
                    endpoint=seen.endpoint,
                    status=Status.QUARANTINED,
                ),
            )
        return QUARANTINED if is_new else DUPLICATE

    async def receive_async(
        self,
        method: str,
        body: bytes,
        headers: HeadersLike | Mapping[str, str],
        endpoint: str | None = None,
    ) -> Reply:
        """`receive` for async adapters: a blocking store is called in a thread,
        and the reply is made after that call has returned, so a 2xx is still a
        committed insert."""
        # Submitting happens in the worker thread; an asyncio runner needs this loop.
        self.runner.attach(asyncio.get_running_loop())
        if self.store.blocking:
            return await asyncio.to_thread(self.receive, method, body, headers, endpoint)
        return self.receive(method, body, headers, endpoint)

    # Processing and maintenance: the processor's, for convenience ---------------

    def process(self, event_id: str) -> Result:
        """Claim and process one stored event in this thread."""
        return self.processor.process(event_id)

    async def process_async(self, event_id: str) -> Result:
        """Claim and process one stored event on the running loop."""
        return await self.processor.process_async(event_id)

    def recover(self, limit: int | None = None) -> dict[Result, int]:
        """Process, in this thread, every event that is due now; counts by result."""
        return self.processor.recover(limit)

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        """Queue a finished, failed or dead event again and hand it to the runner."""
        if not self.processor.replay(event_id, rerun_all=rerun_all):
            return False
        self.runner.submit(event_id)
        return True

    def replay_dead(self, *, rerun_all: bool = False) -> int:
        """Replay every event dead now; returns how many."""
        replayed = self.processor.replay_dead(rerun_all=rerun_all)
        for event_id in replayed:
            self.runner.submit(event_id)
        return len(replayed)

    def prune(self, older_than: timedelta | None = None) -> int:
        """Delete finished events older than ``older_than`` (default: the retention)."""
        return self.processor.prune(older_than)

    def stats(self) -> dict[Status, int]:
        """How many of this endpoint's events are in each status."""
        return self.processor.stats()

    def start(self) -> None:
        """Start processing now rather than at the first request, so events left over
        from a previous run are recovered with no new traffic. Idempotent in a process;
        in a forked child it starts afresh. Says so, once, if no handler is registered."""
        if not self._said_no_handlers and not self.router.has_handlers():
            self._said_no_handlers = True
            log.warning(
                "endpoint %s has no handler registered: every event will be kept as "
                "'unhandled' (replayable once a handler exists); register handlers with "
                "@on(...) in a module your app imports (Django: <app>/iverton_handlers.py)",
                printable(self.endpoint),
            )
        self.runner.start()

    def close(self, timeout: float | None = 5.0) -> None:
        """Stop the runner (waiting up to ``timeout`` s for work in hand) and the store."""
        self.runner.close(timeout)
        self.processor.close()
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


def _outside_window(envelope: Envelope, max_age: timedelta, retention: timedelta) -> str | None:
    """Why a verified event is not accepted by its date, or None when it is.

    Older than ``max_age``: a replay of a request whose id may already be pruned. Dated
    more than ``retention - max_age`` ahead: its row could be pruned (after ``retention``)
    while a replay of it would still be younger than ``max_age``.
    """
    created, now = envelope.created_at.timestamp(), time.time()
    if created < now - max_age.total_seconds():
        return "older than max_age"
    if created > now + (retention - max_age).total_seconds():
        return "dated further ahead than retention - max_age"
    return None


def _secrets(secret: str | None, secrets: Sequence[str] | None) -> tuple[str, ...] | None:
    if secret is not None and not isinstance(secret, str):
        raise ConfigurationError(f"secret must be a string, got {type(secret).__name__}")
    if isinstance(secrets, (str, bytes)):
        raise ConfigurationError(
            'secrets must be a list of strings, e.g. secrets=["whsec_new", "whsec_old"]; '
            'for a single secret pass secret="whsec_..."'
        )
    return tuple(([secret] if secret is not None else []) + list(secrets or [])) or None
