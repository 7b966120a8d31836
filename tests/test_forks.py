"""Forking while background threads work: the child must never inherit a half-done
store transaction (gunicorn --preload forks workers from a master that processes)."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import pytest

from iverton_webhooks import forks
from iverton_webhooks.filelock import FileLock
from iverton_webhooks.forks import ForkGate
from iverton_webhooks.runners import ThreadRunner

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def fork_and_wait(child: Callable[[], int]) -> int:
    """Fork; the child runs ``child()`` and exits with its return code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            code = child()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_fork_waits_for_the_work_inside_the_gate(tmp_path: Path) -> None:
    gate = ForkGate(grace=5)
    path = tmp_path / "inbox.db"
    sqlite3.connect(path, isolation_level=None).execute("CREATE TABLE t (x)")
    inside, release = threading.Event(), threading.Event()

    def write_slowly() -> None:
        with gate.passage():
            conn = sqlite3.connect(path, isolation_level=None, timeout=5)
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t VALUES (1)")
            inside.set()
            release.wait(5)
            conn.execute("COMMIT")
            conn.close()

    worker = threading.Thread(target=write_slowly)
    worker.start()
    assert inside.wait(5)
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()

    def child_writes() -> int:
        conn = sqlite3.connect(path, isolation_level=None, timeout=2)
        conn.execute("INSERT INTO t VALUES (2)")
        return 0

    # The fork happened only once the transaction was committed: the child can write.
    assert fork_and_wait(child_writes) == 0
    assert time.monotonic() - started >= 0.25
    worker.join(5)
    rows = sqlite3.connect(path).execute("SELECT count(*) FROM t").fetchone()[0]
    assert rows == 2


def test_work_waits_while_a_fork_is_under_way_and_a_passage_can_leave_early() -> None:
    # A grace long enough that a fork and a child's exit on a loaded machine stay under it.
    gate = ForkGate(grace=1.0)
    with gate.passage() as passage:
        passage.leave()  # a thread given up on (hung in a handler): forks stop waiting
        started = time.monotonic()
        assert fork_and_wait(lambda: 0) == 0
        assert time.monotonic() - started < 0.8
    # Without leaving, a fork waits its grace at most.
    with gate.passage():
        started = time.monotonic()
        assert fork_and_wait(lambda: 0) == 0
        assert 0.9 <= time.monotonic() - started < 5


def test_a_runner_restarted_in_a_child_finds_every_lock_reset_first(tmp_path: Path) -> None:
    """A runner restarts its threads in a forked child; an object registered for its
    own reset after the runner was made (a lock file first used by a later write) must
    be reset before those threads can use it, or a thread entering it as it is reset
    fails to release it ("cannot release un-acquired lock": a claim crashed under
    gunicorn --preload and its event waited for its lease to run out)."""
    polled = threading.Event()
    errors: list[str] = []
    locks: list[FileLock] = []

    class Store:
        def due(self, limit: int, *, endpoint: str) -> list[str]:
            try:
                with locks[0]:
                    time.sleep(0.3)
            except Exception as exc:
                errors.append(repr(exc))
            polled.set()
            return []

    runner = ThreadRunner(workers=1, poll_interval=60)
    runner.bind(SimpleNamespace(store=Store(), endpoint="default"))  # type: ignore[arg-type]
    # Between the runner's hook and the lock's: lets the restarted poller run into the
    # lock while later hooks are still to come (it always could; this makes it certain).
    slow_hooks = [True]
    os.register_at_fork(after_in_child=lambda: time.sleep(0.1) if slow_hooks else None)
    locks.append(FileLock(str(tmp_path / "inbox.iverton-lock")))
    try:
        runner.start()
        assert polled.wait(5)
        polled.clear()

        def child() -> int:
            return 0 if polled.wait(5) and not errors else 3

        assert fork_and_wait(child) == 0
    finally:
        slow_hooks.clear()
        runner.close(1)


def test_in_a_child_resets_run_in_order_then_restarts_and_a_failing_one_stops_none() -> None:
    order: list[str] = []

    class Owner:
        pass

    first, second = Owner(), Owner()
    forks.restart_after_fork(first, lambda owner: order.append("restart"))
    forks.reset_after_fork(first, lambda owner: order.append("reset 1"))
    forks.reset_after_fork(second, lambda owner: 1 / 0)  # logged, and the next still runs
    forks.in_child_after_fork(lambda: order.append("reset 2"))
    read, write = os.pipe()

    def child() -> int:
        os.write(write, ",".join(order).encode())
        return 0

    try:
        assert fork_and_wait(child) == 0
        assert os.read(read, 1000).decode() == "reset 1,reset 2,restart"
    finally:
        os.close(read)
        os.close(write)
        # The hooks above stay registered for every later fork of this process: end
        # their owners (the module-level one only appends to a list nobody reads).
        del first, second


def test_hooks_of_owners_that_are_gone_are_dropped() -> None:
    class Owner:
        pass

    before = len(forks._resets)
    owners = [Owner() for _ in range(300)]
    for owner in owners:
        forks.reset_after_fork(owner, lambda owner: None)
    del owners, owner
    for _ in range(300):  # registering past the next power of two prunes
        kept = Owner()
        forks.reset_after_fork(kept, lambda owner: None)
        del kept
    assert len(forks._resets) < before + 600
