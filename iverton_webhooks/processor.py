"""Processing stored events: the one layer that runners, CLIs, adapters and Celery share.

A :class:`Processor` claims an event, runs the handlers it still owes (each with a
deadline, renewing the lease while it runs), and writes the verdict, retrying that
write while the store is briefly down so that a handler's recorded success is never
run again.

>>> from iverton_webhooks import MemoryStore, Router
>>> from iverton_webhooks.events import parse_envelope
>>> from iverton_webhooks.samples import sample_body
>>> router = Router()
>>> seen = []
>>> _ = router.add(lambda event: seen.append(event.id), "deal.won", name="collect")
>>> store = MemoryStore()
>>> processor = Processor(store, router)
>>> body = sample_body("deal.won", id="evt_p1")
>>> store.record("evt_p1", "deal.won", parse_envelope(body).created_at, body)
True
>>> processor.process("evt_p1"), seen
(<Result.DONE: 'done'>, ['evt_p1'])
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any

from .calls import Call, HandlerThreads
from .errors import ConfigurationError
from .health import Health, oldest_due_age
from .hooks import Hooks
from .inbox.base import DEFAULT_ENDPOINT, Claim, Status, Store, StoredEvent, Verdict
from .logs import fields
from .router import Handler, Router, default_router
from .telemetry import NO_SPAN, OUTCOME, RESULT, Telemetry, default_telemetry
from .text import printable
from .watchdog import Watchdog
from .worker import (
    RESULT_OF_VERDICT,
    HandlerTimeout,
    Job,
    Result,
    RetryPolicy,
    persist,
    persist_async,
    run_coroutine,
)

log = logging.getLogger("iverton_webhooks")

#: From the first attempt to the sender's last retry: 1 min + 5 min + 30 min + 2 h + 24 h.
SENDER_RETRY_SPAN = timedelta(minutes=1 + 5 + 30 + 120 + 1440)
DEFAULT_RETENTION = timedelta(days=7)
DEFAULT_LEASE = timedelta(seconds=60)
DEFAULT_HANDLER_TIMEOUT = timedelta(minutes=2)


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


async def _call_here(func: Callable[..., Any], /, *args: Any) -> Any:
    return func(*args)


class Processor:
    """Claims and processes the events of one endpoint of a store.

    ``lease``: how long a claim is held before another worker may take the event over;
    renewed every third of it while a handler runs, so it only bounds how soon a
    crashed worker's event is picked up again. ``handler_timeout``: a handler running
    longer is recorded as failed ("timed out after N s") and the event retried; a sync
    handler's thread is abandoned, an async handler is cancelled. ``process_context``:
    a context-manager factory entered around each synchronous :meth:`process` call
    (e.g. a Flask app context). ``hooks``: the lifecycle hooks to fire (handler_failed,
    dead, unhandled, done, quarantined). ``telemetry``: where spans and metrics go.
    """

    def __init__(
        self,
        store: Store,
        router: Router | None = None,
        *,
        endpoint: str = DEFAULT_ENDPOINT,
        retry: RetryPolicy | None = None,
        lease: timedelta = DEFAULT_LEASE,
        handler_timeout: timedelta = DEFAULT_HANDLER_TIMEOUT,
        process_context: Callable[[], AbstractContextManager[object]] | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        max_age: timedelta | None = None,
        hooks: Hooks | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        check_retention(retention, max_age)
        if lease.total_seconds() <= 0 or handler_timeout.total_seconds() <= 0:
            raise ConfigurationError("lease and handler_timeout must be positive durations")
        self.store = store
        self.router = router if router is not None else default_router
        self.endpoint = endpoint
        self.retry = retry or RetryPolicy()
        self.lease_seconds = lease.total_seconds()
        self.handler_timeout_seconds = handler_timeout.total_seconds()
        self.process_context = process_context or nullcontext
        self.retention = retention
        self.max_age = max_age
        self.hooks = hooks if hooks is not None else Hooks()
        self.telemetry = telemetry if telemetry is not None else default_telemetry()
        self._threads = HandlerThreads()
        heartbeat = self.lease_seconds / 3
        tick = min(heartbeat, self.handler_timeout_seconds) / 4
        self._watchdog = Watchdog(heartbeat, tick=min(max(tick, 0.01), 1.0))
        self._warned_types: set[str] = set()
        self._warned_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"<Processor endpoint={self.endpoint!r} store={self.store!r}>"

    @property
    def _heartbeat(self) -> float:
        return self.lease_seconds / 3

    @property
    def _write_budget(self) -> float:
        # Retry a failed write for at most half the lease: past that another worker may
        # take the event over, and the handlers would run twice anyway.
        return self.lease_seconds / 2

    # One event -------------------------------------------------------------------

    def process(self, event_id: str, *, on_stuck: Callable[[], None] | None = None) -> Result:
        """Claim and process one stored event in this thread, inside ``process_context``.

        Handlers run in this thread. If one overruns ``handler_timeout`` its failure is
        written at once by the watchdog and ``on_stuck`` is called (from the watchdog's
        thread), so the owner of this thread can put another in its place; when the
        handler finally returns, this call returns :attr:`Result.TIMED_OUT`.
        """
        if self.process_context is nullcontext:  # the default: nothing to enter
            return self._step(event_id, on_stuck, None)[0]
        with self.process_context():
            return self._step(event_id, on_stuck, None)[0]

    def process_step(
        self,
        event: str | Claim,
        *,
        on_stuck: Callable[[], None] | None = None,
        then: Callable[[], str | None] | None = None,
    ) -> tuple[Result, Claim | None]:
        """:meth:`process` for a worker going from event to event: ``event`` is an id,
        or the claim the previous step took. Once this event's handlers have run,
        ``then()`` may give the id of the next one; its claim is then taken in the same
        store transaction as this event's verdict (one commit per event instead of two)
        and returned, to be passed to the next step. ``then`` is called at most once,
        and not at all when no verdict is to be written here (not claimable, a
        handler timed out). A None claim after ``then`` gave an id means: claim that id
        afresh (it was not claimable, or the store could not claim it just now).
        """
        if self.process_context is nullcontext:  # the default: nothing to enter
            return self._step(event, on_stuck, then)
        with self.process_context():
            return self._step(event, on_stuck, then)

    def _step(
        self,
        event: str | Claim,
        on_stuck: Callable[[], None] | None,
        then: Callable[[], str | None] | None,
    ) -> tuple[Result, Claim | None]:
        job = self._begin(event)
        if not isinstance(job, Job):
            return (Result.SKIPPED if job is None else RESULT_OF_VERDICT[job.status]), None
        if not self.telemetry.tracing:
            # No SDK set up: no span generator per event and per handler (asked once).
            job.traced = False
            return self._run(job, on_stuck, then)
        with self._span(job) as span:
            result, following = self._run(job, on_stuck, then)
            span.set_attribute(RESULT, result.value)
        return result, following

    def _begin(self, event: str | Claim) -> Job | Verdict | None:
        return Job.begin(
            self.store,
            self.router,
            event,
            endpoint=self.endpoint,
            lease_seconds=self.lease_seconds,
            policy=self.retry,
            hooks=self.hooks,
            telemetry=self.telemetry,
        )

    def _span(self, job: Job) -> AbstractContextManager[Any]:
        if not self.telemetry.tracing:
            # No SDK set up: no span generator per event and per handler (asked once).
            job.traced = False
            return _UNTRACED
        event = job.claim.event
        return self.telemetry.processing(self.endpoint, event.id, event.type, event.attempts)

    def _handler_span(self, job: Job, handler: Handler) -> AbstractContextManager[Any]:
        return self.telemetry.handler(handler.name) if job.traced else _UNTRACED

    def _run(
        self,
        job: Job,
        on_stuck: Callable[[], None] | None,
        then: Callable[[], str | None] | None = None,
    ) -> tuple[Result, Claim | None]:
        if not job.matched:
            self._warn_if_unhandled(job)
        pending = job.pending
        for position, handler in enumerate(pending, 1):
            if job.traced:
                with self.telemetry.handler(handler.name) as span:
                    in_time = self._call(job, handler, on_stuck, span)
                    if not in_time:
                        span.set_attribute(OUTCOME, "timed_out")
            else:
                in_time = self._call(job, handler, on_stuck, None)
            if not in_time:
                # The watchdog already recorded it as failed ("timed out").
                return Result.TIMED_OUT, None
            if position < len(pending):
                saved, kept = persist(job.checkpoint, self._write_budget, job.describe, job.fields)
                if not saved:
                    return Result.STORE_DOWN, None
                if not kept:
                    return job.lost(), None
        verdict = job.verdict()
        next_id = then() if then is not None else None
        if next_id is None:
            try:  # the common case, a write that works at once, without persist's closure
                return job.finish(verdict), None
            except Exception as exc:
                saved, result = persist(
                    lambda: job.finish(verdict),
                    self._write_budget,
                    job.describe,
                    job.fields,
                    failed=exc,
                )
            return (result if saved else Result.STORE_DOWN), None
        saved, step = persist(
            lambda: job.finish_and_claim(verdict, next_id, self.lease_seconds),
            self._write_budget,
            job.describe,
            job.fields,
        )
        return step if saved else (Result.STORE_DOWN, None)

    def _call(
        self, job: Job, handler: Handler, on_stuck: Callable[[], None] | None, span: Any
    ) -> bool:
        """Run one handler under the watchdog and record its outcome; False if it
        overran ``handler_timeout`` (the watchdog then recorded it)."""
        watch = self._watchdog.watch(
            self.handler_timeout_seconds, self._renew, self._expire, job, handler, on_stuck
        )
        error: Exception | None = None
        try:
            value = handler.func(job.event)
            if handler.is_async or (value is not None and asyncio.iscoroutine(value)):
                run_coroutine(value)
        except Exception as exc:
            error = exc
        finally:
            in_time = self._watchdog.release(watch)
        if in_time:
            job.record(handler, error, span)
        return in_time

    def _expire(self, job: Job, handler: Handler, on_stuck: Callable[[], None] | None) -> None:
        # In the watchdog's thread, while the handler still runs in its own: write the
        # timeout as the handler's failure so the event is retried (or dead) elsewhere.
        job.record(handler, HandlerTimeout(self.handler_timeout_seconds))
        verdict = job.verdict()
        persist(lambda: job.finish(verdict), self._write_budget, job.describe, job.fields)
        if on_stuck is not None:
            on_stuck()

    def _renew(self, job: Job, *_: object) -> None:
        try:
            if not self.store.renew(job.claim, self.lease_seconds):
                log.warning(
                    "event %s: lease lost while a handler ran",
                    printable(job.event.id),
                    extra=job.fields(),
                )
        except Exception as exc:
            log.warning(
                "event %s: could not renew the lease (%s)",
                printable(job.event.id),
                printable(exc),
                extra=job.fields(),
            )

    async def process_async(self, event_id: str) -> Result:
        """Claim and process one stored event on the running loop: async handlers on the
        loop, sync handlers and blocking store calls in threads."""
        offload = asyncio.to_thread if self.store.blocking else _call_here
        job = await offload(self._begin, event_id)
        if not isinstance(job, Job):
            return Result.SKIPPED if job is None else RESULT_OF_VERDICT[job.status]
        with self._span(job) as span:
            result = await self._run_async(job, offload)
            span.set_attribute(RESULT, result.value)
        return result

    async def _run_async(self, job: Job, offload: Callable[..., Awaitable[Any]]) -> Result:
        self._warn_if_unhandled(job)
        try:
            for position, handler in enumerate(job.pending, 1):
                with self._handler_span(job, handler) as span:
                    job.record(handler, await self._call_async(job, handler, offload), span)
                if position < len(job.pending):
                    saved, kept = await persist_async(
                        job.checkpoint, self._write_budget, job.describe, offload, job.fields
                    )
                    if not saved:
                        return Result.STORE_DOWN
                    if not kept:
                        return job.lost()
        except asyncio.CancelledError:
            # Shutting down mid-event: hand the event back at once (due now) instead of
            # leaving it leased until the lease runs out. Done without awaiting, since
            # this task is being cancelled.
            try:
                job.finish(job.interrupted())
            except Exception:
                log.exception(
                    "event %s: could not hand it back", printable(job.event.id), extra=job.fields()
                )
            raise
        verdict = job.verdict()
        saved, result = await persist_async(
            lambda: job.finish(verdict), self._write_budget, job.describe, offload, job.fields
        )
        return result if saved else Result.STORE_DOWN

    async def _call_async(
        self, job: Job, handler: Handler, offload: Callable[..., Awaitable[Any]]
    ) -> BaseException | None:
        call: Call | None = None
        if handler.is_async:
            running: asyncio.Future[Any] = asyncio.ensure_future(handler.func(job.event))
        else:
            call = self._threads.start(handler.func, job.event)
            running = asyncio.wrap_future(call.future)
        deadline = time.monotonic() + self.handler_timeout_seconds
        try:
            while True:
                left = deadline - time.monotonic()
                await asyncio.wait({running}, timeout=min(self._heartbeat, max(left, 0)))
                if running.done():
                    outcome = await _outcome(running)
                    if outcome is None and asyncio.iscoroutine(running.result()):
                        # A sync function that returned a coroutine: finish it on this loop.
                        running, call = asyncio.ensure_future(running.result()), None
                        continue
                    return outcome
                if time.monotonic() >= deadline:
                    if call is not None:
                        call.abandon()
                    running.cancel()
                    return HandlerTimeout(self.handler_timeout_seconds)
                await offload(self._renew, job)
        except asyncio.CancelledError:
            if call is not None:
                # A thread cannot be stopped: wait for it anyway (until its deadline) and
                # record what it really did, so a handler that completed is not run again.
                await asyncio.wait({running}, timeout=max(deadline - time.monotonic(), 0))
                if running.done():
                    job.record(handler, await _outcome(running))
            else:
                running.cancel()
            raise

    def _warn_if_unhandled(self, job: Job) -> None:
        if job.matched:
            return
        with self._warned_lock:
            if job.event.type in self._warned_types:
                return
            self._warned_types.add(job.event.type)
        log.warning(
            "no handler matches event type %s (endpoint %s): such events are kept as "
            "'unhandled'; register a handler and replay them",
            printable(job.event.type),
            printable(self.endpoint),
            extra=job.fields(Status.UNHANDLED),
        )

    # Many events -----------------------------------------------------------------

    def recover(self, limit: int | None = None) -> dict[Result, int]:
        """Process every event that is due now: pending ones, retries whose time has
        come, and ones whose worker died. Returns counts by result. Each event is tried
        once per call, so a call always ends, and a handler that hangs past
        ``handler_timeout`` is left behind in its own thread rather than holding this one."""
        counts: dict[Result, int] = {}
        tried: set[str] = set()
        while limit is None or len(tried) < limit:
            batch = [i for i in self.store.due(500, endpoint=self.endpoint) if i not in tried]
            if not batch:
                break
            for event_id in batch[: None if limit is None else limit - len(tried)]:
                tried.add(event_id)
                result = self._process_unless_stuck(event_id)
                counts[result] = counts.get(result, 0) + 1
        return counts

    def _process_unless_stuck(self, event_id: str) -> Result:
        ended = threading.Event()
        call = self._threads.start(functools.partial(self.process, on_stuck=ended.set), event_id)
        call.future.add_done_callback(lambda _: ended.set())
        ended.wait()
        if not call.future.done():  # the watchdog gave up on a handler: so do we
            call.abandon()
            return Result.TIMED_OUT
        if call.future.exception() is not None:
            log.error(
                "event %s: processing failed: %s",
                printable(event_id),
                printable(call.future.exception()),
                extra=fields(event_id=event_id, endpoint=self.endpoint),
            )
            return Result.STORE_DOWN
        return call.future.result()  # type: ignore[no-any-return]

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        """Put a finished or failed event back to pending (it is processed by whatever
        runs this endpoint). Handlers that succeeded are kept unless ``rerun_all``."""
        return self.store.replay(event_id, rerun_all=rerun_all, endpoint=self.endpoint)

    def replay_dead(self, *, rerun_all: bool = False) -> list[str]:
        """Replay every event dead now; returns their ids. The ids are read first, so an
        event that dies again while this runs is not replayed twice."""
        dead = self.store.list(Status.DEAD, limit=2**31 - 1, endpoint=self.endpoint)
        return [e.id for e in dead if self.replay(e.id, rerun_all=rerun_all)]

    def prune(self, older_than: timedelta | None = None) -> int:
        """Delete finished events received more than ``older_than`` ago (default: the
        retention). Refuses a span that would forget ids the sender may still retry,
        or that max_age would still accept."""
        span = self.retention if older_than is None else older_than
        check_retention(span, self.max_age)
        return self.store.prune(time.time() - span.total_seconds(), endpoint=self.endpoint)

    def stats(self) -> dict[Status, int]:
        """How many of this endpoint's events are in each status."""
        return self.store.stats(endpoint=self.endpoint)

    def health(self) -> Health:
        """Counts by status and how long the oldest due event has waited for a worker
        (see :class:`~iverton_webhooks.health.Health`); what ``stats`` commands show."""
        return Health(self.endpoint, self.stats(), oldest_due_age(self.store, self.endpoint))

    def list(
        self, status: Status | str | None = None, event_type: str | None = None, limit: int = 100
    ) -> Sequence[StoredEvent]:
        """This endpoint's events, newest first."""
        return self.store.list(status, event_type, limit, endpoint=self.endpoint)

    def get(self, event_id: str) -> StoredEvent | None:
        return self.store.get(event_id, endpoint=self.endpoint)

    def resolve(self, event_id: str) -> bool:
        """Mark a failed, dead, unhandled or quarantined event done without running it."""
        return self.store.resolve(event_id, endpoint=self.endpoint)

    def close(self) -> None:
        """Let idle handler threads and the watchdog exit."""
        self._threads.close()
        self._watchdog.close()


#: The stand-in span's context when nothing is traced: reusable, as it holds no state.
_UNTRACED = nullcontext(NO_SPAN)


async def _outcome(done: asyncio.Future[Any]) -> BaseException | None:
    if done.cancelled():
        return asyncio.CancelledError("handler cancelled")
    return done.exception()
