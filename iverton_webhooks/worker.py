"""Processing one stored event: claim it, run the handlers still owed, record what happened.

The steps live in :class:`Job` so that the blocking driver (:func:`process`) and the
asyncio driver (:func:`process_async`) share every decision and differ only in how
they call things.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import traceback
from collections.abc import Awaitable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any

from .errors import InvalidPayload
from .events import Event, parse_event
from .inbox.base import Claim, HandlerOutcome, Store
from .router import Handler, Router

log = logging.getLogger("iverton_webhooks")


class Result(str, Enum):
    """What one call to :func:`process` did."""

    DONE = "done"
    RETRY = "retry"
    DEAD = "dead"
    SKIPPED = "skipped"  # not claimable: unknown id, finished, leased by another worker, not due
    LOST_LEASE = "lost_lease"  # took longer than the lease and another worker took over


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter; ``max_attempts`` counts the first try.

    The defaults retry 7 times over about 18 hours (1 min, 3 min, 9 min, ... capped
    at 12 h, each +/- 25%), then park the event as ``dead``.

    >>> [round(RetryPolicy(jitter=0).delay(n)) for n in (1, 2, 3)]
    [60, 180, 540]
    """

    max_attempts: int = 8
    base_delay: float = 60.0
    factor: float = 3.0
    max_delay: float = 12 * 3600.0
    jitter: float = 0.25

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        delay = min(self.base_delay * self.factor ** (attempt - 1), self.max_delay)
        return delay * (1 + random.uniform(-self.jitter, self.jitter))


