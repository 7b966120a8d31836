"""A process forked after it processed (gunicorn --preload, Celery prefork): the child
starts its own processing afresh and never touches its parent's threads or pools."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from iverton_webhooks import Receiver, Router, Status, ThreadRunner
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


def fork_and_wait(child: Callable[[], int], timeout: float = 20.0) -> int:
    """Fork; the child runs ``child()`` and exits with its return code (a watchdog
    timer ends a child that hangs, so the test fails instead of waiting for ever)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            threading.Timer(timeout, os._exit, args=(4,)).start()
            code = child()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_thread_runner_used_before_a_fork_processes_in_the_child(tmp_path: Path) -> None:
    seen: list[str] = []
    router = Router()
    router.on("deal.won")(lambda event: seen.append(event.id))
    runner = ThreadRunner(workers=2, poll_interval=60)
    receiver = Receiver(
        secret=SECRET, router=router, store=f"sqlite:///{tmp_path}/inbox.db", runner=runner
    )
    try:
        body = sample_body("deal.won", id="evt_parent")
        assert receiver.receive("POST", body, signed_headers(body)).status == 200
        assert runner.join(5)
        assert seen == ["evt_parent"]

        def child() -> int:
            body = sample_body("deal.won", id="evt_child")
            if receiver.receive("POST", body, signed_headers(body)).status != 200:
                return 2
            if not runner.join(5):
                return 3
            event = receiver.store.get("evt_child")
            return 0 if event is not None and event.status is Status.DONE else 5

        assert fork_and_wait(child) == 0
        # The parent's runner still works after the fork.
        body = sample_body("deal.won", id="evt_parent_after")
        assert receiver.receive("POST", body, signed_headers(body)).status == 200
        assert runner.join(5)
        assert seen == ["evt_parent", "evt_parent_after"]
        assert receiver.store.get("evt_child").status is Status.DONE  # type: ignore[union-attr]
    finally:
        receiver.close()
