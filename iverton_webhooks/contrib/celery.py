"""Hand processing to Celery workers: ``Receiver(..., runner=CeleryRunner(celery_app))``.

The web process records the event, publishes its id and answers 200; a Celery worker that
imports the same module (so it builds the same Receiver, with the same store and handlers)
processes it. The message carries only the id: the inbox stays the source of truth, so a
lost message, a dead broker or a worker crash costs latency, never the event: the
``iverton_webhooks.recover`` task (run it from celery beat) picks up whatever is due.

>>> from celery import Celery
>>> from iverton_webhooks import Receiver
>>> app = Celery("doc", broker="memory://")
>>> receiver = Receiver(secret="whsec_x", store="memory://", runner=CeleryRunner(app))
>>> sorted(name for name in app.tasks if name.startswith("iverton_webhooks."))
['iverton_webhooks.process', 'iverton_webhooks.recover']
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import Celery

from ..runners import _Bound

if TYPE_CHECKING:
    from ..receiver import Receiver

log = logging.getLogger("iverton_webhooks")


class CeleryRunner(_Bound):
    """Publishes each recorded event id to Celery; registers the tasks that process them."""

    def __init__(self, app: Celery, *, queue: str | None = None, prefix: str = "iverton_webhooks"):
        self.app = app
        self.queue = queue
        self.prefix = prefix
        self._process_task: Any = None

    def bind(self, receiver: Receiver) -> None:
        super().bind(receiver)
        # acks_late: the message is acknowledged after processing, so a worker killed
        # mid-event gets the message redelivered (the claim's lease still prevents two
        # workers from running it at once).
        self._process_task = self.app.task(
            name=f"{self.prefix}.process", acks_late=True, ignore_result=True
        )(_process_with(receiver))
        self.app.task(name=f"{self.prefix}.recover", ignore_result=True)(_recover_with(receiver))

    def submit(self, event_id: str) -> None:
        # retry=False: with the broker down, fail now (the event stays pending and the
        # recover task finds it) instead of holding the sender's request for seconds.
        options: dict[str, Any] = {"retry": False}
        if self.queue:
            options["queue"] = self.queue
        self._process_task.apply_async(args=(event_id,), **options)

    def close(self, timeout: float | None = None) -> None:
        pass


def _process_with(receiver: Receiver) -> Any:
    def process(event_id: str) -> str:
        return receiver.process(event_id).value

    process.__name__ = process.__qualname__ = "process"
    return process


def _recover_with(receiver: Receiver) -> Any:
    def recover(limit: int = 1000) -> dict[str, int]:
        return {result.value: n for result, n in receiver.recover(limit).items()}

    recover.__name__ = recover.__qualname__ = "recover"
    return recover