def describe_exception(exc: BaseException) -> str:
    """``Type: message`` with the innermost frame, short enough to store and show."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}"[:500] + where


class Job:
    """One claimed event on its way through its handlers."""

    def __init__(self, store: Store, claim: Claim, event: Event[Any], handlers: list[Handler]):
        self.store = store
        self.claim = claim
        self.event = event
        self.pending = handlers
        self.outcomes: dict[str, HandlerOutcome] = {}
        self._unsaved = False

    @classmethod
    def begin(
        cls,
        store: Store,
        router: Router,
        event_id: str,
        lease_seconds: float,
        policy: RetryPolicy,
    ) -> Job | Result:
        """Claim the event and work out which handlers it still needs."""
        claim = store.claim(event_id, lease_seconds)
        if claim is None:
            return Result.SKIPPED
        stored = claim.event
        if stored.attempts > policy.max_attempts:
            # Only reachable when earlier workers died holding the lease: a poison event.
            store.fail(claim, {}, "worker died while processing, attempts used up", None)
            log.error("event %s (%s) is dead: its workers kept dying", event_id, stored.type)
            return Result.DEAD
        try:
            event = parse_event(stored.body, stored.type)
        except InvalidPayload as exc:
            store.fail(claim, {}, f"stored body no longer parses: {exc}", None)
            log.error("event %s (%s) is dead: %s", event_id, stored.type, exc)
            return Result.DEAD
        done = stored.succeeded_handlers
        handlers = [h for h in router.handlers_for(stored.type) if h.name not in done]
        return cls(store, claim, event, handlers)

    def record(self, handler: Handler, error: BaseException | None) -> None:
        now = self.store.clock()
        if error is None:
            self.outcomes[handler.name] = HandlerOutcome(ok=True, at=now)
        else:
            self.outcomes[handler.name] = HandlerOutcome(
                ok=False, error=describe_exception(error), at=now
            )
            log.warning(
                "handler %s failed on event %s (%s): %s",
                handler.name,
                self.event.id,
                self.event.type,
                describe_exception(error),
            )
        self._unsaved = True

    def checkpoint(self, remaining: int) -> None:
        """Save outcomes between handlers, so a crash does not re-run the ones that succeeded."""
        if remaining and self._unsaved:
            self.store.checkpoint(self.claim, self.outcomes)
            self._unsaved = False

    def finish(self, policy: RetryPolicy) -> Result:
        failures = {name: o for name, o in self.outcomes.items() if not o.ok}
        event = self.claim.event
        if not failures:
            saved = self.store.complete(self.claim, self.outcomes)
            if saved:
                log.info("event %s (%s) done", event.id, event.type)
            return Result.DONE if saved else self._lost()
        error = "; ".join(f"{name}: {o.error}" for name, o in failures.items())
        if event.attempts >= policy.max_attempts:
            saved = self.store.fail(self.claim, self.outcomes, error, None)
            log.error(
                "event %s (%s) is dead after %d attempts", event.id, event.type, event.attempts
            )
            return Result.DEAD if saved else self._lost()
        retry_at = self.store.clock() + policy.delay(event.attempts)
        saved = self.store.fail(self.claim, self.outcomes, error, retry_at)
        return Result.RETRY if saved else self._lost()

    def interrupt(self) -> None:
        """Give the event back, due now, keeping the outcomes so far (shutdown mid-event)."""
        self.store.fail(self.claim, self.outcomes, "interrupted by shutdown", self.store.clock())

    def _lost(self) -> Result:
        log.warning(
            "event %s (%s): lease expired before processing finished; another worker owns it",
            self.claim.event.id,
            self.claim.event.type,
        )
        return Result.LOST_LEASE


def process(
    store: Store,
    router: Router,
    event_id: str,
    *,
    lease_seconds: float = 300.0,
    policy: RetryPolicy = RetryPolicy(),
) -> Result:
    """Process one event in the calling thread (async handlers get a private event loop)."""
    job = Job.begin(store, router, event_id, lease_seconds, policy)
    if not isinstance(job, Job):
        return job
    for index, handler in enumerate(job.pending):
        try:
            value = handler.func(job.event)
            if handler.is_async or asyncio.iscoroutine(value):
                run_coroutine(value)
        except Exception as exc:
            job.record(handler, exc)
        else:
            job.record(handler, None)
        job.checkpoint(len(job.pending) - index - 1)
    return job.finish(policy)


async def process_async(
    store: Store,
    router: Router,
    event_id: str,
    *,
    lease_seconds: float = 300.0,
    policy: RetryPolicy = RetryPolicy(),
) -> Result:
    """Process one event from a running loop: async handlers on this loop,
    sync handlers and blocking store calls in worker threads."""
    offload = asyncio.to_thread if store.blocking else _call_here
    job = await offload(Job.begin, store, router, event_id, lease_seconds, policy)
    if not isinstance(job, Job):
        return job
    try:
        await _run_handlers_async(job, offload)
    except asyncio.CancelledError:
        # Shutting down mid-event: hand the event back at once (due now) instead of
        # leaving it leased until the lease runs out. Done without awaiting, since
        # this task is being cancelled.
        job.interrupt()
        raise
    return await offload(job.finish, policy)


async def _run_handlers_async(job: Job, offload: Any) -> None:
    for index, handler in enumerate(job.pending):
        try:
            if handler.is_async:
                await handler.func(job.event)
            else:
                value = await _finish_even_if_cancelled(
                    job, handler, asyncio.to_thread(handler.func, job.event)
                )
                if asyncio.iscoroutine(value):
                    await value
        except Exception as exc:
            job.record(handler, exc)
        else:
            job.record(handler, None)
        await offload(job.checkpoint, len(job.pending) - index - 1)


async def _finish_even_if_cancelled(job: Job, handler: Handler, call: Awaitable[Any]) -> Any:
    """Await a sync handler running in a thread. A thread cannot be stopped: if this task
    is cancelled (shutdown), wait for the thread anyway and record what it really did, so
    a handler that completed is not run again after the restart."""
    future = asyncio.ensure_future(call)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        try:
            await future
        except asyncio.CancelledError:
            pass  # cancelled twice: give up waiting; its outcome stays unknown
        except Exception as exc:
            job.record(handler, exc)
        else:
            job.record(handler, None)
        raise


async def _call_here(func: Any, /, *args: Any) -> Any:
    return func(*args)


_thread_loops = threading.local()


def run_coroutine(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a handler's coroutine to completion from synchronous code.

    Each thread keeps one event loop for this, so a handler's loop-bound resources
    (clients, pools) stay usable from one event to the next.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # Called from inside a running loop (an inline runner under ASGI): a nested
        # run_until_complete is impossible there, so use a short-lived thread.
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(run_coroutine, coro).result()
    loop: asyncio.AbstractEventLoop | None = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_loops.loop = loop
    return loop.run_until_complete(coro)
