"""DjangoStore's edge: a database error from any call surfaces as StoreUnavailable
(the driver's error as its cause), never as Django's own exception."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import OperationalError, connections

from iverton_webhooks._errors import StoreUnavailable
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.inbox.base import Claim, HandlerOutcome, Status, StoredEvent, Verdict
from iverton_webhooks.store_contract import CREATED

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_database_error_from_every_call_is_store_unavailable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = DjangoStore("default")
    store.record("evt_seen", "deal.won", CREATED, b"{}")

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(connections["default"], "cursor", refused)
    event = StoredEvent("evt_1", "deal.won", CREATED, CREATED, b"{}", Status.PROCESSING)
    claim = Claim(event, "token")
    ok = {"h": HandlerOutcome.succeeded(1.0)}
    calls: dict[str, Callable[[], object]] = {
        "record": lambda: store.record("evt_1", "deal.won", CREATED, b"{}"),
        "claim": lambda: store.claim("evt_seen", 30),
        "renew": lambda: store.renew(claim, 30),
        "checkpoint": lambda: store.checkpoint(claim, ok),
        "finish": lambda: store.finish(claim, ok, Verdict(Status.DONE)),
        "due": lambda: store.due(),
        "get": lambda: store.get("evt_seen"),
        "list": lambda: list(store.list(endpoint=None)),
        "replay": lambda: store.replay("evt_seen"),
        "resolve": lambda: store.resolve("evt_seen"),
        "prune": lambda: store.prune(2e9),
        "stats": lambda: store.stats(),
        "oldest_due": lambda: store.oldest_due(),
        "note_failure": lambda: store.note_failure("default", "store_down"),
        "clear_failures": lambda: store.clear_failures("default"),
        "count": lambda: store.count(),
    }
    for name, call in calls.items():
        with pytest.raises(StoreUnavailable) as raised:
            call()
        assert isinstance(raised.value.__cause__, OperationalError), name
