"""A Celery app whose one handler is newest-only, for the Celery test in
tests/test_newest_only_runners.py; workers run ``celery -A tests.celery_ordering_app``.

Each run of the handler is written, with when it started and ended and in which
process, to a SQLite file all workers share, so the test can check across processes
that no two runs of one deal overlapped and that none went back in time.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from celery import Celery

from iverton_webhooks import Event, Receiver, Router, SQLiteStore
from iverton_webhooks.contrib.celery import CeleryRunner

SECRET = "whsec_ordering_test_secret"


def runs_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS runs (deal TEXT, created_at REAL, event_id TEXT, "
        "started REAL, ended REAL, pid INT)"
    )
    return conn


def make_router(runs: str) -> Router:
    router = Router()
    local = threading.local()

    @router.on("deal.updated", newest_only=True)
    def sync_deal(event: Event) -> None:
        conn = getattr(local, "conn", None) or runs_db(runs)
        local.conn = conn
        started = time.time()
        time.sleep(0.05)  # long enough for another worker to try the same deal
        conn.execute(
            "INSERT INTO runs VALUES (?, ?, ?, ?, ?, ?)",
            (
                event.data.id,
                event.created_at.timestamp(),
                event.id,
                started,
                time.time(),
                os.getpid(),
            ),
        )

    return router


def make(broker: str, queue: str, inbox: str, runs: str) -> tuple[Celery, Receiver]:
    app = Celery("iverton_ordering_test", broker=broker)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=False,
        worker_prefetch_multiplier=1,
    )
    receiver = Receiver(
        SECRET,
        router=make_router(runs),
        store=SQLiteStore(inbox),
        runner=CeleryRunner(app, queue=queue),
    )
    return app, receiver


if "IVERTON_ORDERING_INBOX" in os.environ:
    app, receiver = make(
        os.environ["IVERTON_TEST_AMQP_URL"],
        os.environ["IVERTON_ORDERING_QUEUE"],
        os.environ["IVERTON_ORDERING_INBOX"],
        os.environ["IVERTON_ORDERING_RUNS"],
    )
