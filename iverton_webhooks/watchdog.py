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
from typing import Any

from .forks import reset_after_fork

log = logging.getLogger("iverton_webhooks")

#: One running call: (deadline, when it started, renew, expire, their arguments).
_Entry = tuple[float, float, Callable[..., None], Callable[..., None], tuple[Any, ...]]


class Watchdog:
    """Renews every ``heartbeat`` seconds and expires calls past their deadline.

    ``tick`` bounds how late a timeout is noticed; the thread starts on first use in
    each process (so a fork gets its own) and never wakes anyone on the hot path.

    A call is one entry in a dict, under a key never used twice, and it ends with
    whichever of the caller (:meth:`release`) and the watchdog (a timeout) pops that
    entry first: a dict's ``pop`` is atomic, so watching a handler call takes no lock
    and allocates one tuple.
    """

    def __init__(self, heartbeat: float, tick: float) -> None:
        self.heartbeat = heartbeat
        self.tick = tick
        self._keys = itertools.count()
        self._fresh()
        reset_after_fork(self, Watchdog._fresh)

    def _fresh(self) -> None:
        # Also in a forked child: the parent's watches and thread are not there, and its
        # lock may have been copied while held.
        self._watches: dict[int, _Entry] = {}
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._stop = threading.Event()

    def watch(
        self,
        timeout: float,
        renew: Callable[..., None],
        expire: Callable[..., None],
        *args: Any,
    ) -> int:
        """Start watching a call that must end within ``timeout`` seconds: every
        heartbeat while it runs, ``renew(*args)``; past its deadline, ``expire(*args)``
        (both in the watchdog's thread). Returns the key to :meth:`release` it with."""
        if self._pid is None:  # first use in this process (a fork resets it: _fresh)
            self._start()
        now = time.monotonic()
        key = next(self._keys)
        self._watches[key] = (now + timeout, now, renew, expire, args)
        return key

    def release(self, key: int) -> bool:
        """The call returned: stop watching. False if it had already been timed out
        (its failure is written; the caller must not write anything more)."""
        return self._watches.pop(key, None) is not None

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
        stop, watches = self._stop, self._watches
        # When each call seen running is next renewed; only this thread touches it.
        renew_at: dict[int, float] = {}
        while not stop.wait(self.tick):
            now = time.monotonic()
            running = watches.copy()  # one C call: atomic against the callers' writes
            expiring: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
            renewing: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
            for key, (deadline, started, renew, expire, args) in running.items():
                if now >= deadline:
                    renew_at.pop(key, None)
                    # Unless the call returned in the meantime: then its caller won.
                    if watches.pop(key, None) is not None:
                        expiring.append((expire, args))
                    continue
                due = renew_at.get(key, started + self.heartbeat)
                if now >= due:
                    renewing.append((renew, args))
                    due = now + self.heartbeat
                renew_at[key] = due
            for key in [key for key in renew_at if key not in running]:
                del renew_at[key]  # released since the last tick
            for action, args in expiring + renewing:
                try:
                    action(*args)
                except Exception:
                    log.exception("watchdog: renewing or expiring a handler call failed")
