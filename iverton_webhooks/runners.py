"""Where processing happens once the event is recorded and the 2xx is on its way.

A runner only decides *when and where* `Processor.process` runs. It never
holds the only copy of anything: a submitted id it cannot take (full queue, no loop,
process exit) is still ``pending`` in the store and is found by recovery.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import logging
import os
import threading
import time
from typing import TYPE_CHECKING, Any

from ._settings import SettingError, runner_named
from ._text import printable
from ._worker import BUSY_DELAY, CANCEL_GRACE, Result

if TYPE_CHECKING:
    from ._processor import Processor

__all__ = [
    "AsyncioRunner",
    "BaseRunner",
    "InlineRunner",
    "Runner",
    "ThreadRunner",
    "make_runner",
]

log = logging.getLogger("iverton_webhooks")


class BaseRunner:
    """What every runner offers; each hook but `submit` does nothing by default,
    so adapters call them all without asking what kind of runner they hold.

    >>> class Collect(BaseRunner):
    ...     def __init__(self) -> None:
    ...         self.ids: list[str] = []
    ...     def submit(self, event_id: str, endpoint: str | None = None) -> None:
    ...         self.ids.append(event_id)
    """

    _processor: Processor | None = None

    def bind(self, processor: Processor) -> None:
        """Called once by the receiver that owns this runner."""
        if self._processor is not None and self._processor is not processor:
            raise ValueError("a runner belongs to one Receiver; make one runner per receiver")
        self._processor = processor

    @property
    def processor(self) -> Processor:
        if self._processor is None:
            raise RuntimeError("runner is not bound to a Receiver")
        return self._processor

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        """Arrange for a newly recorded event to be processed; must not block the request.

        ``endpoint`` is given only for an event of a registered endpoint (the receiver's
        ``endpoint_registry``): process it with ``processor.for_endpoint(endpoint)``."""
        raise NotImplementedError

    def start(self) -> None:
        """Start processing and recovery in this process now (idempotent; call it again
        after a fork). Runners that need a loop start in `startup` instead."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Told the loop an async adapter serves on (runners that use one, run there)."""

    async def startup(self) -> None:
        """From an ASGI lifespan start-up: start as `start` does, on this loop."""
        self.start()

    async def drain(self, timeout: float = 10.0) -> int:
        """From an ASGI lifespan shutdown: finish or hand back work in hand; returns how
        many events were handed back unfinished."""
        return 0

    def close(self, timeout: float | None = None) -> None:
        """Stop taking work; wait up to ``timeout`` seconds for work in hand."""


#: The type the receiver accepts as a runner.
Runner = BaseRunner


class InlineRunner(BaseRunner):
    """Process before the reply is sent. Simple and predictable, but the sender waits
    for your handlers (and gives up after 5 s): for tests and very light handlers."""

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        self.processor.for_endpoint(endpoint).process(event_id)


