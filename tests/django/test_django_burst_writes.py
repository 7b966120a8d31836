"""DjangoStore on SQLite under bursts (issue 15): writers of several processes queue on a
lock file instead of SQLite's busy handler, this process's inserts share one commit,
and scratch tables stay in memory."""

from __future__ import annotations

import dataclasses
import os
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from django.db import DatabaseError, connections, transaction

from iverton_webhooks.contrib.django import store as store_module
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.errors import StoreUnavailable
from tests.django.dj_helpers import db_mark
from tests.lock_holders import free_for_another_process, held_by_another_process, release

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


@pytest.fixture(autouse=True)
def _sqlite_only() -> None:
    if connections["default"].vendor != "sqlite":
        pytest.skip("these are SQLite's locks")


def _db_path() -> str:
    return str(connections["default"].settings_dict["NAME"])


def _lock_path() -> str:
    return os.path.abspath(_db_path()) + ".iverton-lock"


@pytest.fixture
def other_process_holds_the_lock() -> Iterator[subprocess.Popen[str]]:
    with held_by_another_process(_lock_path()) as holder:
        yield holder


def _free_for_another_process() -> bool:
    return free_for_another_process(_lock_path())


@db_mark("default")
def test_a_write_waits_for_another_process_holding_the_lock(
    other_process_holds_the_lock: subprocess.Popen[str],
) -> None:
    store = DjangoStore("default")
    outcome: list[object] = []

    def record() -> None:
        try:
            outcome.append(store.record("evt_waits", "deal.won", CREATED, b"{}"))
        except BaseException as exc:
            outcome.append(exc)
        finally:
            connections.close_all()

    thread = threading.Thread(target=record, daemon=True)
    thread.start()
    thread.join(0.5)
    assert outcome == []  # queued behind the other process: no error, no answer yet
    assert store.get("evt_waits") is None
    release(other_process_holds_the_lock)
    thread.join(15)
    assert outcome == [True]
    assert store.get("evt_waits") is not None


@db_mark("default")
def test_a_write_in_an_atomic_block_does_not_wait_for_the_lock_file(
    other_process_holds_the_lock: subprocess.Popen[str],
) -> None:
    # Its transaction may hold SQLite's write lock that the lock file's holder waits
    # for: waiting here as well would stall both.
    store = DjangoStore("default")
    started = time.monotonic()
    with transaction.atomic(using="default"):
        assert store.record("evt_in_atomic", "deal.won", CREATED, b"{}") is True
    assert time.monotonic() - started < 5
    assert store.get("evt_in_atomic") is not None


@db_mark("default")
def test_the_locks_are_released_when_a_write_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    store = DjangoStore("default")
    store.record("evt_first", "deal.won", CREATED, b"{}")
    assert Path(_lock_path()).exists()
    insert = store_module._Insert.of(connections["default"])
    broken = dataclasses.replace(insert, sql="INSERT INTO no_such_table VALUES (1)")
    with monkeypatch.context() as patch:
        patch.setattr(store_module._Insert, "of", classmethod(lambda cls, connection: broken))
        with pytest.raises((DatabaseError, StoreUnavailable)):
            store.record("evt_fails", "deal.won", CREATED, b"{}")
    assert _free_for_another_process()
    done: list[bool] = []

    def record() -> None:  # and this process's own lock: another thread gets in
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


class _CountingStore(DjangoStore):
    def __init__(self) -> None:
        super().__init__("default")
        self.groups: list[int] = []

    def _insert_together(self, rows: list[Any]) -> list[bool]:
        self.groups.append(len(rows))
        return super()._insert_together(rows)


