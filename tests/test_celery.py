"""The Celery runner against a real RabbitMQ broker and a real ``celery worker`` process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from iverton_webhooks import Status
from iverton_webhooks.samples import sample_body
from tests.celery_app import make
from tests.conftest import signed_headers
from tests.durability_app import SECRET, effects_db

ROOT = Path(__file__).resolve().parent.parent
pytest.importorskip("celery")


def effects(path: Path) -> list[tuple[str, str]]:
    return sorted(effects_db(path).execute("SELECT event_id, handler FROM effects").fetchall())


@pytest.mark.amqp
@pytest.mark.slow
def test_events_are_processed_by_a_real_celery_worker_once_each(
    tmp_path: Path, amqp_url: str
) -> None:
    queue = f"iverton-test-{uuid.uuid4().hex[:8]}"
    inbox, effects_path = tmp_path / "inbox.db", tmp_path / "effects.db"
    effects_db(effects_path).close()
    app, receiver = make(amqp_url, queue, str(inbox), str(effects_path))
    env = {
        **os.environ,
        "IVERTON_TEST_AMQP_URL": amqp_url,
        "IVERTON_CELERY_QUEUE": queue,
        "IVERTON_CELERY_INBOX": str(inbox),
        "IVERTON_CELERY_EFFECTS": str(effects_path),
    }
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--pool=solo",
            "-Q",
            queue,
            "--without-gossip",
            "--without-mingle",
            "-l",
            "warning",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ids = [f"evt_celery_{n:02d}" for n in range(20)]
        for event_id in ids:
            body = sample_body("deal.won", id=event_id)
            for _ in range(2):  # every event delivered twice
                assert receiver.receive("POST", body, signed_headers(body, SECRET)).status == 200
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if all(e.status is Status.DONE for e in receiver.store.list(limit=100)):
                break
            time.sleep(0.1)
        assert {e.id: e.status for e in receiver.store.list(limit=100)} == dict.fromkeys(
            ids, Status.DONE
        )
        assert effects(effects_path) == sorted(
            (event_id, handler) for event_id in ids for handler in ("first", "second")
        )
    finally:
        os.kill(worker.pid, signal.SIGTERM)
        try:
            worker.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(worker.pid, signal.SIGKILL)
            worker.wait(5)
        with app.connection_for_write() as connection:
            connection.default_channel.queue_delete(queue)


def test_broker_down_still_acks_fast_and_leaves_the_event_pending(tmp_path: Path) -> None:
    _, receiver = make(
        "amqp://guest:guest@127.0.0.1:1//", "q", str(tmp_path / "in.db"), str(tmp_path / "e.db")
    )
    body = sample_body("deal.won", id="evt_no_broker")
    started = time.monotonic()
    assert receiver.receive("POST", body, signed_headers(body, SECRET)).status == 200
    assert time.monotonic() - started < 3
    assert receiver.store.get("evt_no_broker").status is Status.PENDING  # type: ignore[union-attr]
    assert receiver.recover()
    assert effects(tmp_path / "e.db")