class AsyncioRunner(BaseRunner):
    """Process on an asyncio loop: async handlers on the loop, sync ones and blocking
    store calls in threads.

    Call `startup` from the app's lifespan (it recovers due events and polls
    for retries) and `drain` at shutdown. At most ``max_concurrency`` events are
    processed at once and ``queue_size`` held (more are left pending for the poll).
    ``store_calls_here``: make blocking store calls on the loop's own thread (for a
    loop that serves nothing else, as `ThreadRunner`'s).
    Tasks are strongly referenced, so the loop cannot garbage-collect one mid-event.
    """

    def __init__(
        self,
        *,
        poll_interval: float = 5.0,
        max_concurrency: int = 100,
        queue_size: int = 10_000,
        store_calls_here: bool = False,
    ) -> None:
        self.poll_interval = poll_interval
        self.store_calls_here = store_calls_here
        self.max_concurrency = max_concurrency
        self.queue_size = queue_size
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._in_flight: set[tuple[str, str]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._limit: asyncio.Semaphore | None = None
        # What was last said of each kind of trouble, and when (see `_warn_rarely`).
        self._said: dict[str, tuple[str, float]] = {}

    async def startup(self) -> None:
        """Attach to the running loop and start recovery polling (idempotent per loop)."""
        self.attach(asyncio.get_running_loop())

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now on, and poll there. Called by `startup` and by
        `Receiver.receive_async`, so an app without lifespan events still works.
        Must be called from ``loop``'s thread."""
        if self._loop is not loop:
            self._loop = loop
            self._limit = asyncio.Semaphore(self.max_concurrency)
            self._tasks, self._in_flight = set(), set()
        # A poller left over from a loop that has since closed is done or orphaned.
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll())

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            self.attach(running)
            self._spawn(event_id, endpoint)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._spawn, event_id, endpoint)
        else:
            log.warning(
                "event %s: no event loop yet, left pending for recovery", printable(event_id)
            )

    def _spawn(self, event_id: str, endpoint: str | None = None) -> None:
        key = (endpoint or self.processor.endpoint, event_id)
        if key in self._in_flight:
            return  # a second copy would only fail its claim
        if len(self._in_flight) >= self.queue_size:
            log.warning(
                "event %s: worker queue full, left pending for the poller", printable(event_id)
            )
            return
        self._in_flight.add(key)
        task: asyncio.Task[object] = asyncio.ensure_future(self._run(event_id, endpoint))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._in_flight.discard(key))

    async def _run(self, event_id: str, endpoint: str | None) -> object:
        assert self._limit is not None
        async with self._limit:
            try:
                result = await self.processor.for_endpoint(endpoint).process_async(
                    event_id, store_calls_here=self.store_calls_here
                )
                if result is Result.BUSY:
                    # A newest-only handler's resource is held by another worker, usually
                    # briefly: come back then rather than at the next poll.
                    asyncio.get_running_loop().call_later(
                        BUSY_DELAY, self._spawn, event_id, endpoint
                    )
                return result
            except RuntimeError as exc:
                # No thread may be started (the interpreter is exiting, or the process is
                # out of threads): nothing is wrong with the event, which was handed back
                # due now. One line, not one per queued event.
                self._warn_rarely(
                    "threads",
                    f"processing stopped in this process ({printable(exc)}); events are "
                    "handed back and left for recovery",
                )
                return None
            except Exception:
                log.exception(
                    "event %s: processing crashed; it will be retried", printable(event_id)
                )
                return None

    async def _poll(self) -> None:
        processor = self.processor
        while True:
            room = min(500, self.queue_size - len(self._in_flight))
            if room > 0:
                try:
                    if self.store_calls_here:
                        due = processor.due(room)
                    else:
                        due = await processor.run_blocking(processor.due, room)
                except Exception as exc:
                    failure = printable(f"{type(exc).__name__}: {exc}")
                    self._warn_rarely(
                        "poll",
                        f"recovery poll failed ({failure}); "
                        f"trying again every {self.poll_interval:g} s",
                    )
                else:
                    self._said.pop("poll", None)
                    for endpoint, event_id in due:
                        self._spawn(event_id, endpoint)
            await asyncio.sleep(self.poll_interval)

    def _warn_rarely(self, kind: str, said: str) -> None:
        """Log ``said`` unless it is what was last said of ``kind`` less than a minute
        ago: a failing poll runs every few seconds, and a process that can start no
        thread fails every queued event, for as long as it lasts."""
        now = time.monotonic()
        last = self._said.get(kind)
        if last is not None and last[0] == said and now - last[1] < 60:
            return
        self._said[kind] = (said, now)
        log.warning("%s", said)

    async def idle(self) -> None:
        """Return once no event is in flight."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def drain(self, timeout: float | None = 10.0) -> int:
        """Wait up to ``timeout`` s for in-flight events, then cancel the rest (they are
        handed back to the store, due at once). Returns how many were cancelled."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        pending = set(self._tasks)
        if not pending:
            return 0
        _, still_running = await asyncio.wait(pending, timeout=timeout)
        await _cancel(still_running)
        return len(still_running)

    def close(self, timeout: float | None = None) -> None:
        if self._poller is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._poller.cancel)


