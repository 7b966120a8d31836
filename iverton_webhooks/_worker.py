"""One claimed event on its way through its handlers: the decisions, without the driving.

`Job` holds every decision about one event (which handlers it still owes, what a
failure means, what is written when); `Processor` drives it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import traceback
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

from ._errors import InvalidPayload, StoreUnavailable
from ._logs import fields
from ._router import Handler, Router
from ._text import printable
from .events import Event, parse_event
from .hooks import Hook, Hooks, Notice
from .inbox.base import (
    Claim,
    HandlerOutcome,
    MarkKey,
    Status,
    Store,
    Verdict,
)
from .telemetry import Telemetry

log = logging.getLogger("iverton_webhooks")

T = TypeVar("T")


class Result(str, Enum):
    """What one call to `Processor.process` did."""

    DONE = "done"
    UNHANDLED = "unhandled"  # no handler matches its type; kept, replayable
    RETRY = "retry"
    DEAD = "dead"
    QUARANTINED = "quarantined"  # its stored body cannot be read as an event
    SKIPPED = "skipped"  # not claimable: unknown id, finished, leased by another worker, not due
    LOST_LEASE = "lost_lease"  # took longer than the lease and another worker took over
    BUSY = "busy"  # a newest-only handler's resource was held by another worker: pending again
    STORE_DOWN = "store_down"  # its result could not be written; it runs again after the lease


#: The hook each verdict fires.
HOOK_OF_VERDICT = {
    Status.DONE: Hook.DONE,
    Status.UNHANDLED: Hook.UNHANDLED,
    Status.DEAD: Hook.DEAD,
    Status.QUARANTINED: Hook.QUARANTINED,
}

#: What processing an event achieved, by the status it was left in.
RESULT_OF_VERDICT = {
    Status.DONE: Result.DONE,
    Status.UNHANDLED: Result.UNHANDLED,
    Status.FAILED: Result.RETRY,
    Status.DEAD: Result.DEAD,
    Status.QUARANTINED: Result.QUARANTINED,
    Status.PENDING: Result.BUSY,
}

#: Seconds before an event whose newest-only handler found its resource busy is due
#: again: the other worker's handler is usually quick, and the wait is not an attempt.
BUSY_DELAY = 1.0

#: Seconds a sync handler still running when its event is cancelled (shutdown) is given
#: to end before the event is handed back without its outcome.
CANCEL_GRACE = 1.0


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


class HandlerTimeout(Exception):
    """A handler ran past ``handler_timeout``; its thread was abandoned (or task cancelled)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s")


class Driver(Protocol):
    """What a `Job` reads of the `Processor` that drives it."""

    store: Store
    router: Router
    endpoint: str
    retry: RetryPolicy
    lease_seconds: float
    hooks: Hooks
    telemetry: Telemetry


