"""One long-lived thread that runs an event loop's blocking store calls, in order.

``asyncio.to_thread`` hands each call to a thread pool: an executor future, a wrapped
asyncio future and a pool thread woken per call (115-170 µs a request under an ASGI
server). A store that takes one writer at a time anyway (SQLite) loses nothing by
having its calls made by one thread, and that thread, fed by a plain queue and
answering through ``loop.call_soon_threadsafe``, costs a fraction of the hop; calls
queued while it works are taken one after another with no wake-up in between.

The caller's answer is set only after the call has returned: for ``receive``, after
the store's ``COMMIT``, so every 2xx is still a committed insert.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from .forks import reset_after_fork

T = TypeVar("T")

_Job = tuple[
    asyncio.AbstractEventLoop,
    "asyncio.Future[Any]",
    contextvars.Context,
    Callable[..., Any],
    tuple[Any, ...],
]


class StoreWriter:
    """Runs blocking calls for event loops in one daemon thread, first in first out.

    The thread starts on the first call (in each process: a forked child starts its
    own) and exits after ``idle`` seconds with nothing to do.
    """

    def __init__(self, name: str = "iverton-writer", *, idle: float = 30.0) -> None:
        self.name = name
        self.idle = idle
        self._fresh()
        reset_after_fork(self, StoreWriter._fresh)

    def _fresh(self) -> None:
        # Also in a forked child: the parent's thread did not come along, and the lock
        # may have been copied while it was held.
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()

    def call(self, func: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Queue ``func(*args)`` (run in a copy of the caller's context, as
        ``asyncio.to_thread`` does); the future has its result once it has returned."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job: _Job = (loop, future, contextvars.copy_context(), func, args)
        with self._lock:
            if self._pid != os.getpid():  # forked with no at-fork hook run (os.fork in C)
                self._fresh()
            self._queue.put(job)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                self._thread.start()
        return future

    def _run(self) -> None:
        jobs = self._queue
        while True:
            try:
                loop, future, context, func, args = jobs.get(timeout=self.idle)
            except queue.Empty:
                with self._lock:
                    if jobs.empty():
                        self._thread = None
                        return
                continue
            try:
                result = context.run(func, *args)
            except BaseException as exc:
                _answer(loop, future, None, exc)
            else:
                _answer(loop, future, result, None)


def _answer(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
) -> None:
    # A loop closed while the call ran raises RuntimeError: nobody is waiting any more.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():  # the request went away while its call ran
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


_writers: weakref.WeakKeyDictionary[object, StoreWriter] = weakref.WeakKeyDictionary()
_writers_lock = threading.Lock()


def writer_for(store: object) -> StoreWriter | None:
    """The one :class:`StoreWriter` of a store whose ``single_writer`` attribute is true
    (one writer at a time is all it takes: SQLite), shared by every receiver using it;
    None for any other store (calls there go to a thread pool, so that a slow
    PostgreSQL insert does not hold up the next request's)."""
    if not getattr(store, "single_writer", False):
        return None
    found = _writers.get(store)
    if found is None:
        with _writers_lock:
            found = _writers.setdefault(store, StoreWriter())
    return found
