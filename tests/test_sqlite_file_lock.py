"""SQLiteStore's writers in several processes (gunicorn workers) queue on a lock file
beside the database instead of polling in SQLite's busy handler (issue 15)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import datetime, timezone
from pathlib import Path

from iverton_webhooks import SQLiteStore

CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)

# Holds the lock file as another process's store would (flock) until stdin closes.
HOLDER = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""
FREE = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    sys.exit(1)
"""


def test_a_write_waits_while_another_process_holds_the_lock_file(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    store = SQLiteStore(path)
    lock_file = f"{os.path.abspath(path)}.iverton-lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, lock_file],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    outcome: list[object] = []

    def record() -> None:
        try:
            outcome.append(store.record("evt_waits", "deal.won", CREATED, b"{}"))
        except BaseException as exc:
            outcome.append(exc)

    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        thread = threading.Thread(target=record, daemon=True)
        thread.start()
        thread.join(0.5)
        assert outcome == []  # queued behind the other process: no error, no answer yet
        assert store.get("evt_waits") is None  # reads do not wait
        assert holder.stdin is not None
        holder.stdin.close()
        thread.join(15)
    finally:
        holder.kill()
        holder.wait(10)
    assert outcome == [True]
    assert store.get("evt_waits") is not None
    # Given back after the write.
    free = subprocess.run([sys.executable, "-c", FREE, lock_file], timeout=30)
    assert free.returncode == 0
    store.close()
