"""FileLock (issue 15): processes queue in the kernel for a SQLite database's writes
instead of polling in SQLite's busy handler."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from iverton_webhooks.filelock import FileLock
from tests.lock_holders import free_for_another_process, held_by_another_process, release


def test_a_process_waits_while_another_holds_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "db.iverton-lock"
    lock = FileLock(str(path))
    got = threading.Event()

    def take() -> None:
        with lock.held():
            got.set()

    with held_by_another_process(path) as holder:
        taker = threading.Thread(target=take, daemon=True)
        taker.start()
        assert not got.wait(0.5)  # waiting, not failing
        release(holder)  # the holder exits, its lock goes with it
        assert got.wait(10)
        taker.join(10)
    lock.close()


def test_released_when_the_body_raises(tmp_path: Path) -> None:
    path = tmp_path / "db.iverton-lock"
    lock = FileLock(str(path))
    held_inside: list[bool] = []

    def fail() -> None:
        with lock.held():
            held_inside.append(not free_for_another_process(path))
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail()
    assert held_inside == [True]
    assert free_for_another_process(path)
    lock.close()


def test_reentrant_in_a_thread_and_exclusive_between_threads(tmp_path: Path) -> None:
    path = tmp_path / "db.iverton-lock"
    lock = FileLock(str(path))
    other_in = threading.Event()

    def other() -> None:
        with lock.held():
            other_in.set()

    with lock.held():
        with lock.held():  # a write method calling another: no second flock, no wait
            pass
        assert not free_for_another_process(path)  # the inner exit released nothing
        thread = threading.Thread(target=other, daemon=True)
        thread.start()
        assert not other_in.wait(0.3)
    assert other_in.wait(10)
    thread.join(10)
    assert free_for_another_process(path)
    lock.close()


def _child_tries(lock: FileLock, answers: multiprocessing.Queue[str]) -> None:
    got = threading.Event()

    def take() -> None:
        with lock.held():
            got.set()

    threading.Thread(target=take, daemon=True).start()
    answers.put("in" if got.wait(0.5) else "waiting")
    answers.put("in" if got.wait(10) else "never")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork only")
def test_a_child_forked_while_the_parent_holds_it_does_not_get_in(tmp_path: Path) -> None:
    # flock belongs to the open file: a child sharing the parent's descriptor would be
    # let in at once. Each process opens its own.
    lock = FileLock(str(tmp_path / "db.iverton-lock"))
    context = multiprocessing.get_context("fork")
    answers: multiprocessing.Queue[str] = context.Queue()
    with lock.held():
        child = context.Process(target=_child_tries, args=(lock, answers))
        child.start()
        assert answers.get(timeout=10) == "waiting"
    assert answers.get(timeout=15) == "in"
    child.join(10)
    assert child.exitcode == 0
    lock.close()
