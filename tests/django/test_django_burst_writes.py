"""DjangoStore on SQLite under bursts (issue 15): writers of several processes queue on a
lock file instead of SQLite's busy handler, and scratch tables stay in memory."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
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

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)

# Holds the lock file as another gunicorn worker's store would (flock) until stdin closes.
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
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, _lock_path()],
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


def _free_for_another_process() -> bool:
    result = subprocess.run([sys.executable, "-c", FREE, _lock_path()], timeout=30)
    return result.returncode == 0


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
    holder = other_process_holds_the_lock
    assert holder.stdin is not None
    holder.stdin.close()
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
