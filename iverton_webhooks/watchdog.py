"""Watching the synchronous handlers that are running: renew their leases, time out the
ones that overrun.

Handlers run in the thread that processes the event (no hand-off to another thread on
the hot path). One daemon thread per processor and process looks at every running
handler a few times per lease: it renews the lease of each (the heartbeat that lets a
long handler keep its event without a long lease), and when one passes its deadline it
writes the timeout as that handler's failure, so the event is retried (or ends dead) by
other workers, and tells the owner of the stuck thread, which can replace it.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .forks import reset_after_fork

log = logging.getLogger("iverton_webhooks")


@dataclass(eq=False)
class Watch:
    """One running handler call."""

    deadline: float
    next_renew: float
    renew: Callable[[], None]
    expire: Callable[[], None]
    key: int = field(default_factory=itertools.count().__next__)
    timed_out: bool = False


class Watchdog:
    """Renews every ``heartbeat`` seconds and expires calls past their deadline.

    ``tick`` bounds how late a timeout is noticed; the thread starts on first use in
    each process (so a fork gets its own) and never wakes anyone on the hot path.
    """

    def __init__(self, heartbeat: float, tick: float) -> None:
        self.heartbeat = heartbeat
        self.tick = tick
        self._fresh()
        reset_after_fork(self, Watchdog._fresh)

    def _fresh(self) -> None:
        # Also in a forked child: the parent's watches and thread are not there, and its
        # lock may have been copied while held.
        self._watches: dict[int, Watch] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()

    def watch(self, timeout: float, renew: Callable[[], None], expire: Callable[[], None]) -> Watch:
        """Start watching a call that must end within ``timeout`` seconds."""
        if self._pid != os.getpid():
            self._start()
        now = time.monotonic()
        watch = Watch(now + timeout, now + self.heartbeat, renew, expire)
        with self._lock:
            self._watches[watch.key] = watch
        return watch

    def release(self, watch: Watch) -> bool:
        """The call returned: stop watching. False if it had already been timed out
        (its failure is written; the caller must not write anything more)."""
        with self._lock:
            self._watches.pop(watch.key, None)
            return not watch.timed_out

    def close(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            if self._pid == os.getpid():
                return
            self._watches = {}
            self._stop = threading.Event()
            thread = threading.Thread(target=self._run, name="iverton-watchdog", daemon=True)
            thread.start()
            self._pid = os.getpid()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.tick):
            now = time.monotonic()
            with self._lock:
                expired = [w for w in self._watches.values() if now >= w.deadline]
                for watch in expired:
                    watch.timed_out = True
                    del self._watches[watch.key]
                due = [w for w in self._watches.values() if now >= w.next_renew]
                for watch in due:
                    watch.next_renew = now + self.heartbeat
            for action in [*(w.expire for w in expired), *(w.renew for w in due)]:
                try:
                    action()
                except Exception:
                    log.exception("watchdog: renewing or expiring a handler call failed")
