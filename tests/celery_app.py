"""A Celery app for the Celery runner tests; the worker runs ``celery -A tests.celery_app``.

Two receivers share the app (and one inbox): the default endpoint with the durability
handlers (and, with ``registry``, the endpoints registered in the inbox), and
``billing`` whose only handler fails under ``RetryPolicy(max_attempts=1)``, so a billing
event that a worker processes with the right processor ends ``dead`` at once (a
stand-in processor would run the wrong handlers or schedule a retry).
"""

from __future__ import annotations

import os

from celery import Celery

from iverton_webhooks import Event, Receiver, RetryPolicy, Router, SQLiteStore
from iverton_webhooks.contrib.celery import CeleryRunner
from tests.durability_app import SECRET, make_router

BILLING_ERROR = "billing handler refuses"


def billing_router() -> Router:
    router = Router()

    @router.on("*")
    def charge(event: Event) -> None:
        raise RuntimeError(BILLING_ERROR)

    return router


def make(
    broker: str, queue: str, inbox: str, effects: str, *, registry: bool = False, **conf: object
) -> tuple[Celery, Receiver, Receiver]:
    app = Celery("iverton_test", broker=broker)
    app.conf.update(
        task_default_queue=queue,
        broker_connection_retry_on_startup=False,
        worker_prefetch_multiplier=1,
        **conf,
    )
    store = SQLiteStore(inbox)
    receiver = Receiver(
        SECRET,
        router=make_router(effects),
        store=store,
        runner=CeleryRunner(app, queue=queue),
        endpoint_registry=registry,
    )
    billing = Receiver(
        SECRET,
        endpoint="billing",
        router=billing_router(),
        store=store,
        retry=RetryPolicy(max_attempts=1),
        runner=CeleryRunner(app, queue=queue),
    )
    return app, receiver, billing


if "IVERTON_CELERY_INBOX" in os.environ:
    app, receiver, billing = make(
        os.environ["IVERTON_TEST_AMQP_URL"],
        os.environ["IVERTON_CELERY_QUEUE"],
        os.environ["IVERTON_CELERY_INBOX"],
        os.environ["IVERTON_CELERY_EFFECTS"],
        registry="IVERTON_CELERY_REGISTRY" in os.environ,
    )