class Job:
    """One claimed event: the handlers it still owes and the outcomes so far.

    The driver's ``hooks`` and ``telemetry`` are told of each handler run and of the
    verdict.
    """

    def __init__(self, driver: Driver, claim: Claim) -> None:
        self.store = driver.store
        self.endpoint = driver.endpoint
        self.policy = driver.retry
        self.hooks = driver.hooks
        self.telemetry = driver.telemetry
        self.claim = claim
        #: The stored body read as an event (set by `begin`, for a job that runs).
        self.event: Event[Any]
        #: The handlers still owed, and whether any handler matches its type at all.
        self.pending: list[Handler] = []
        self.matched = False
        self.outcomes: dict[str, HandlerOutcome] = {}
        #: How many handler runs of this attempt failed (timeouts included).
        self.failures = 0
        #: False once the processor found no tracing SDK: no spans for this event.
        self.traced = True
        #: Whether this run was already said to have outlived its lease.
        self.lease_warned = False
        #: The newest-only mark this run holds while its handler runs (see `mark_key`).
        self.held: MarkKey | None = None
        #: Whether a newest-only handler found its resource busy: the event waits.
        self.waiting = False

    def fields(self, status: Status | None = None, handler: str | None = None) -> dict[str, Any]:
        """Structured log fields for this event."""
        event = self.claim.event
        return fields(
            event_id=event.id,
            event_type=event.type,
            endpoint=self.endpoint,
            handler=handler,
            status=status,
        )

    def describe(self) -> str:
        """``event <id> (<type>)``, for log messages."""
        event = self.claim.event
        return f"event {printable(event.id)} ({printable(event.type)})"

    def notify(self, hook: Hook, *, handler: str | None = None, error: str | None = None) -> None:
        if not self.hooks.wants(hook):
            return
        event = self.claim.event
        self.hooks.emit(
            Notice(
                hook,
                self.endpoint,
                event_id=event.id,
                event_type=event.type,
                handler=handler,
                error=error,
            )
        )

    @classmethod
    def begin(cls, driver: Driver, event_id: str) -> Job | Verdict | None:
        """Claim the event and work out which handlers it still needs. Returns None when
        it is not claimable, or the verdict written at once when it cannot be run."""
        claim = driver.store.claim(event_id, driver.lease_seconds, endpoint=driver.endpoint)
        if claim is None:
            return None
        job, stored = cls(driver, claim), claim.event
        if stored.unreadable:
            return job.close(Verdict(Status.QUARANTINED, stored.unreadable))
        if stored.attempts > driver.retry.max_attempts:
            # Only reachable when earlier workers died holding the lease: a poison event.
            return job.close(Verdict(Status.DEAD, "worker died while processing, attempts used up"))
        try:
            job.event = parse_event(stored.body, stored.type, endpoint=driver.endpoint)
        except InvalidPayload as exc:
            return job.close(Verdict(Status.QUARANTINED, str(exc)[:500]))
        matching = driver.router.handlers_for(job.event.type)
        if stored.outcomes:
            done = stored.succeeded_handlers
            job.pending = [handler for handler in matching if handler.name not in done]
        else:  # a first attempt: every handler is owed (handlers_for gave a new list)
            job.pending = matching
        job.matched = bool(matching)
        return job

    def close(self, verdict: Verdict) -> Verdict:
        """Write at once the verdict on an event that cannot be run."""
        log.error(
            "%s is %s: %s",
            self.describe(),
            verdict.status.value,
            printable(verdict.error or ""),
            extra=self.fields(verdict.status),
        )
        self.store.finish(self.claim, {}, verdict)
        self.notify(HOOK_OF_VERDICT[verdict.status], error=verdict.error)
        return verdict

    def record(self, handler: Handler, error: BaseException | None, span: Any = None) -> None:
        """Keep one handler's outcome (and count it; ``span``: its trace span, if any)."""
        now = self.store.clock()
        self.telemetry.ran(span, self.endpoint, handler.name, error)
        if error is None:
            self.outcomes[handler.name] = HandlerOutcome.succeeded(now)
            return
        described = str(error) if isinstance(error, HandlerTimeout) else describe_exception(error)
        self.outcomes[handler.name] = HandlerOutcome(ok=False, error=described, at=now)
        self.failures += 1
        log.warning(
            "handler %s failed on %s: %s",
            printable(handler.name),
            self.describe(),
            printable(described),
            extra=self.fields(handler=handler.name),
        )
        self.notify(Hook.HANDLER_FAILED, handler=handler.name, error=described)

    def mark_key(self, handler: Handler) -> MarkKey:
        """The mark a newest-only handler takes for this event: its endpoint, resource
        (family and ``data.id``) and name."""
        event = self.event
        return MarkKey(self.endpoint, f"{event.family}/{event.data.id}", handler.name)

    def superseded(self, handler: Handler, span: Any = None) -> None:
        """A newest-only handler is not given this event: a newer one of its resource
        was already applied. Final: the handler counts as done with it."""
        self.outcomes[handler.name] = HandlerOutcome.superseded_at(self.store.clock())
        self.telemetry.ran(span, self.endpoint, handler.name, None, superseded=True)
        log.info(
            "handler %s not given %s: a newer event of its resource was applied",
            printable(handler.name),
            self.describe(),
            extra=self.fields(handler=handler.name),
        )
        self.notify(Hook.SUPERSEDED, handler=handler.name)

    def checkpoint(self) -> bool:
        """Save the outcomes so far; False if the lease was lost. Raises if the store does."""
        return self.store.checkpoint(self.claim, self.outcomes)

    def verdict(self) -> Verdict:
        if not self.failures:
            # Every outcome recorded is a success: what after_attempt would decide,
            # without looking through them.
            if self.waiting:
                return Verdict.busy(self.store.clock() + BUSY_DELAY, self.claim.event.attempts)
            return Verdict.succeeded(self.matched)
        return Verdict.after_attempt(
            self.outcomes,
            matched=self.matched,
            attempts=self.claim.event.attempts,
            max_attempts=self.policy.max_attempts,
            retry_at=lambda: self.store.clock() + self.policy.delay(self.claim.event.attempts),
        )

    def finish(self, verdict: Verdict) -> Result:
        """Write the verdict; raises if the store does (the caller retries)."""
        if not self.store.finish(self.claim, self.outcomes, verdict):
            return self.lost()
        status = verdict.status
        if status is Status.DEAD:
            log.error(
                "%s is dead after %d attempts",
                self.describe(),
                self.claim.event.attempts,
                extra=self.fields(status),
            )
        elif status is Status.DONE and log.isEnabledFor(logging.INFO):
            log.info("%s done", self.describe(), extra=self.fields(status))
        hook = HOOK_OF_VERDICT.get(status)
        if hook is not None:
            self.notify(hook, error=verdict.error)
        return RESULT_OF_VERDICT[status]

    def interrupted(self) -> Verdict:
        """Give the event back, due now, keeping the outcomes so far (shutdown mid-event)."""
        return Verdict(Status.FAILED, "interrupted by shutdown", self.store.clock())

    def lease_lost(self) -> None:
        """Say, once per run, that this run outlived its lease, and what to do about it."""
        if self.lease_warned:
            return
        self.lease_warned = True
        log.warning(
            "%s: processing outlived its lease, so another worker may run its "
            "handlers too; give long handlers a longer lease, and handlers that hold the GIL "
            "(long C loops) a process-based runner such as Celery",
            self.describe(),
            extra=self.fields(),
        )

    def lost(self) -> Result:
        self.lease_lost()
        return Result.LOST_LEASE


