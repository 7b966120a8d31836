"""A Celery app for the Celery runner tests; the worker runs ``celery -A tests.celery_app``."""

from __future__ import annotations

import os

from celery import Celery

from iverton_webhooks import Receiver, SQLiteStore
from iverton_webhooks.contrib.celery import CeleryRunner
from tests.durability_app import SECRET, make_router


def make(broker: str, queue: str, inbox: str, effects: str) -> tuple[Celery, Receiver]:
    app = Celery("iverton_test", broker=broker)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=False,
        broker_connection_timeout=2,
        worker_prefetch_multiplier=1,
    )
    receiver = Receiver(
        SECRET,
        router=make_router(effects),
        store=SQLiteStore(inbox),
        runner=CeleryRunner(app, queue=queue),
    )
    return app, receiver


if "IVERTON_CELERY_INBOX" in os.environ:
    app, receiver = make(
        os.environ["IVERTON_TEST_AMQP_URL"],
        os.environ["IVERTON_CELERY_QUEUE"],
        os.environ["IVERTON_CELERY_INBOX"],
        os.environ["IVERTON_CELERY_EFFECTS"],
    )