@db_mark("default")
def test_concurrent_inserts_share_one_commit_and_each_is_committed_when_it_returns() -> None:
    store = _CountingStore()
    store.record("evt_warm", "deal.won", CREATED, b"{}")
    # Another connection holds SQLite's write lock: the first insert waits for it, and
    # the ones arriving meanwhile queue behind it.
    blocker = sqlite3.connect(_db_path(), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    results: dict[str, bool] = {}
    visible: dict[str, bool] = {}

    def record(event_id: str) -> None:
        try:
            results[event_id] = store.record(event_id, "deal.won", CREATED, b"{}")
            # Seen by a separate connection as soon as record returns: committed.
            reader = sqlite3.connect(_db_path())
            table = store_module.WebhookEvent._meta.db_table
            found = reader.execute(
                f"SELECT count(*) FROM {table} WHERE event_id = ?", (event_id,)
            ).fetchone()[0]
            visible[event_id] = found == 1
            reader.close()
        finally:
            connections.close_all()

    threads = [threading.Thread(target=record, args=(f"evt_{n}",)) for n in range(8)]
    try:
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(store._queue) < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(store._queue) == 7  # one leads (waiting for SQLite), seven wait for it
        assert results == {}  # nothing acknowledged while the database is locked
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    for thread in threads:
        thread.join(15)
    assert results == {f"evt_{n}": True for n in range(8)}
    assert visible == {f"evt_{n}": True for n in range(8)}
    assert store.groups == [7]
    assert store.count() == 9
    # A duplicate inside a group is counted, not inserted.
    assert store.record("evt_3", "deal.won", CREATED, b"{}") is False
    event = store.get("evt_3")
    assert event is not None
    assert event.deliveries == 2


@db_mark("default")
def test_a_claim_holds_the_write_locks_for_its_update_only() -> None:
    # The row is read once the locks are given back: other processes' acks wait for
    # one statement, not four (BEGIN, UPDATE, SELECT, COMMIT).
    store = DjangoStore("default")
    store.record("evt_claimed", "deal.won", CREATED, b"{}")
    lock = store_module._write_locks["default"]
    seen: list[tuple[str, bool, bool]] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql.split()[0].upper(), lock._is_owned(), not _free_for_another_process()))
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(spy):
        claim = store.claim("evt_claimed", 30)
    assert claim is not None
    assert claim.event.id == "evt_claimed"
    assert claim.event.attempts == 1
    assert [kind for kind, _, _ in seen] == ["UPDATE", "SELECT"]
    assert seen[0][1:] == (True, True)  # the UPDATE under both locks
    assert seen[1][1:] == (False, False)  # the read under neither


@db_mark("default")
def test_a_finish_holds_the_write_locks_for_its_update_only() -> None:
    from iverton_webhooks.inbox.base import HandlerOutcome, Status, Verdict

    store = DjangoStore("default")
    store.record("evt_finished", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_finished", 30)
    assert claim is not None
    lock = store_module._write_locks["default"]
    seen: list[tuple[str, bool, bool]] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        seen.append((sql.split()[0].upper(), lock._is_owned(), not _free_for_another_process()))
        return execute(sql, params, many, context)

    outcome = {"h": HandlerOutcome(ok=True, at=1.0)}
    with connections["default"].execute_wrapper(spy):
        assert store.checkpoint(claim, outcome)
        assert store.finish(claim, outcome, Verdict(Status.DONE))
    # Each: the outcomes read under neither lock, the UPDATE under both.
    assert seen == [("SELECT", False, False), ("UPDATE", True, True)] * 2
    event = store.get("evt_finished")
    assert event is not None
    assert event.status is Status.DONE


def _insert_under_the_write_lock(store: DjangoStore, event_id: str) -> bool:
    """Record ``event_id``; whether its INSERT ran holding this process's write lock."""
    held: list[bool] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT"):
            held.append(store_module._write_locks["default"]._is_owned())
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(spy):
        assert store.record(event_id, "deal.won", CREATED, b"{}")
    return held == [True]


@db_mark("default")
def test_writes_use_this_process_locks_after_a_fork() -> None:
    # The locks are kept on the open connection: a forked child, which has locks of its
    # own, must not go on with its parent's.
    store = DjangoStore("default")
    store.record("evt_before", "deal.won", CREATED, b"{}")
    store_module._forget_write_locks()  # what a forked child runs
    assert _insert_under_the_write_lock(store, "evt_after")


@db_mark("default")
def test_a_reopened_connection_is_tuned_and_locked_again() -> None:
    store = DjangoStore("default")
    store.record("evt_before", "deal.won", CREATED, b"{}")
    connections["default"].close()
    assert _insert_under_the_write_lock(store, "evt_after")
    assert _temp_store() == 2
