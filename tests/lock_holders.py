"""Another process and a lock file (``flock``, as FileLock takes it), for the tests of
the locks SQLite inboxes share between processes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Holds the lock until its stdin closes; says "held" on stdout once it has it.
_HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""
# Exits 0 if it can take the lock at once, 1 if another holder has it.
_FREE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(1)
"""


@contextmanager
def held_by_another_process(path: str | Path) -> Iterator[subprocess.Popen[str]]:
    """A process holding the lock on ``path`` for the block; close its stdin to let go."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(10)


def release(holder: subprocess.Popen[str]) -> None:
    """Make the holding process exit, and its lock go with it."""
    assert holder.stdin is not None
    holder.stdin.close()


def free_for_another_process(path: str | Path) -> bool:
    """Whether a separate process can take the lock on ``path`` at once."""
    result = subprocess.run([sys.executable, "-c", _FREE, str(path)], timeout=30)
    return result.returncode == 0
