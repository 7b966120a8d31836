"""Hand processing to Celery workers: ``Receiver(..., runner=CeleryRunner(celery_app))``.

The web process records the event, queues its id for a publisher thread and answers 200;
a Celery worker that imports the same module (so it builds the same Receivers, with the
same store, handlers and retry policy) processes it with the processor of the event's
endpoint. The message carries only the id and the endpoint: the inbox stays the source
of truth, so a lost message, a dead broker or a worker crash costs latency, never the
event: the ``iverton_webhooks.recover`` task (run it from celery beat) processes
whatever is due.

Publishing never happens on the request thread: with the broker down, kombu holds a
publish for seconds (it retries the connection), longer than the sender waits for the
reply. `CeleryRunner.submit` only puts the id on a bounded queue.

>>> from celery import Celery
>>> from iverton_webhooks import Receiver
>>> app = Celery("doc", broker="memory://")
>>> receiver = Receiver(secret="whsec_doc_example", store="memory://", runner=CeleryRunner(app))
>>> sorted(name for name in app.tasks if name.startswith("iverton_webhooks."))
['iverton_webhooks.process', 'iverton_webhooks.recover']
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue as queues
import threading
import weakref
from typing import Any

from celery import Celery

from .._processor import Processor, processor_of
from .._text import printable
from .._worker import BUSY_DELAY, Result
from ..inbox.base import DEFAULT_ENDPOINT
from ..runners import BaseRunner

__all__ = [
    "CeleryRunner",
]

log = logging.getLogger("iverton_webhooks")

#: Task names registered per app and prefix -> the processors of each endpoint.
_TASKS: weakref.WeakKeyDictionary[Celery, dict[str, _Tasks]] = weakref.WeakKeyDictionary()


class _Tasks:
    """The two tasks of one app and prefix, and the processors they run, by endpoint."""

    def __init__(self, app: Celery, prefix: str) -> None:
        self.processors: dict[str, Processor] = {}

        def process(task: Any, event_id: str, endpoint: str = DEFAULT_ENDPOINT) -> str | None:
            processor = self.processor(endpoint)
            if processor is None:
                return None
            result = processor.process(event_id)
            if result is Result.BUSY:
                task.retry(countdown=BUSY_DELAY)  # raises celery's Retry: the task comes back
            return result.value

        def recover(limit: int | None = None, endpoint: str | None = None) -> dict[str, int]:
            """Process every due event of one endpoint, or of every endpoint this worker knows."""
            if endpoint is None:
                chosen = list(self.processors.values())
            else:
                one = self.processor(endpoint)
                chosen = [] if one is None else [one]
            totals: dict[str, int] = {}
            for processor in chosen:
                for result, n in processor.recover(limit).items():
                    totals[result.value] = totals.get(result.value, 0) + n
            return totals

        process.__qualname__, recover.__qualname__ = "process", "recover"
        # shared=False: a shared task would also be registered in every Celery app created
        # later, running this app's processors there.
        # acks_late: the message is acknowledged after processing, so a worker killed
        # mid-event gets the message redelivered (the claim's lease still prevents two
        # workers from running it at once).
        # bind and max_retries=None: an event whose newest-only handler found its
        # resource busy is retried by Celery's own retry, as often as it takes.
        self.process: Any = app.task(
            name=f"{prefix}.process",
            bind=True,
            max_retries=None,
            acks_late=True,
            ignore_result=True,
            shared=False,
        )(process)
        self.recover: Any = app.task(name=f"{prefix}.recover", ignore_result=True, shared=False)(
            recover
        )

    def processor(self, endpoint: str) -> Processor | None:
        found = processor_of(self.processors.values(), endpoint)
        if found is not None:
            return found
        log.error(
            "Celery task for endpoint %r, but no Receiver with that endpoint was built in "
            "this worker (import the module that builds it); the event stays pending",
            printable(endpoint),
        )
        return None


class CeleryRunner(BaseRunner):
    """Publishes each recorded event id to Celery from a background thread; registers the
    tasks that process them (one pair per app, shared by every endpoint).

    ``max_pending`` bounds the ids waiting to be published; beyond it (or while the broker
    is unreachable) ids are not published and stay pending for the recover task.
    ``retry_after`` is how long the publisher rests after the broker refused it.
    """

    def __init__(
        self,
        app: Celery,
        *,
        queue: str | None = None,
        prefix: str = "iverton_webhooks",
        max_pending: int = 10_000,
        retry_after: float = 5.0,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.app = app
        self.queue = queue
        self.prefix = prefix
        self.max_pending = max_pending
        self.retry_after = retry_after
        self._tasks: _Tasks | None = None
        self._pending: queues.Queue[tuple[str, str] | None] = queues.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def bind(self, processor: Processor) -> None:
        super().bind(processor)
        by_prefix = _TASKS.setdefault(self.app, {})
        tasks = by_prefix.get(self.prefix)
        if tasks is None:
            tasks = by_prefix[self.prefix] = _Tasks(self.app, self.prefix)
        # The latest Receiver built for an endpoint is the one its tasks run.
        tasks.processors[processor.endpoint] = processor
        self._tasks = tasks

    @property
    def process_task(self) -> Any:
        """The Celery task that processes one event id (``.delay(event_id, endpoint)``)."""
        if self._tasks is None:
            raise RuntimeError("runner is not bound to a Receiver")
        return self._tasks.process

    @property
    def recover_task(self) -> Any:
        """The Celery task that processes everything due (schedule it with celery beat)."""
        if self._tasks is None:
            raise RuntimeError("runner is not bound to a Receiver")
        return self._tasks.recover

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        self.start()
        try:
            self._pending.put_nowait((event_id, endpoint or self.processor.endpoint))
        except queues.Full:
            log.warning(
                "event %s: Celery publish queue full, left pending for the recover task",
                printable(event_id),
            )

    def start(self) -> None:
        """Start the publisher thread (idempotent; again in a forked child, whose copy of
        the queue is dropped: those ids are still pending in the store)."""
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            self._pending = queues.Queue(maxsize=self.max_pending)
            self._stop = threading.Event()
            self._thread = threading.Thread(
                target=self._publish, name="iverton-celery-publisher", daemon=True
            )
            self._thread.start()
            self._pid = os.getpid()

    def _publish(self) -> None:
        pending, stop = self._pending, self._stop
        options: dict[str, Any] = {"retry": False}
        if self.queue:
            options["queue"] = self.queue
        while True:
            queued = pending.get()
            if queued is None:
                return
            try:
                self.process_task.apply_async(args=queued, **options)
            except Exception as exc:  # whatever the broker client raises
                left, closing = 1, False
                # The ids queued behind it would each wait as long: leave them all to the
                # recover task, and rest before trying the broker again.
                while True:
                    try:
                        behind = pending.get_nowait()
                    except queues.Empty:
                        break
                    if behind is None:
                        closing = True
                        break
                    left += 1
                log.warning(
                    "Celery broker unreachable (%s): %d event(s) left pending for the recover task",
                    printable(str(exc)),
                    left,
                )
                if closing or stop.wait(self.retry_after):
                    return

    def close(self, timeout: float | None = None) -> None:
        """Publish what is queued (waiting up to ``timeout`` s), then stop the thread."""
        if self._pid != os.getpid() or self._thread is None:
            return
        self._stop.set()
        # If the queue stays full the thread is stuck on the broker: it is a daemon, and
        # the ids it holds are pending in the store.
        with contextlib.suppress(queues.Full):
            self._pending.put(None, timeout=0.1)
        self._thread.join(timeout)
        self._pid = None
