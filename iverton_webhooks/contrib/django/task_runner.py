"""Process events through Django's task framework (``django.tasks``, Django 6.0+; on older
Django the ``django-tasks`` backport)::

    IVERTON_WEBHOOKS = {
        "SECRET": os.environ["IVERTON_WEBHOOK_SECRET"],
        "RUNNER": "iverton_webhooks.contrib.django.task_runner.DjangoTasksRunner",
    }

The web process records the event and, once that commits, enqueues the task
``process_event(endpoint, event_id)`` on the configured backend; a task worker runs it
with the processor of that endpoint (the same settings build the same receivers there).
The task carries only the endpoint and the id: the inbox stays the source of truth, so a
lost task costs latency, never the event. A poller thread in each serving process
enqueues whatever is due (retries, events whose task was lost) every ``poll_interval``
seconds; a task for an event another worker already holds finds it claimed and returns.

With the ``ImmediateBackend`` the task runs as it is enqueued, i.e. before the reply, as
``"inline"`` does: for tests. This module is named so that no ``<app>.tasks``
autodiscovery (Celery's, ...) imports it by accident; it imports the task framework only
when a runner is made or the task is looked up.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from typing import Any

from ..._errors import ConfigurationError
from ..._processor import Processor, processor_of
from ..._text import printable
from ...runners import BaseRunner

__all__ = ["DjangoTasksRunner", "process_event"]

log = logging.getLogger("iverton_webhooks")

#: Endpoint name -> the processor of the receiver that last bound a runner for it.
_PROCESSORS: dict[str, Processor] = {}


def tasks_framework() -> Any:
    """``django.tasks`` (Django 6.0+), else the ``django_tasks`` backport."""
    for name in ("django.tasks", "django_tasks"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ConfigurationError(
        "DjangoTasksRunner needs Django's task framework: Django 6.0 or later "
        "(django.tasks), or `pip install django-tasks` on older Django"
    )


def process_event(endpoint: str, event_id: str) -> str:
    """The task: process one stored event of ``endpoint``; returns the result's name."""
    return processor_for(endpoint).process(event_id).value


# The task object is built on first use: it needs the settings (its backend is checked
# when it is made). Django finds it by this module's path and the function's name.
_process_event_function = process_event
del process_event
_task_lock = threading.Lock()


def __getattr__(name: str) -> Any:
    if name != "process_event":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _task_lock:
        task = globals().get("process_event")
        if task is None:
            task = tasks_framework().task()(_process_event_function)
            globals()["process_event"] = task
    return task


def processor_for(endpoint: str) -> Processor:
    """The processor of ``endpoint`` in this process: a bound runner's, else that of the
    endpoint built from the settings or the URLconf (a task worker that serves nothing)."""
    found = _PROCESSORS.get(endpoint)
    if found is not None:
        return found
    from django.urls import get_resolver

    from . import endpoint as endpoints

    get_resolver().url_patterns  # noqa: B018 - its webhook_path(...) endpoints exist now
    candidates = [endpoints.default_endpoint, *endpoints._endpoints]
    found = processor_of((c.receiver.processor for c in candidates), endpoint)
    if found is not None:
        return found
    raise LookupError(f"no webhook endpoint named {endpoint!r} in this process")


class DjangoTasksRunner(BaseRunner):
    """Enqueue a ``django.tasks`` task per recorded event.

    ``backend``, ``queue_name``, ``priority``: where the task goes (default: the task
    framework's defaults). ``poll_interval``: seconds between enqueues of due events
    (None: no poller; then run ``manage.py iverton_webhooks_worker --once`` from cron).
    """

    def __init__(
        self,
        *,
        backend: str | None = None,
        queue_name: str | None = None,
        priority: int | None = None,
        poll_interval: float | None = 60.0,
    ) -> None:
        tasks_framework()  # a missing framework is a configuration error, said now
        chosen = {"backend": backend, "queue_name": queue_name, "priority": priority}
        self.options = {key: value for key, value in chosen.items() if value is not None}
        self.poll_interval = poll_interval
        self._pid: int | None = None
        self._stop = threading.Event()

    def bind(self, processor: Processor) -> None:
        super().bind(processor)
        _PROCESSORS[processor.endpoint] = processor

    @property
    def task(self) -> Any:
        """The task, on this runner's backend and queue."""
        task = importlib.import_module(__name__).process_event
        return task.using(**self.options) if self.options else task

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        self.task.enqueue(endpoint or self.processor.endpoint, event_id)

    def start(self) -> None:
        """Start the poller in this process (idempotent; afresh in a forked child)."""
        if self.poll_interval is None or self._pid == os.getpid():
            return
        self._pid = os.getpid()
        self._stop = threading.Event()
        threading.Thread(target=self._poll, name="iverton-tasks-poller", daemon=True).start()

    def _poll(self) -> None:
        stop, interval = self._stop, self.poll_interval or 60.0
        while not stop.is_set():
            try:
                for endpoint, event_id in self.processor.due(500):
                    self.submit(event_id, endpoint)
            except Exception:
                log.exception("enqueueing due events failed; trying again in %.0f s", interval)
            stop.wait(interval)

    def close(self, timeout: float | None = None) -> None:
        self._stop.set()
        self._pid = None

    def __repr__(self) -> str:
        return f"<DjangoTasksRunner {printable(self.options)}>"
