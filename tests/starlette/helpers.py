"""Helpers shared by the Starlette / FastAPI tests."""

from __future__ import annotations

import time
from collections.abc import Callable

from iverton_webhooks import Status, Store
from iverton_webhooks.samples import sample_body
from tests.conftest import signed_headers

PATH = "/webhooks/iverton"


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


def status_of(store: Store, event_id: str) -> Status | None:
    event = store.get(event_id)
    return None if event is None else event.status
