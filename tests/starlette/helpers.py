"""Helpers shared by the Starlette / FastAPI tests."""

from __future__ import annotations

from iverton_webhooks import Status, Store

PATH = "/webhooks/iverton"


def status_of(store: Store, event_id: str) -> Status | None:
    event = store.get(event_id)
    return None if event is None else event.status