async def persist(
    write: Callable[[], Any], budget: float, job: Job, offload: Callable[..., Awaitable[Any]]
) -> tuple[bool, Any]:
    """Call ``write`` (through ``offload``, e.g. in a thread) until it stops raising
    `StoreUnavailable`, for up to ``budget`` seconds: quick at first (a blip), then up to
    5 s apart (a restart). Returns (True, its value), or (False, None) when the store
    stayed down: then the lease runs out and the event is taken up again. Any other
    exception is a bug, not an outage, and propagates at once: every store turns its
    driver's errors into `StoreUnavailable` at its edge."""
    pause, left = 0.05, budget
    while True:
        try:
            return True, await offload(write)
        except StoreUnavailable as exc:
            failure = exc
        if left <= 1e-9:
            break
        step = min(pause, left)
        log.warning(
            "%s: store unavailable (%s); retrying in %.2f s",
            job.describe(),
            printable(failure),
            step,
            extra=job.fields(),
        )
        await asyncio.sleep(step)
        left, pause = left - step, min(pause * 2, 5.0)
    log.error(
        "%s: the store stayed unavailable (%s); giving up",
        job.describe(),
        printable(failure),
        extra=job.fields(),
    )
    return False, None


_thread_loops = threading.local()


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
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
            return pool.submit(lambda: run_coroutine(coro)).result()
    loop: asyncio.AbstractEventLoop | None = getattr(_thread_loops, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _thread_loops.loop = loop
    return loop.run_until_complete(coro)
