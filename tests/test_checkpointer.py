"""SQLite's write-ahead log is copied back into the database by a thread of the store's
own, so an acknowledged request rarely waits for a checkpoint; the writers' own
checkpoint still bounds the log (tests/test_inbox.py)."""

from __future__ import annotations

import gc
import logging
import os
import shutil
import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import SQLiteStore
from iverton_webhooks.inbox.checkpointer import Checkpointer
from tests.conftest import wait_for

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
BODY = b'{"data":"' + b"x" * 400 + b'"}'


def rows_in_the_database_file(path: Path, scratch: Path) -> int:
    """Rows the main file holds on its own, without its write-ahead log."""
    copy = scratch / f"main-only-{time.monotonic_ns()}.sqlite3"
    shutil.copyfile(path, copy)  # no -wal beside the copy: only checkpointed pages count
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM iverton_events").fetchone()[0])
    except sqlite3.DatabaseError:
        return 0  # the table itself is not checkpointed yet
    finally:
        conn.close()


def record(store: SQLiteStore, n: int, tag: str) -> None:
    for i in range(n):
        assert store.record(f"evt_{tag}_{i}", "deal.won", CREATED, BODY)


def test_the_log_is_copied_back_long_before_the_writers_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    store = SQLiteStore(path)  # 2 KiB pages, the writers checkpoint at 2,048 pages
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    checkpointer = store._checkpointer
    try:
        # Each round wakes the thread once (every 102 writes); a checkpoint that met another
        # one under way copies nothing, so allow three. 354 writes log ~1,650 pages: still
        # short of the 2,048 at which the writers would checkpoint themselves.
        copied = False
        for round_ in range(3):
            record(store, 150 if round_ == 0 else 102, f"a{round_}")
            copied = wait_for(lambda: rows_in_the_database_file(path, scratch) >= 100, 5)
            if copied:
                break
        thread = checkpointer._thread
        assert copied, (
            f"runs={checkpointer.runs} writes={checkpointer._writes} "
            f"thread={thread and thread.is_alive()} gate_closed={checkpointer._gate._closed}"
        )
    finally:
        store.close()


def test_close_stops_the_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "inbox.sqlite3", wal_pages=100)
    record(store, 30, "c")  # every 5 writes: the thread has started
    checkpointer = store._checkpointer
    assert wait_for(lambda: checkpointer.runs >= 1)
    thread = checkpointer._thread
    assert thread is not None
    assert thread.is_alive()
    store.close()
    assert not thread.is_alive()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_checkpoints_with_a_thread_of_its_own(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "inbox.sqlite3", wal_pages=100)
    record(store, 30, "parent")
    assert wait_for(lambda: store._checkpointer.runs >= 1)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            checkpointer = store._checkpointer
            fresh = checkpointer._thread is None and checkpointer.runs == 0
            record(store, 30, "child")
            started = wait_for(lambda: checkpointer.runs >= 1, timeout=10)
            code = 0 if fresh and started else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    store.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_failing_checkpoint_is_logged_and_never_raises(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    checkpointer = Checkpointer(str(tmp_path / "missing" / "inbox.sqlite3"), every=1)
    with caplog.at_level(logging.WARNING, "iverton_webhooks"):
        for _ in range(3):
            checkpointer.wrote()
        assert wait_for(
            lambda: any("background checkpoint" in r.getMessage() for r in caplog.records)
        )
    checkpointer.close()
    assert checkpointer.runs == 0


def test_failing_checkpoints_are_said_once_until_one_succeeds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "inbox.sqlite3"
    SQLiteStore(path).close()
    checkpointer = Checkpointer(str(path), every=1)
    checkpointer.wrote()
    assert wait_for(lambda: checkpointer.runs == 1)
    said: list[int] = []
    with caplog.at_level(logging.WARNING, "iverton_webhooks"):
        checkpointer._failed(sqlite3.OperationalError("disk I/O error"))
        checkpointer._failed(sqlite3.OperationalError("disk I/O error"))
        said.append(len([r for r in caplog.records if "background checkpoint" in r.getMessage()]))
        checkpointer.wrote()  # a checkpoint that succeeds ends the run of failures
        assert wait_for(lambda: checkpointer.runs == 2)
        checkpointer._failed(sqlite3.OperationalError("disk I/O error"))
        said.append(len([r for r in caplog.records if "background checkpoint" in r.getMessage()]))
    checkpointer.close()
    assert said == [1, 2]


def test_a_store_dropped_without_close_stops_its_thread(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "inbox.sqlite3", wal_pages=100)
    record(store, 30, "dropped")
    checkpointer = store._checkpointer
    assert wait_for(lambda: checkpointer.runs >= 1)
    thread = checkpointer._thread
    assert thread is not None
    del store
    gc.collect()
    thread.join(10)
    assert not thread.is_alive()
