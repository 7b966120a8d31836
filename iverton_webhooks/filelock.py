"""A lock shared by the processes of one host: ``flock`` on a file.

SQLite lets one writer in at a time. A writer that finds the database locked waits in
SQLite's busy handler, which sleeps and retries with sleeps growing to 100 ms: under a
burst, writers of several processes (gunicorn workers) kept missing each other's
releases and acks waited seconds. Waiting in ``flock`` instead, a writer is woken by the
kernel as soon as the holder lets go.
"""

from __future__ import annotations

import fcntl
import os
import threading

from .forks import reset_after_fork


class FileLock:
    """An exclusive lock on ``path`` (created if missing), reentrant within a thread.

    Between processes it is ``flock``; between threads of one process a reentrant
    Python lock comes first, so only one thread per process waits in the kernel and a
    nested acquisition (a write method calling another) does not lock again.

    Each process opens its own descriptor: a child forked while its parent held the
    lock must not share it (``flock`` belongs to the open file, so a shared descriptor
    would let parent and child both in). The blocking wait has no timeout of its own:
    the holder is always a store write, whose own wait for SQLite is bounded by the
    database's busy timeout, and the lock is released when it ends, error or not.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._reset()
        reset_after_fork(self, FileLock._reset)

    def _reset(self) -> None:
        # In a child the parent's descriptor is left open, not closed: closing it would
        # not release the parent's lock anyway, and it is never used here again (the
        # child opens its own at its first write, with no pid check per write).
        self._local = threading.RLock()
        self._depth = 0
        self._fd: int | None = None

    def _open(self) -> int:
        fd = self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return fd

    def held(self) -> FileLock:
        """The lock as a context manager: ``with lock.held(): ...`` (or ``with lock:``)."""
        return self

    # A class-based context manager rather than a generator: every store write enters it.
    def __enter__(self) -> None:
        self._local.acquire()
        try:
            if self._depth == 0:
                fd = self._fd
                fcntl.flock(self._open() if fd is None else fd, fcntl.LOCK_EX)
        except BaseException:
            self._local.release()
            raise
        self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._depth -= 1
            if self._depth == 0 and self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._local.release()

    def close(self) -> None:
        """Close this process's descriptor (releasing the lock if this process holds it)."""
        with self._local:
            if self._fd is not None:
                os.close(self._fd)
            self._fd = None
