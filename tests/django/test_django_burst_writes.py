"""DjangoStore on SQLite under bursts: this process's writers take turns on one lock
instead of polling in SQLite's busy handler, never inside a caller's transaction, a
forked child has locks of its own, and scratch tables stay in memory."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import pytest
from django.db import connections, transaction

from iverton_webhooks._errors import StoreUnavailable
from iverton_webhooks.contrib.django import store as store_module
from iverton_webhooks.contrib.django.store import DjangoStore
from tests.django.dj_helpers import db_mark

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _sqlite_only() -> None:
    if connections["default"].vendor != "sqlite":
        pytest.skip("these are SQLite's locks")


@contextmanager
def _held_by_another_thread(lock: Any) -> Iterator[None]:
    """``lock`` held by another thread of this process for the block."""
    inside, leave = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert inside.wait(10)
    try:
        yield
    finally:
        leave.set()
        thread.join(10)


@db_mark("default")
def test_a_write_waits_for_this_process_write_lock() -> None:
    store = DjangoStore("default")
    outcome: list[object] = []

    def record() -> None:
        try:
            outcome.append(store.record("evt_waits", "deal.won", CREATED, b"{}"))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connections.close_all()

    with _held_by_another_thread(store_module._write_lock("default")):
        thread = threading.Thread(target=record, daemon=True)
        thread.start()
        thread.join(0.5)
        assert outcome == []  # queued behind the other writer: no error, no answer yet
        assert store.get("evt_waits") is None  # reads do not wait
    thread.join(15)
    assert outcome == [True]
    assert store.get("evt_waits") is not None


@db_mark("default")
def test_a_write_in_an_atomic_block_does_not_wait_for_the_write_lock() -> None:
    # Its transaction may hold SQLite's write lock that the lock's holder waits for:
    # waiting here as well would stall both.
    store = DjangoStore("default")
    started = time.monotonic()
    with _held_by_another_thread(store_module._write_lock("default")):
        with transaction.atomic(using="default"):
            assert store.record("evt_in_atomic", "deal.won", CREATED, b"{}") is True
        assert time.monotonic() - started < 5
    assert store.get("evt_in_atomic") is not None


@db_mark("default")
def test_the_locks_are_released_when_a_write_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    store = DjangoStore("default")
    store.record("evt_first", "deal.won", CREATED, b"{}")
    with monkeypatch.context() as patch:
        patch.setattr(store_module, "_insert_sql", lambda *args: "INSERT INTO no_such_table")
        with pytest.raises(StoreUnavailable):
            store.record("evt_fails", "deal.won", CREATED, b"{}")
    done: list[bool] = []

    def record() -> None:  # this process's lock was given back: another thread gets in
        try:
            done.append(store.record("evt_after", "deal.won", CREATED, b"{}"))
        finally:
            connections.close_all()

    thread = threading.Thread(target=record)
    thread.start()
    thread.join(15)
    assert done == [True]


def _temp_store(alias: str = "default") -> int:
    with connections[alias].cursor() as cursor:
        cursor.execute("PRAGMA temp_store")
        return int(cursor.fetchone()[0])


@db_mark("default")
def test_scratch_tables_in_memory_on_the_inbox_connections() -> None:
    connections["default"].close()
    store = DjangoStore("default")
    store.record("evt_tuned", "deal.won", CREATED, b"{}")
    assert _temp_store() == 2  # MEMORY
    # A connection opened later is set as it opens, before any write of the store.
    connections["default"].close()
    connections["default"].ensure_connection()
    assert _temp_store() == 2


class _Connection:
    """Just enough of a DatabaseWrapper to see whether it would be tuned."""

    def __init__(self, vendor: str, alias: str) -> None:
        self.vendor, self.alias = vendor, alias
        self.cursors = 0

    def cursor(self) -> Any:
        self.cursors += 1
        raise AssertionError("tuned")


@db_mark("default")
def test_only_sqlite_connections_of_inbox_aliases_are_tuned() -> None:
    DjangoStore("default")
    for vendor, alias in (("sqlite", "not_an_inbox"), ("postgresql", "default")):
        connection = _Connection(vendor, alias)
        store_module._tune_new(None, connection)  # type: ignore[arg-type]
        assert connection.cursors == 0


@db_mark("default")
def test_a_claim_is_one_statement_under_the_write_lock() -> None:
    # UPDATE ... RETURNING: other writers wait for one statement, not four (BEGIN,
    # UPDATE, SELECT, COMMIT), and the claim costs one round trip.
    store = DjangoStore("default")
    store.record("evt_claimed", "deal.won", CREATED, b"{}")
    lock = store_module._write_lock("default")
    seen: list[tuple[str, bool]] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql.split()[0].upper(), _owned(lock)))
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(spy):
        claim = store.claim("evt_claimed", 30)
    assert claim is not None
    assert claim.event.id == "evt_claimed"
    assert claim.event.attempts == 1
    assert seen == [("UPDATE", True)]


@db_mark("default")
def test_a_finish_is_one_statement_under_the_write_lock() -> None:
    from iverton_webhooks.inbox.base import HandlerOutcome, Status, Verdict

    store = DjangoStore("default")
    store.record("evt_finished", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_finished", 30)
    assert claim is not None
    lock = store_module._write_lock("default")
    seen: list[tuple[str, bool]] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql.split()[0].upper(), _owned(lock)))
        return execute(sql, params, many, context)

    outcome = {"h": HandlerOutcome(ok=True, at=1.0)}
    with connections["default"].execute_wrapper(spy):
        assert store.checkpoint(claim, outcome)
        assert store.finish(claim, outcome, Verdict(Status.DONE))
    # Each: the outcomes merged by the UPDATE itself, no read first.
    assert seen == [("UPDATE", True)] * 2
    event = store.get("evt_finished")
    assert event is not None
    assert event.status is Status.DONE


def _owned(lock: Any) -> bool:
    """Whether ``lock`` is held (in these tests, by the thread writing): another thread
    tries to take it."""
    free: list[bool] = []

    def attempt() -> None:
        if lock.acquire(blocking=False):
            lock.release()
            free.append(True)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(10)
    return not free


def _insert_under_the_write_lock(store: DjangoStore, event_id: str) -> bool:
    """Record ``event_id``; whether its INSERT ran holding this process's write lock."""
    held: list[bool] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT"):
            held.append(_owned(store_module._write_lock("default")))
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(spy):
        assert store.record(event_id, "deal.won", CREATED, b"{}")
    return held == [True]


@db_mark("default")
def test_a_forked_child_writes_while_its_parent_held_the_write_lock_at_the_fork() -> None:
    store = DjangoStore("default")
    store.record("evt_before", "deal.won", CREATED, b"{}")
    connections.close_all()  # what Django asks of a process about to fork
    with _held_by_another_thread(store_module._write_lock("default")):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                code = 0 if _insert_under_the_write_lock(store, "evt_child") else 2
            finally:
                os._exit(code)
        deadline = time.monotonic() + 30
        done, status = os.waitpid(pid, os.WNOHANG)
        while not done and time.monotonic() < deadline:
            time.sleep(0.02)
            done, status = os.waitpid(pid, os.WNOHANG)
        if not done:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
    assert done, "the child waited for a lock its parent held at the fork"
    assert os.waitstatus_to_exitcode(status) == 0
    assert store.get("evt_child") is not None
    assert store.record("evt_parent_after", "deal.won", CREATED, b"{}")


@db_mark("default")
def test_a_reopened_connection_is_tuned_and_locked_again() -> None:
    store = DjangoStore("default")
    store.record("evt_before", "deal.won", CREATED, b"{}")
    connections["default"].close()
    assert _insert_under_the_write_lock(store, "evt_after")
    assert _temp_store() == 2
