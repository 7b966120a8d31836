"""A newest-only handler under the real runners: the thread runner's 4 workers in
this process, and two Celery worker processes on a real RabbitMQ broker. Deliveries
of three deals arrive shuffled, some twice; at the end each deal's last applied event
is its newest, and no two runs of one deal overlapped or went back in time."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from iverton_webhooks import Receiver, SQLiteStore, Status, ThreadRunner
from iverton_webhooks.inbox.base import MarkAnswer, MarkKey, ResourceMarks
from iverton_webhooks.samples import sample_body
from tests.celery_ordering_app import SECRET, make_router, runs_db
from tests.conftest import end_process, signed_headers, wait_for

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)
DEALS, STEPS = 3, 6


def shuffled_deliveries(seed: int) -> list[tuple[str, bytes]]:
    """(event id, body) for each deal's events, shuffled, a few delivered twice."""
    events = []
    for deal in range(DEALS):
        for step in range(STEPS):
            event_id = f"evt_d{deal}_{step}"
            created = (T0 + timedelta(seconds=step)).strftime("%Y-%m-%dT%H:%M:%SZ")
            body = sample_body(
                "deal.updated", id=event_id, created_at=created, data={"id": f"d_{deal}"}
            )
            events.append((event_id, body))
    rng = random.Random(seed)
    rng.shuffle(events)
    return events + rng.sample(events, 4)


def deliver(receiver: Receiver, deliveries: list[tuple[str, bytes]]) -> None:
    for _, body in deliveries:
        assert receiver.receive("POST", body, signed_headers(body, SECRET)).status == 200


def all_done(receiver: Receiver) -> bool:
    events = receiver.store.list(limit=1000)  # type: ignore[attr-defined]
    return len(events) == DEALS * STEPS and all(e.status is Status.DONE for e in events)


def check_runs(runs_path: Path) -> None:
    rows = runs_db(str(runs_path)).execute(
        "SELECT deal, created_at, started, ended FROM runs ORDER BY deal, started"
    )
    by_deal: dict[str, list[tuple[float, float, float]]] = {}
    for deal, created_at, started, ended in rows:
        by_deal.setdefault(deal, []).append((created_at, started, ended))
    newest = (T0 + timedelta(seconds=STEPS - 1)).timestamp()
    assert sorted(by_deal) == [f"d_{deal}" for deal in range(DEALS)]
    for deal, runs in by_deal.items():
        for before, after in itertools.pairwise(runs):
            assert after[1] >= before[2], f"{deal}: two runs at once"
            assert after[0] > before[0], f"{deal}: an older event after a newer one"
        assert runs[-1][0] == newest, f"{deal}: its newest event was not the last applied"


def test_a_newest_only_handler_under_the_thread_runner(tmp_path: Path) -> None:
    runs = tmp_path / "runs.db"
    runs_db(str(runs)).close()
    receiver = Receiver(
        SECRET,
        router=make_router(str(runs)),
        store=SQLiteStore(tmp_path / "inbox.db"),
        runner=ThreadRunner(workers=4, poll_interval=0.5),
    )
    try:
        deliver(receiver, shuffled_deliveries(seed=1))
        assert wait_for(lambda: all_done(receiver), timeout=60)
    finally:
        receiver.close(5)
    check_runs(runs)