class ThreadRunner(BaseRunner):
    """Processing in the background of a sync app: an `AsyncioRunner` on an
    event loop of its own, in one daemon thread of this process.

    Up to ``workers`` events are processed at once (their sync handlers in a thread
    pool that grows only as calls overlap; store calls on the loop's thread); up to
    ``queue_size`` ids are held, more are left pending for the poll, which recovers due
    events (retries, expired leases, overflow) every ``poll_interval`` s. Nothing starts
    before the first `submit` or `start`; in a forked child (gunicorn, Celery prefork)
    the first use starts it afresh, as the parent's thread did not come along. When the
    interpreter exits (a server stopping its worker), what is in flight gets up to
    `EXIT_GRACE` s to be recorded and the rest is handed back due now, as `close` does:
    the loop thread is a daemon, and would otherwise stop with a handler's success not
    yet written, to be run again after its lease.
    """

    #: Seconds an exiting process waits for the events in flight (see `close`).
    EXIT_GRACE = 5.0

    def __init__(
        self, workers: int = 4, *, queue_size: int = 10_000, poll_interval: float = 5.0
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.queue_size = queue_size
        self.poll_interval = poll_interval
        self._pid = 0
        self._lock = threading.Lock()
        self._lock_pid = os.getpid()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inner: AsyncioRunner | None = None

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        inner, loop = self._started()
        loop.call_soon_threadsafe(inner._spawn, event_id, endpoint)

    def start(self) -> None:
        """Start the loop thread in this process now (idempotent)."""
        self._started()

    def _started(self) -> tuple[AsyncioRunner, asyncio.AbstractEventLoop]:
        pid = os.getpid()
        inner, loop = self._inner, self._loop
        if self._pid == pid and inner is not None and loop is not None:
            return inner, loop
        if self._lock_pid != pid:
            # A forked child: the parent may have held this lock at the fork.
            self._lock, self._lock_pid = threading.Lock(), pid
        with self._lock:
            if self._pid != pid or self._inner is None or self._loop is None:
                inner = AsyncioRunner(
                    poll_interval=self.poll_interval,
                    max_concurrency=self.workers,
                    queue_size=self.queue_size,
                    # Unless the store must not be called where a loop runs (Django's
                    # ORM refuses): then its calls go to threads like the handlers.
                    store_calls_here=getattr(self.processor.store, "event_loop_safe", True),
                )
                inner.bind(self.processor)
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                thread = threading.Thread(
                    target=_serve, args=(loop, inner, ready), name="iverton-runner", daemon=True
                )
                thread.start()
                ready.wait()
                self._inner, self._loop, self._thread, self._pid = inner, loop, thread, pid
                # Once per runner, though a forked child starts it again; close() does
                # nothing in a process that did not start the runner.
                atexit.unregister(self._close_at_exit)
                atexit.register(self._close_at_exit)
            return self._inner, self._loop

    def join(self, timeout: float | None = None) -> bool:
        """Wait until no submitted event is in flight (tests, graceful shutdown)."""
        if self._pid != os.getpid() or self._inner is None or self._loop is None:
            return True
        waiting = asyncio.run_coroutine_threadsafe(self._inner.idle(), self._loop)
        try:
            waiting.result(timeout)
        except concurrent.futures.TimeoutError:
            waiting.cancel()
            return False
        return True

    def close(self, timeout: float | None = None) -> None:
        """Finish what is in flight (up to ``timeout`` s; the rest is handed back to the
        store, due at once) and stop the thread."""
        inner, loop, thread = self._inner, self._loop, self._thread
        if self._pid != os.getpid() or inner is None or loop is None or thread is None:
            return
        self._pid, self._inner, self._loop, self._thread = 0, None, None, None
        draining = asyncio.run_coroutine_threadsafe(inner.drain(timeout), loop)
        try:
            draining.result(None if timeout is None else timeout + 2.0)
        except Exception:
            log.exception("could not finish the events in flight")
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    def _close_at_exit(self) -> None:
        self.close(self.EXIT_GRACE)


def _serve(loop: asyncio.AbstractEventLoop, runner: AsyncioRunner, ready: threading.Event) -> None:
    asyncio.set_event_loop(loop)
    runner.attach(loop)
    loop.call_soon(ready.set)
    try:
        loop.run_forever()
    finally:
        # Whatever is left (close() gave up waiting) is cancelled and given its chance to
        # hand its event back, rather than destroyed pending with the loop.
        loop.run_until_complete(_cancel(asyncio.all_tasks(loop)))
        loop.close()


async def _cancel(tasks: set[asyncio.Task[Any]]) -> None:
    # Each gets CANCEL_GRACE for a handler thread to end, then hands its event back.
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=CANCEL_GRACE + 2.0)


def make_runner(spec: object) -> BaseRunner:
    """A runner from a name (``"thread"``, the default; ``"asyncio"``, ``"inline"``), a
    dotted path, a runner class or zero-argument factory, or a runner.

    >>> type(make_runner("inline")).__name__, type(make_runner(None)).__name__
    ('InlineRunner', 'ThreadRunner')
    """
    if spec is None:
        return ThreadRunner()
    if isinstance(spec, str):
        spec = {"thread": ThreadRunner, "asyncio": AsyncioRunner, "inline": InlineRunner}.get(
            spec
        ) or runner_named(spec)
    if isinstance(spec, type) or (callable(spec) and not isinstance(spec, BaseRunner)):
        spec = spec()
    if isinstance(spec, BaseRunner):
        return spec
    raise SettingError(
        "runner", f"{spec!r} is not a runner: subclass iverton_webhooks.runners.BaseRunner"
    )
