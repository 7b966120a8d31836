"""A SQLite inbox used before a fork (gunicorn --preload, Celery prefork) keeps working in
the child and in the parent: the child opens its own connections and never touches the
parent's, and a lock a parent thread held at the fork does not stay held in the child."""

from __future__ import annotations

import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import SQLiteStore, Status
from iverton_webhooks.inbox.base import Verdict

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def _wait_for_child(pid: int, timeout: float = 30.0) -> int:
    """The child's exit code; it is killed (and the test fails) if it takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked child did not finish within {timeout:.0f} s")


def _in_child(store: SQLiteStore, parent_conn: object) -> int:
    """What the child checks; its exit code says which step failed (0: all held)."""
    try:
        if store._conn is parent_conn:
            return 3  # the parent's connection, reused across the fork
        if not store.record("evt_child", "deal.won", CREATED, b'{"by":"child"}'):
            return 4
        claim = store.claim("evt_parent", 30)
        if claim is None:
            return 5
        if not store.finish(claim, {}, Verdict(Status.DONE)):
            return 6
        store.close()  # closes the child's own connections only
        return 0
    except BaseException:
        return 7


def test_a_forked_child_writes_and_the_parent_still_can(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "inbox.sqlite3", timeout=5)
    assert store.record("evt_parent", "deal.won", CREATED, b"{}")
    parent_conn = store._conn
    # Another parent thread is inside a write, holding this process's write lock, at
    # the instant of the fork: the child must not inherit the lock held for ever.
    inside, leave = threading.Event(), threading.Event()

    def hold_the_write_lock() -> None:
        with store._process().write_lock:
            inside.set()
            leave.wait(10)

    holder = threading.Thread(target=hold_the_write_lock)
    holder.start()
    assert inside.wait(10)
    try:
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            os._exit(_in_child(store, parent_conn))
        code = _wait_for_child(pid)
    finally:
        leave.set()
        holder.join(10)
    assert code == 0, f"the child failed at step {code}"

    # The parent goes on with the connection it had, and its other threads too.
    assert store._conn is parent_conn
    assert store.record("evt_parent_after", "deal.won", CREATED, b"{}")
    done: list[bool] = []
    thread = threading.Thread(
        target=lambda: done.append(store.record("evt_thread", "deal.won", CREATED, b"{}"))
    )
    thread.start()
    thread.join(10)
    assert done == [True]
    child_event, parent_event = store.get("evt_child"), store.get("evt_parent")
    assert child_event is not None
    assert child_event.body == b'{"by":"child"}'
    assert parent_event is not None
    assert parent_event.status is Status.DONE
    assert store.count() == 4
    store.close()


def test_processes_forked_from_one_store_write_at_once_without_losing_an_event(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "inbox.sqlite3", timeout=5)
    store.record("evt_warm", "deal.won", CREATED, b"{}")  # the parent's connection is open
    children = []
    for n in range(4):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 0
            try:
                for i in range(50):
                    # Each event twice: a duplicate counts a delivery, inserts nothing.
                    store.record(f"evt_{n}_{i}", "deal.won", CREATED, b"{}")
                    store.record(f"evt_{n}_{i}", "deal.won", CREATED, b"{}")
            except BaseException:
                code = 1
            os._exit(code)
        children.append(pid)
    assert [_wait_for_child(pid) for pid in children] == [0, 0, 0, 0]
    assert store.count() == 1 + 4 * 50
    event = store.get("evt_3_49")
    assert event is not None
    assert event.deliveries == 2
    store.close()


@pytest.mark.postgres
def test_a_forked_child_has_its_own_postgres_session_and_leaves_the_parents_open(
    tmp_path: Path,
) -> None:
    import time as clock

    from tests.stores import postgres_store

    with postgres_store(tmp_path, clock.time) as store:
        assert store.record("evt_parent", "deal.won", CREATED, b"{}")
        parent_conn = store._conn  # type: ignore[attr-defined]
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                own = store._conn is not parent_conn  # type: ignore[attr-defined]
                wrote = store.record("evt_child", "deal.won", CREATED, b"{}")
                store.close()  # the child's own session only
                code = 0 if own and wrote else 2
            finally:
                os._exit(code)
        assert _wait_for_child(pid) == 0
        # The parent's session was neither used nor ended by the child.
        assert store._conn is parent_conn  # type: ignore[attr-defined]
        assert not parent_conn.closed
        assert store.record("evt_parent_after", "deal.won", CREATED, b"{}")
        assert store.count() == 3