@pytest.mark.amqp
@pytest.mark.slow
def test_a_newest_only_handler_under_two_celery_workers(tmp_path: Path, amqp_url: str) -> None:
    pytest.importorskip("celery")
    from tests.celery_ordering_app import make

    queue = f"iverton-ordering-{uuid.uuid4().hex[:8]}"
    inbox, runs = tmp_path / "inbox.db", tmp_path / "runs.db"
    runs_db(str(runs)).close()
    app, receiver = make(amqp_url, queue, str(inbox), str(runs))
    env = {
        **os.environ,
        "IVERTON_TEST_AMQP_URL": amqp_url,
        "IVERTON_ORDERING_QUEUE": queue,
        "IVERTON_ORDERING_INBOX": str(inbox),
        "IVERTON_ORDERING_RUNS": str(runs),
    }
    command = [sys.executable, "-m", "celery", "-A", "tests.celery_ordering_app", "worker"]
    options = ["--pool=threads", "--concurrency=2", "-Q", queue, "--without-gossip"]
    workers = [
        subprocess.Popen(
            [*command, *options, "--without-mingle", "-l", "warning", "-n", f"w{n}@%h"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in range(2)
    ]
    try:
        deliver(receiver, shuffled_deliveries(seed=2))
        # As celery beat would: the recover task picks up an event whose publish the
        # broker refused (it is left pending for that task).
        for _ in range(45):
            if wait_for(lambda: all_done(receiver), timeout=2):
                break
            with contextlib.suppress(Exception):
                app.send_task("iverton_webhooks.recover")
        assert all_done(receiver)
        pids = {pid for (pid,) in runs_db(str(runs)).execute("SELECT DISTINCT pid FROM runs")}
        assert pids <= {worker.pid for worker in workers}
    finally:
        for worker in workers:
            end_process(worker)
        receiver.close(5)
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)
    check_runs(runs)


def held_elsewhere(receiver: Receiver) -> MarkKey:
    """Take d_0's mark of ``sync_deal`` for another worker; returns its key."""
    handler = next(h for h in receiver.router.handlers_for("deal.updated") if h.newest_only)
    key = MarkKey("default", "deal/d_0", handler.name)
    store = receiver.store
    assert isinstance(store, ResourceMarks)
    assert store.take_mark(key, 0.0, "evt_elsewhere", "other", 30) is MarkAnswer.RUN
    return key


def test_the_thread_runner_comes_back_to_a_busy_event_without_waiting_for_its_poll(
    tmp_path: Path,
) -> None:
    runs = tmp_path / "runs.db"
    runs_db(str(runs)).close()
    receiver = Receiver(
        SECRET,
        router=make_router(str(runs)),
        store=SQLiteStore(tmp_path / "inbox.db"),
        runner=ThreadRunner(workers=1, poll_interval=600),
    )
    try:
        key = held_elsewhere(receiver)
        body = sample_body("deal.updated", id="evt_1", data={"id": "d_0"})
        deliver(receiver, [("evt_1", body)])
        time.sleep(0.3)
        assert receiver.store.get("evt_1").status is Status.PENDING  # type: ignore[union-attr]
        receiver.store.release_mark(key, "other", None)  # type: ignore[attr-defined]
        # The poll is 10 minutes away: only the runner's own return brings it back.
        assert wait_for(lambda: is_done(receiver, "evt_1"), timeout=10)
    finally:
        receiver.close(5)


def is_done(receiver: Receiver, event_id: str) -> bool:
    event = receiver.store.get(event_id)
    return event is not None and event.status is Status.DONE


def test_the_celery_task_retries_itself_while_the_resource_is_busy(tmp_path: Path) -> None:
    pytest.importorskip("celery")
    from celery.exceptions import Retry

    from tests.celery_ordering_app import make

    app, receiver = make("memory://", "q", str(tmp_path / "in.db"), str(tmp_path / "runs.db"))
    process = app.tasks["iverton_webhooks.process"]
    try:
        key = held_elsewhere(receiver)
        body = sample_body("deal.updated", id="evt_1", data={"id": "d_0"})
        receiver.store.record("evt_1", "deal.updated", T0, body)
        with pytest.raises(Retry):
            process("evt_1")
        receiver.store.release_mark(key, "other", None)  # type: ignore[attr-defined]
        event = receiver.store.get("evt_1")
        assert event is not None
        assert (event.status, event.attempts) == (Status.PENDING, 0)
        # Due again after BUSY_DELAY; until then the task finds nothing to do.
        assert wait_for(lambda: process("evt_1") == "done", timeout=5)
    finally:
        receiver.close(0.1)
