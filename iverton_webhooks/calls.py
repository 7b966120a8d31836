"""Running one synchronous handler call with a deadline.

A Python thread cannot be stopped, so a handler that never returns would hold whichever
thread called it for ever. Each call therefore runs in a thread from a small cache; the
caller waits with a deadline, and a thread whose call overran is abandoned (left to
finish or hang on its own, never reused) while the caller carries on.

>>> calls = HandlerThreads()
>>> calls.start(pow, 2, 10).future.result(timeout=1)
1024
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from .forks import reset_after_fork

_Work = tuple[Callable[..., Any], tuple[Any, ...], "Future[Any]"]


class _HandlerThread:
    def __init__(self, cache: HandlerThreads) -> None:
        self._cache = cache
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self.abandoned = False
        threading.Thread(target=self._run, name="iverton-handler", daemon=True).start()

    def give(self, work: _Work) -> None:
        self._work.put(work)

    def stop(self) -> None:
        self._work.put(None)

    def _run(self) -> None:
        while (work := self._work.get()) is not None:
            func, args, future = work
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(func(*args))
                except BaseException as exc:  # handed to the caller, who decides
                    future.set_exception(exc)
            if self.abandoned or not self._cache.take_back(self):
                return


@dataclass(frozen=True)
class Call:
    """One call in flight: its future, and the way to give up on it."""

    future: Future[Any]
    _thread: _HandlerThread

    def abandon(self) -> None:
        """Never reuse the thread running this call (it overran its deadline)."""
        self._thread.abandoned = True


class HandlerThreads:
    """A cache of idle threads, each running one call at a time.

    ``keep_idle`` threads are kept between calls; more are started when calls overlap.
    """

    def __init__(self, keep_idle: int = 8) -> None:
        self.keep_idle = keep_idle
        self._fresh()
        reset_after_fork(self, HandlerThreads._fresh)

    def _fresh(self) -> None:
        # Also in a forked child, where the parent's idle threads do not exist.
        self._idle: list[_HandlerThread] = []
        self._lock = threading.Lock()

    def start(self, func: Callable[..., Any], *args: Any) -> Call:
        """Start ``func(*args)`` in a cached thread."""
        future: Future[Any] = Future()
        with self._lock:
            thread = self._idle.pop() if self._idle else None
        if thread is None:
            thread = _HandlerThread(self)
        thread.give((func, args, future))
        return Call(future, thread)

    def take_back(self, thread: _HandlerThread) -> bool:
        with self._lock:
            if len(self._idle) < self.keep_idle:
                self._idle.append(thread)
                return True
        return False

    def close(self) -> None:
        """Let idle threads exit (busy ones exit when their call returns)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for thread in idle:
            thread.stop()
