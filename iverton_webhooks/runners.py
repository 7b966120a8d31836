"""Where processing happens once the event is recorded and the 2xx is on its way.

A runner only decides *when and where* :meth:`Processor.process` runs. It never
holds the only copy of anything: a submitted id it cannot take (full queue, no loop,
process exit) is still ``pending`` in the store and is found by recovery.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import queue
import threading
import time
from typing import TYPE_CHECKING

from .forks import ForkGate, Passage, reset_after_fork, restart_after_fork
from .text import printable

if TYPE_CHECKING:
    from .inbox.base import Claim
    from .processor import Processor

log = logging.getLogger("iverton_webhooks")


class BaseRunner:
    """What every runner offers; each hook but :meth:`submit` does nothing by default,
    so adapters call them all without asking what kind of runner they hold.

    >>> class Collect(BaseRunner):
    ...     def __init__(self) -> None:
    ...         self.ids: list[str] = []
    ...     def submit(self, event_id: str) -> None:
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

    def submit(self, event_id: str) -> None:
        """Arrange for a newly recorded event to be processed; must not block the request."""
        raise NotImplementedError

    def start(self) -> None:
        """Start processing and recovery in this process now (idempotent; call it again
        after a fork). Runners that need a loop start in :meth:`startup` instead."""

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Told the loop an async adapter serves on (runners that use one, run there)."""

    async def startup(self) -> None:
        """From an ASGI lifespan start-up: start as :meth:`start` does, on this loop."""
        self.start()

    async def drain(self, timeout: float = 10.0) -> int:
        """From an ASGI lifespan shutdown: finish or hand back work in hand; returns how
        many events were handed back unfinished."""
        return 0

    def close(self, timeout: float | None = None) -> None:
        """Stop taking work; wait up to ``timeout`` seconds for work in hand."""


#: The type the receiver accepts as a runner (kept under its wave-1 name).
Runner = BaseRunner


class InlineRunner(BaseRunner):
    """Process before the reply is sent. Simple and predictable, but the sender waits
    for your handlers (and gives up after 5 s): for tests and very light handlers."""

    def submit(self, event_id: str) -> None:
        self.processor.process(event_id)


class ThreadRunner(BaseRunner):
    """A fixed pool of worker threads fed by a bounded queue, plus a poller that
    recovers due events (retries, expired leases, overflow) every ``poll_interval`` s.

    Threads start on first use or :meth:`start`, and again in a forked child
    (gunicorn, Celery prefork), never at import. While this process forks (gunicorn
    ``--preload`` forking workers from a master that already processes), the threads
    pause between events, so no child inherits a store transaction caught half-way.
    """

    def __init__(
        self, workers: int = 4, *, queue_size: int = 10_000, poll_interval: float = 5.0
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.workers = workers
        self.poll_interval = poll_interval
        self._queue: queue.Queue[str | None] = queue.Queue(maxsize=queue_size)
        self._threads: list[threading.Thread] = []
        self._pid: int | None = None
        self._stop = threading.Event()
        self._start_lock = threading.Lock()
        self._queued: set[str] = set()
        self._queued_lock = threading.Lock()
        self._gate = ForkGate()
        reset_after_fork(self, ThreadRunner._after_fork)
        restart_after_fork(self, ThreadRunner._restart_after_fork)

    def submit(self, event_id: str) -> None:
        self.start()
        if not self._enqueue(event_id):
            log.warning(
                "event %s: worker queue full, left pending for the poller", printable(event_id)
            )

    def _enqueue(self, event_id: str) -> bool:
        # An id already waiting is not queued twice: the duplicate would only fail its
        # claim, and a failed claim on SQLite still takes the write lock from the acks.
        with self._queued_lock:
            if event_id in self._queued:
                return True
            try:
                self._queue.put_nowait(event_id)
            except queue.Full:
                return False
            self._queued.add(event_id)
            return True

    def start(self) -> None:
        """Start the threads (idempotent; restarts them in a forked child)."""
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._queue = queue.Queue(maxsize=self._queue.maxsize)
            self._queued = set()
            self._stop = threading.Event()
            self._threads = [
                threading.Thread(target=self._work, name=f"iverton-worker-{n}", daemon=True)
                for n in range(self.workers)
            ]
            self._threads.append(
                threading.Thread(target=self._poll, name="iverton-poller", daemon=True)
            )
            for thread in self._threads:
                thread.start()
            self._pid = os.getpid()

    def _after_fork(self) -> None:
        # The parent's threads did not come along and its locks may have been copied held.
        self._start_lock = threading.Lock()
        self._queued_lock = threading.Lock()

    def _restart_after_fork(self) -> None:
        # A runner started before the fork (gunicorn --preload, Celery prefork) starts
        # again, so every serving process recovers with no request; only once every
        # reset of the child has run (see forks.py), as the threads use what they reset.
        if self._pid is not None:
            self._pid = None
            self.start()

    def _work(self) -> None:
        processor, work = self.processor, self._queue
        retired = threading.Event()
        # An id taken from the queue while the previous event was being finished: its
        # claim went into the same store transaction as that event's verdict.
        ahead: list[str | None] = []

        def then() -> str | None:
            if ahead or retired.is_set():
                return None
            try:
                ahead.append(work.get_nowait())
            except queue.Empty:
                return None
            return ahead[-1]  # None (shut down): claim nothing

        claim: Claim | None = None
        while not retired.is_set():
            event_id = ahead.pop() if ahead else work.get()
            try:
                if event_id is None:
                    return
                with self._gate.passage() as passage:
                    stuck = functools.partial(self._replace, retired, event_id, passage)
                    _, claim = processor.process_step(claim or event_id, on_stuck=stuck, then=then)
            except Exception:
                claim = None
                log.exception(
                    "event %s: processing crashed; it will be retried", printable(event_id)
                )
            finally:
                # Only now: while it is processed, the poller must not queue it again.
                with self._queued_lock:
                    self._queued.discard(event_id)
                work.task_done()
        for left in ahead:  # retired with the next id already taken: give it back
            with self._queued_lock:
                self._queued.discard(left or "")
            work.task_done()
            if left is not None:
                self._enqueue(left)
            else:
                work.put_nowait(None)  # room: it was just taken out

    def _replace(self, retired: threading.Event, event_id: str, passage: Passage) -> None:
        # A handler overran its timeout in a worker thread: the thread cannot be stopped,
        # so it retires (it exits if the handler ever returns) and a new one takes its
        # place. The event is free to be queued again for its retry, and a fork no
        # longer waits for the hung thread.
        retired.set()
        passage.leave()
        with self._queued_lock:
            self._queued.discard(event_id)
        # Under the start lock, so close() never joins a thread listed but not started.
        with self._start_lock:
            if self._stop.is_set():
                return  # closing: nothing left for a new thread to do
            thread = threading.Thread(target=self._work, name="iverton-worker", daemon=True)
            thread.start()
            self._threads.append(thread)
        log.warning(
            "event %s: a handler overran handler_timeout; its worker thread was replaced",
            printable(event_id),
        )

    def _poll(self) -> None:
        # The first pass runs at once: that is recovery after a restart.
        while not self._stop.is_set():
            try:
                processor = self.processor
                limit = self._queue.maxsize // 2 or 1
                with self._gate.passage():
                    due = processor.store.due(limit, endpoint=processor.endpoint)
                for event_id in due:
                    if not self._enqueue(event_id):
                        break
            except Exception:
                log.exception("recovery poll failed; trying again in %.0f s", self.poll_interval)
            self._stop.wait(self.poll_interval)

    def join(self, timeout: float | None = None) -> bool:
        """Wait until every queued id has been processed (tests, graceful shutdown)."""
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float | None = None) -> None:
        if self._pid != os.getpid():
            return
        self._stop.set()
        for _ in range(self.workers):
            try:
                self._queue.put(None, timeout=0.1)
            except queue.Full:
                break
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._start_lock:  # from here on no worker is replaced (see _replace)
            threads = list(self._threads)
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        self._pid = None


class AsyncioRunner(BaseRunner):
    """Process on an asyncio loop: async handlers on the loop, sync ones in threads.

    Call :meth:`startup` from the app's lifespan (it recovers due events and polls
    for retries) and :meth:`drain` at shutdown. Tasks are strongly referenced, so
    the loop cannot garbage-collect one mid-event.
    """

    def __init__(self, *, poll_interval: float = 5.0, max_concurrency: int = 100) -> None:
        self.poll_interval = poll_interval
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._in_flight: set[str] = set()
        self._poller: asyncio.Task[None] | None = None
        self._limit: asyncio.Semaphore | None = None
        self.max_concurrency = max_concurrency

    async def startup(self) -> None:
        """Attach to the running loop and start recovery polling (idempotent per loop)."""
        self.attach(asyncio.get_running_loop())

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run on ``loop`` from now on, and poll there. Called by :meth:`startup` and by
        :meth:`Receiver.receive_async`, so an app without lifespan events still works.
        Must be called from ``loop``'s thread."""
        if self._loop is not loop:
            self._loop = loop
            self._limit = asyncio.Semaphore(self.max_concurrency)
            self._tasks, self._in_flight = set(), set()
        # A poller left over from a loop that has since closed is done or orphaned.
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll())

    def submit(self, event_id: str) -> None:
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not None:
            self.attach(running)
            self._spawn(event_id)
        elif self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._spawn, event_id)
        else:
            log.warning(
                "event %s: no event loop yet, left pending for recovery", printable(event_id)
            )

    def _spawn(self, event_id: str) -> None:
        if event_id in self._in_flight:
            return
        self._in_flight.add(event_id)
        task: asyncio.Task[object] = asyncio.ensure_future(self._run(event_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(lambda _: self._in_flight.discard(event_id))

    async def _run(self, event_id: str) -> object:
        assert self._limit is not None
        async with self._limit:
            try:
                return await self.processor.process_async(event_id)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception(
                    "event %s: processing crashed; it will be retried", printable(event_id)
                )
                return None

    async def _poll(self) -> None:
        store, endpoint = self.processor.store, self.processor.endpoint
        while True:
            try:
                if store.blocking:
                    due = await asyncio.to_thread(store.due, 500, endpoint=endpoint)
                else:
                    due = store.due(500, endpoint=endpoint)
                for event_id in due:
                    self._spawn(event_id)
            except Exception:
                log.exception("recovery poll failed; trying again in %.0f s", self.poll_interval)
            await asyncio.sleep(self.poll_interval)

    async def drain(self, timeout: float = 10.0) -> int:
        """Wait up to ``timeout`` s for in-flight events, then cancel the rest (they are
        handed back to the store, due at once). Returns how many were cancelled."""
        if self._poller is not None:
            self._poller.cancel()
            self._poller = None
        pending = set(self._tasks)
        if not pending:
            return 0
        _, still_running = await asyncio.wait(pending, timeout=timeout)
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.wait(still_running, timeout=1.0)
        return len(still_running)

    def close(self, timeout: float | None = None) -> None:
        if self._poller is not None and self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._poller.cancel)
