"""Helpers shared by the Flask adapter tests (named apart from other folders' helpers:
these folders are not packages, so module names must be unique across them)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from flask import Flask

from iverton_webhooks import Event, Receiver
from iverton_webhooks.contrib.flask import state_of
from iverton_webhooks.samples import sample_body
from tests.conftest import signed_headers

PREFIX = "/webhooks/iverton"


class Seen:
    """What handlers saw, thread-safe: (event id, app name) per run."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, str]] = []
        self.lock = threading.Lock()

    def add(self, event: Event, app_name: str) -> None:
        with self.lock:
            self.runs.append((event.id, app_name))

    @property
    def ids(self) -> list[str]:
        with self.lock:
            return [event_id for event_id, _ in self.runs]


def close_all(app: Flask) -> None:
    for endpoint in state_of(app).endpoints.values():
        endpoint.receiver.close(timeout=5)


def receiver_of(app: Flask, name: str | None = None) -> Receiver:
    return state_of(app).receiver(name)


def signed(
    event_type: str = "contact.created", **overrides: object
) -> tuple[bytes, dict[str, str]]:
    body = sample_body(event_type, **overrides)
    return body, signed_headers(body)


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` (bounded); True once it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()
