"""Helpers shared by the Flask adapter tests (named apart from other folders' helpers:
these folders are not packages, so module names must be unique across them)."""

from __future__ import annotations

import threading

from flask import Flask

from iverton_webhooks import Event, Receiver
from iverton_webhooks.contrib.flask import state_of

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
