"""Copying SQLite's write-ahead log back into the database off the request path.

A WAL-mode commit appends pages to the ``-wal`` file; a checkpoint copies them into the
database, with an fsync of each file. SQLite runs that checkpoint inside the commit that
crosses ``wal_autocheckpoint``, so one acknowledged request in a few hundred waited for
all of it (~25 ms here for 4 MiB of log). A :class:`Checkpointer` runs a ``PASSIVE``
checkpoint in a thread of its own every ``every`` writes: it copies what is committed
without waiting for or blocking any writer. The writers keep their own
``wal_autocheckpoint``, which still bounds the log (a passive checkpoint cannot restart
the log while writes keep coming) but now finds most pages already copied.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "doc.sqlite3")
>>> checkpointer = Checkpointer(path, every=2)
>>> checkpointer.runs
0
>>> checkpointer.close()
"""

from __future__ import annotations

import logging
import sqlite3
import threading

from ..forks import ForkGate, reset_after_fork
from ..text import printable

log = logging.getLogger("iverton_webhooks")


class Checkpointer:
    """A thread, started at the first checkpoint this process needs, that checkpoints
    ``path`` after every ``every`` calls to :meth:`wrote`. ``runs`` counts the
    checkpoints it has completed in this process."""

    def __init__(self, path: str, *, every: int, synchronous: str = "NORMAL") -> None:
        self.path = path
        self.every = max(1, every)
        # The checkpoint's fsyncs follow its connection's setting: the store's.
        self.synchronous = synchronous
        self._gate = ForkGate()
        self._fresh()
        reset_after_fork(self, Checkpointer._fresh)

    def _fresh(self) -> None:
        # Also in a forked child: the parent's thread did not come along, and the child
        # starts its own when it first needs one.
        self.runs = 0
        self._failing = False
        self._writes = 0
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._start_lock = threading.Lock()

    def wrote(self) -> None:
        """Count one write (a commit's worth of pages, roughly); every ``every`` of them,
        wake the thread. Costs a request an increment and a comparison."""
        self._writes += 1
        if self._writes >= self.every:
            self._writes = 0
            self._wake_thread()

    def _wake_thread(self) -> None:
        if self._thread is None:
            with self._start_lock:
                if self._thread is None and not self._closed:
                    thread = threading.Thread(
                        target=self._run, name="iverton-sqlite-checkpoint", daemon=True
                    )
                    thread.start()
                    self._thread = thread
        self._wake.set()

    def _run(self) -> None:
        try:
            with self._gate.passage():
                conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
        except sqlite3.Error as exc:
            self._failed(exc)
            return
        try:
            while True:
                self._wake.wait()
                if self._closed:
                    return
                try:
                    # Inside the gate: a fork waits for the checkpoint, so no child
                    # inherits SQLite's internal locks held by this thread.
                    with self._gate.passage():
                        busy, _, _ = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    if not busy:  # busy: another checkpoint was under way; the next wake retries
                        self.runs += 1
                    self._failing = False
                except sqlite3.Error as exc:
                    self._failed(exc)
                # Wakes during the run are dropped: back-to-back runs would keep the
                # writers' own checkpoint, the one that bounds the log, from its turn.
                self._wake.clear()
                if self._stopping():  # close() may have woken it just before the clear
                    return
        finally:
            conn.close()

    def _stopping(self) -> bool:
        return self._closed

    def _failed(self, exc: sqlite3.Error) -> None:
        # Nothing is lost: the writers' own checkpoints still bound the log. Said once
        # per run of failures (a full disk would otherwise say it every few hundred acks).
        if self._failing:
            return
        self._failing = True
        log.warning(
            "background checkpoint of %s failed (the writers checkpoint instead): %s",
            printable(self.path),
            printable(exc),
        )

    def close(self, timeout: float = 5.0) -> None:
        """Stop the thread (after the checkpoint it may be making)."""
        self._closed = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
