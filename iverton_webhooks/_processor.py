"""Processing stored events: the one layer that runners, CLIs, adapters and Celery share.

A `Processor` claims an event, runs the handlers it still owes (each with a
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
import contextvars
import copy
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, nullcontext
from datetime import timedelta
from typing import Any, TypeVar, cast

from ._errors import ConfigurationError, StoreUnavailable
from ._health import Health, oldest_due_age, store_warnings
from ._logs import fields
from ._router import Handler, Router, default_router
from ._settings import Settings, check_retention
from ._text import printable
from ._worker import (
    CANCEL_GRACE,
    RESULT_OF_VERDICT,
    HandlerTimeout,
    Job,
    Result,
    RetryPolicy,
    persist,
    run_coroutine,
)
from .hooks import Hooks
from .inbox.base import (
    EndpointRegistry,
    MarkAnswer,
    ResourceMarks,
    Status,
    Store,
    StoredEvent,
    operations_of,
)
from .telemetry import NO_SPAN, RESULT, Telemetry, default_telemetry

log = logging.getLogger("iverton_webhooks")

T = TypeVar("T")
#: How a store call is made from the loop: in a thread, or right there.
_Offload = Callable[..., Awaitable[Any]]


async def _call_here(func: Callable[..., T], /, *args: Any) -> T:
    return func(*args)


class _Threads:
    """The threads that run this processor's blocking calls: store calls and sync handlers.

    A standard ``ThreadPoolExecutor``, made on first use in each process (a forked
    child never touches its parent's). A thread cannot be stopped, so when a handler
    overruns its deadline the pool it runs in is given up: the stuck thread is left to
    finish on its own and later calls go to a fresh pool.
    """

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._pid = 0

    def pool(self) -> ThreadPoolExecutor:
        pool = self._pool
        if pool is None or self._pid != os.getpid():
            pool = self._pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="iverton")
            self._pid = os.getpid()
        return pool

    def abandon(self) -> None:
        """Leave the current pool (and a stuck call in it) behind; new calls get a new one."""
        pool, self._pool = self._pool, None
        if pool is not None and self._pid == os.getpid():
            pool.shutdown(wait=False)


class Processor:
    """Claims and processes the events of one endpoint of a store.

    ``settings`` (a `Settings`), or its fields as keyword arguments over it (durations
    as ``timedelta`` or seconds), checked once by `Settings`. ``lease``: how long a
    claim is held before another worker may take the event over; renewed every third
    of it while a handler runs, so it only bounds how soon a crashed worker's event is
    picked up again. ``handler_timeout``: a handler running longer is recorded as
    failed ("timed out after N s") and the event retried; a sync handler's thread is
    abandoned, an async handler is cancelled. ``process_context``: a context-manager
    factory entered around each handler call and each store call in a worker thread
    (e.g. a Flask app context). ``hooks``: the `Hooks` to fire. ``telemetry``: where
    spans and metrics go.
    """

    def __init__(
        self,
        store: Store,
        router: Router | None = None,
        *,
        settings: Settings | None = None,
        endpoint: str | None = None,
        retry: RetryPolicy | None = None,
        lease: timedelta | float | None = None,
        handler_timeout: timedelta | float | None = None,
        retention: timedelta | float | None = None,
        max_age: timedelta | float | None = None,
        process_context: Callable[[], AbstractContextManager[object]] | None = None,
        hooks: Hooks | None = None,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.settings = settings = (settings or Settings()).replace(
            endpoint=endpoint,
            retry=retry,
            lease=lease,
            handler_timeout=handler_timeout,
            retention=retention,
            max_age=max_age,
        )
        self.store = store
        self.router = router if router is not None else default_router
        self.endpoint = settings.endpoint
        self.retry = settings.retry
        self.lease_seconds = settings.lease.total_seconds()
        # Retry a failed write for at most half the lease: past that another worker may
        # take the event over, and the handlers would run twice anyway.
        self._write_budget = self.lease_seconds / 2
        self.handler_timeout_seconds = settings.handler_timeout.total_seconds()
        self.process_context = process_context or nullcontext
        self.retention = settings.retention
        self.max_age = settings.max_age
        self.hooks = hooks if hooks is not None else Hooks()
        self.telemetry = telemetry if telemetry is not None else default_telemetry()
        if not isinstance(store, ResourceMarks):
            guarded = [handler for handler in self.router.handlers() if handler.newest_only]
            if guarded:
                raise _no_marks(store, guarded[0])
        self._threads = _Threads()
        self._warned_types: set[str] = set()
        self._warned_lock = threading.Lock()
        if settings.endpoint_registry and not isinstance(store, EndpointRegistry):
            raise ConfigurationError(
                f"endpoint_registry is on, but {type(store).__name__} keeps no endpoints (it "
                "does not implement EndpointRegistry): use a built-in store, or turn it off"
            )

    def __repr__(self) -> str:
        return f"<Processor endpoint={self.endpoint!r} store={self.store!r}>"

    def for_endpoint(self, name: str | None) -> Processor:
        """This processor for the events of endpoint ``name`` (itself for its own
        endpoint or None): the same store, handlers, settings (``settings.endpoint``
        stays this processor's), hooks and threads.

        >>> from iverton_webhooks import MemoryStore
        >>> processor = Processor(MemoryStore())
        >>> processor.for_endpoint("acme").endpoint, processor.for_endpoint(None) is processor
        ('acme', True)
        """
        if name is None or name == self.endpoint:
            return self
        # A copy per call, not a cache: it sees this processor as it is now (a test's
        # `isolate` swaps the store).
        sibling = copy.copy(self)
        sibling.endpoint = name
        return sibling

    def registered_endpoints(self) -> list[str]:
        """The endpoints of the store's registry this processor also processes (none
        unless ``endpoint_registry``); its own endpoint is never among them. One made by
        `for_endpoint` processes its own endpoint only (``worker --endpoint NAME``)."""
        if not self.settings.endpoint_registry or self.endpoint != self.settings.endpoint:
            return []
        registry = cast(EndpointRegistry, self.store)
        return [e.name for e in registry.list_endpoints() if e.name != self.endpoint]

    def due(self, limit: int) -> list[tuple[str, str]]:
        """Up to ``limit`` (endpoint, event id) pairs that a worker may claim now: this
        endpoint's first, then each registered endpoint's (one store query each)."""
        found = [(self.endpoint, i) for i in self.store.due(limit, endpoint=self.endpoint)]
        for name in self.registered_endpoints():
            if len(found) >= limit:
                break
            found += [(name, i) for i in self.store.due(limit - len(found), endpoint=name)]
        return found

    # One event -------------------------------------------------------------------

    def process(self, event_id: str) -> Result:
        """Claim and process one stored event; returns once it is finished or handed
        back (a handler that overran ``handler_timeout`` is left behind in its thread)."""
        return run_coroutine(self.process_async(event_id))

    async def process_async(self, event_id: str, *, store_calls_here: bool = False) -> Result:
        """Claim and process one stored event on the running loop: async handlers on the
        loop, sync handlers in threads, and blocking store calls in threads too unless
        ``store_calls_here`` (a loop that serves nothing else may wait for them)."""
        offload: _Offload = _call_here if store_calls_here else self.run_blocking
        job = await offload(Job.begin, self, event_id)
        if not isinstance(job, Job):
            return Result.SKIPPED if job is None else RESULT_OF_VERDICT[job.status]
        with self._span(job) as span:
            result = await self._run(job, offload)
            span.set_attribute(RESULT, result.value)
        return result

    async def run_blocking(self, func: Callable[..., T], /, *args: Any) -> T:
        """``func(*args)`` for a store call from the loop: in a worker thread (inside
        ``process_context``) when the store blocks, else right here."""
        if not self.store.blocking:
            return func(*args)
        return await self._in_thread(func, *args)

    def _in_thread(self, func: Callable[..., T], /, *args: Any) -> asyncio.Future[T]:
        # In a copy of the caller's context, as asyncio.to_thread does.
        call = functools.partial(contextvars.copy_context().run, self._in_context, func, *args)
        return asyncio.get_running_loop().run_in_executor(self._threads.pool(), call)

    def _in_context(self, func: Callable[..., T], /, *args: Any) -> T:
        with self.process_context():
            return func(*args)

    def _span(self, job: Job) -> AbstractContextManager[Any]:
        if not self.telemetry.tracing:
            job.traced = False
            return _UNTRACED
        event = job.claim.event
        return self.telemetry.processing(self.endpoint, event.id, event.type, event.attempts)

    async def _run(self, job: Job, write: _Offload) -> Result:
        self._warn_if_unhandled(job)
        try:
            for position, handler in enumerate(job.pending, 1):
                with self.telemetry.handler(handler.name) if job.traced else _UNTRACED as span:
                    if handler.newest_only:
                        await self._call_newest_only(job, handler, write, span)
                    else:
                        job.record(handler, await self._call(job, handler, write), span)
                if position < len(job.pending):
                    saved, kept = await persist(job.checkpoint, self._write_budget, job, write)
                    if not saved:
                        return Result.STORE_DOWN
                    if not kept:
                        return job.lost()
        except (asyncio.CancelledError, RuntimeError):
            # Shutting down mid-event (cancelled, or an exiting interpreter that starts no
            # more threads): hand the event back at once (due now) instead of leaving it
            # leased until the lease runs out.
            try:
                await write(job.finish, job.interrupted())
            except Exception as exc:
                log.warning(
                    "%s: could not hand it back (%s); taken up again once its lease ends",
                    job.describe(),
                    printable(exc),
                    extra=job.fields(),
                )
            raise
        verdict = job.verdict()
        saved, result = await persist(lambda: job.finish(verdict), self._write_budget, job, write)
        return result if saved else Result.STORE_DOWN

    async def _call_newest_only(
        self, job: Job, handler: Handler, write: _Offload, span: Any
    ) -> None:
        """Run a newest-only handler holding its resource's mark, or skip it: superseded
        when a newer event was applied, waiting when another worker holds the mark."""
        marks = self.store
        if not isinstance(marks, ResourceMarks):  # registered after this processor was made
            job.record(handler, _no_marks(self.store, handler), span)
            return
        key, holder = job.mark_key(handler), job.claim.token
        created_at = job.event.created_at.timestamp()
        try:
            answer = await write(
                marks.take_mark, key, created_at, job.event.id, holder, self.lease_seconds
            )
        except StoreUnavailable as exc:
            log.warning(
                "%s: could not take the mark of handler %s (%s); trying again shortly",
                job.describe(),
                printable(handler.name),
                printable(exc),
                extra=job.fields(handler=handler.name),
            )
            answer = MarkAnswer.BUSY
        if answer is MarkAnswer.SUPERSEDED:
            job.superseded(handler, span)
            return
        if answer is MarkAnswer.BUSY:
            job.waiting = True
            return
        job.held = key
        error = await self._call(job, handler, write)
        job.held = None
        job.record(handler, error, span)
        if isinstance(error, HandlerTimeout):
            return  # its thread may still be writing: the hold runs out with the lease
        applied = None if error is not None else (created_at, job.event.id)
        saved, _ = await persist(
            lambda: marks.release_mark(key, holder, applied), self._write_budget, job, write
        )
        if not saved and applied is not None:
            log.error(
                "%s: handler %s succeeded, but the store did not record it as the newest "
                "applied event of its resource; an older event may still be given to it",
                job.describe(),
                printable(handler.name),
                extra=job.fields(handler=handler.name),
            )

    async def _call(self, job: Job, handler: Handler, write: _Offload) -> BaseException | None:
        """Run one handler to its end or its deadline, renewing the lease while it runs;
        returns what it raised (anything, ``SystemExit`` included), or None."""
        in_thread = not handler.is_async
        if in_thread:
            running: asyncio.Future[Any] = self._in_thread(handler.func, job.event)
        else:
            running = asyncio.ensure_future(self._awaited(handler.func(job.event)))
        deadline = time.monotonic() + self.handler_timeout_seconds
        try:
            while True:
                left = deadline - time.monotonic()
                await asyncio.wait({running}, timeout=min(self.lease_seconds / 3, max(left, 0)))
                if running.done():
                    error = _error(running)
                    if not in_thread:  # _awaited gives the handler's error as its value
                        return error or running.result()
                    if error is None and asyncio.iscoroutine(running.result()):
                        # A sync function that returned a coroutine: finish it on this loop.
                        coroutine = running.result()
                        running, in_thread = asyncio.ensure_future(self._awaited(coroutine)), False
                        continue
                    return error
                if time.monotonic() >= deadline:
                    if in_thread:
                        self._threads.abandon()
                    running.cancel()
                    return HandlerTimeout(self.handler_timeout_seconds)
                await write(self._renew, job)
        except asyncio.CancelledError:
            if in_thread:
                # A thread cannot be stopped: give it a moment to end, and record what it
                # did if it did, so a handler that just completed is not run again.
                left = min(max(deadline - time.monotonic(), 0), CANCEL_GRACE)
                await asyncio.wait({running}, timeout=left)
                if running.done():
                    job.record(handler, _error(running))
            else:
                running.cancel()
            raise

    async def _awaited(self, coroutine: Awaitable[Any]) -> BaseException | None:
        # A handler's SystemExit or KeyboardInterrupt is its own failure: raised out of
        # a task it would stop the whole event loop.
        try:
            with self.process_context():
                await coroutine
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            return exc
        return None

    def _renew(self, job: Job) -> None:
        try:
            if not self.store.renew(job.claim, self.lease_seconds):
                job.lease_lost()
            held, marks = job.held, self.store
            if (
                held
                and isinstance(marks, ResourceMarks)
                and not marks.renew_mark(held, job.claim.token, self.lease_seconds)
            ):
                job.lease_lost()  # the mark is held as long as the lease, and lost with it
        except Exception as exc:
            log.warning(
                "%s: could not renew the lease (%s)",
                job.describe(),
                printable(exc),
                extra=job.fields(),
            )

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
        """Process every event that is due now (this endpoint's, and the registered
        endpoints' with ``endpoint_registry``): pending ones, retries whose time has
        come, and ones whose worker died. Returns counts by result. Each event is tried
        once per call, so a call always ends; a handler that hangs past
        ``handler_timeout`` is left behind in its own thread rather than holding this one."""
        counts: dict[Result, int] = {}
        tried: set[tuple[str, str]] = set()
        while limit is None or len(tried) < limit:
            batch = [pair for pair in self.due(500) if pair not in tried]
            if not batch:
                break
            for endpoint, event_id in batch[: None if limit is None else limit - len(tried)]:
                tried.add((endpoint, event_id))
                try:
                    result = self.for_endpoint(endpoint).process(event_id)
                except Exception as exc:
                    log.error(
                        "event %s: processing failed: %s",
                        printable(event_id),
                        printable(exc),
                        extra=fields(event_id=event_id, endpoint=endpoint),
                    )
                    result = Result.STORE_DOWN
                counts[result] = counts.get(result, 0) + 1
        return counts

    def replay(self, event_id: str, *, rerun_all: bool = False) -> bool:
        """Put a finished or failed event back to pending (it is processed by whatever
        runs this endpoint). Handlers that succeeded are kept unless ``rerun_all``."""
        return operations_of(self.store).replay(
            event_id, rerun_all=rerun_all, endpoint=self.endpoint
        )

    def replay_dead(self, *, rerun_all: bool = False) -> list[str]:
        """Replay every event dead now; returns their ids. The ids are read first, so an
        event that dies again while this runs is not replayed twice."""
        return self._replay_every(Status.DEAD, rerun_all)

    def replay_unhandled(self) -> list[str]:
        """Replay every event ``unhandled`` now (no handler matched it then), once a
        handler for it exists; returns their ids, read first as in `replay_dead`."""
        return self._replay_every(Status.UNHANDLED, False)

    def _replay_every(self, status: Status, rerun_all: bool) -> list[str]:
        found = operations_of(self.store).list(status, limit=2**31 - 1, endpoint=self.endpoint)
        return [e.id for e in found if self.replay(e.id, rerun_all=rerun_all)]

    def prune(self, older_than: timedelta | None = None) -> int:
        """Delete finished events received more than ``older_than`` ago (default: the
        retention). Refuses a span that would forget ids the sender may still retry,
        or that max_age would still accept."""
        span = self.retention if older_than is None else older_than
        check_retention(span, self.max_age)
        return operations_of(self.store).prune(
            time.time() - span.total_seconds(), endpoint=self.endpoint
        )

    def stats(self) -> dict[Status, int]:
        """How many of this endpoint's events are in each status."""
        return operations_of(self.store).stats(endpoint=self.endpoint)

    def health(self) -> Health:
        """Counts by status and how long the oldest due event has waited for a worker
        (see `Health`); what ``stats`` commands show."""
        return Health(
            self.endpoint,
            self.stats(),
            oldest_due_age(self.store, self.endpoint),
            store_warnings(self.store),
        )

    def list(
        self, status: Status | str | None = None, event_type: str | None = None, limit: int = 100
    ) -> Sequence[StoredEvent]:
        """This endpoint's events, newest first."""
        return operations_of(self.store).list(status, event_type, limit, endpoint=self.endpoint)

    def get(self, event_id: str) -> StoredEvent | None:
        return self.store.get(event_id, endpoint=self.endpoint)

    def resolve(self, event_id: str) -> bool:
        """Mark a failed, dead, unhandled or quarantined event done without running it."""
        return operations_of(self.store).resolve(event_id, endpoint=self.endpoint)

    def close(self) -> None:
        """Let idle worker threads exit."""
        self._threads.abandon()


def processor_of(processors: Iterable[Processor], endpoint: str) -> Processor | None:
    """The processor for the events of ``endpoint`` among ``processors`` (a runner's
    workers, which serve no request): the one whose endpoint it is, else the one that
    serves the endpoint registry, for that endpoint; None if neither.

    >>> from iverton_webhooks import MemoryStore
    >>> mine = Processor(MemoryStore(), endpoint="mine")
    >>> processor_of([mine], "mine") is mine, processor_of([mine], "acme")
    (True, None)
    """
    processors = list(processors)
    for processor in processors:
        if processor.endpoint == endpoint:
            return processor
    for processor in processors:
        if processor.settings.endpoint_registry:
            return processor.for_endpoint(endpoint)
    return None


def _no_marks(store: Store, handler: Handler) -> ConfigurationError:
    return ConfigurationError(
        f"handler {handler.name} is newest_only, but {type(store).__name__} keeps no "
        "resource marks (it does not implement ResourceMarks): use a built-in store, or "
        "register the handler without newest_only"
    )


#: The stand-in span's context when nothing is traced: reusable, as it holds no state.
_UNTRACED = nullcontext(NO_SPAN)


def _error(done: asyncio.Future[Any]) -> BaseException | None:
    if done.cancelled():
        return asyncio.CancelledError("handler cancelled")
    return done.exception()
