"""Lifecycle signals (issue 14): one Django signal per hook, sent by the receivers
built from the settings; a receiver that raises changes neither reply nor outcome."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from django.test import Client, override_settings

from iverton_webhooks import Receiver, RetryPolicy, Router, Status, sign
from iverton_webhooks._worker import Result
from iverton_webhooks.contrib.django import signals
from iverton_webhooks.contrib.django.endpoint import get_receiver
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.hooks import Hook, Notice
from iverton_webhooks.samples import sample_body, sample_event
from tests.django.dj_helpers import SECRET, URL, post
from tests.django.testapp import webhooks as handlers

pytestmark = pytest.mark.django_db(transaction=True)

got: list[tuple[str, Notice]] = []


@pytest.fixture(autouse=True)
def listening() -> Iterator[None]:
    """A receiver on every lifecycle signal for the test's duration."""

    def make(name: str) -> Any:
        def receive(sender: Any, notice: Notice, **kwargs: Any) -> None:
            assert sender is WebhookEvent
            got.append((name, notice))

        return receive

    keep = []
    for hook, signal in signals.HOOK_SIGNALS.items():
        func = make(hook.value)
        keep.append(func)
        signal.connect(func, dispatch_uid=f"test_{hook.value}")
    got.clear()
    handlers.broken.clear()
    yield
    for hook, signal in signals.HOOK_SIGNALS.items():
        signal.disconnect(dispatch_uid=f"test_{hook.value}")
    handlers.broken.clear()


def taken() -> list[tuple[str, str | None, int | None]]:
    found = [(name, n.event_id, n.status_code) for name, n in got]
    got.clear()
    return found


def test_one_signal_per_hook_named_after_it() -> None:
    assert set(signals.HOOK_SIGNALS) == set(Hook)
    for hook in Hook:
        assert getattr(signals, f"iverton_{hook.value}") is signals.HOOK_SIGNALS[hook]
    assert signals.iverton_dead is signals.HOOK_SIGNALS[Hook.DEAD]


def test_receive_side_signals(client: Client) -> None:
    body = sample_body("deal.won", id="evt_ds1")
    assert post(client, body).status_code == 200
    assert taken() == [("done", "evt_ds1", None), ("received", "evt_ds1", 200)]
    post(client, body)
    assert taken() == [("duplicate", "evt_ds1", 200)]
    assert post(client, body, secret="whsec_some_other_secret_0123").status_code == 401
    assert taken() == [("refused", None, 401)]
    post(client, b'{"id": "evt_dsq", "type": "deal.won", "data": []}')
    assert taken() == [("quarantined", "evt_dsq", 200)]


def test_expired_and_store_down_signals(client: Client) -> None:
    old = json.dumps(sample_event("deal.won", id="evt_dso", created_at="2020-01-01T00:00:00Z"))
    settings = {"SECRET": SECRET, "RUNNER": "inline", "MAX_AGE": 3 * 86400}
    with override_settings(IVERTON_WEBHOOKS=settings):
        assert post(client, old.encode()).status_code == 200
    assert taken() == [("expired", "evt_dso", 200)]
    receiver = get_receiver()
    original = receiver.store.record

    def down(*args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("database gone")

    receiver.store.record = down  # type: ignore[method-assign]
    try:
        assert post(client, sample_body("deal.won", id="evt_dsd")).status_code == 503
    finally:
        receiver.store.record = original  # type: ignore[method-assign]
    assert taken() == [("store_down", "evt_dsd", 503)]


def test_processing_signals_handler_failed_dead_quarantined(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    receiver = get_receiver()
    monkeypatch.setattr(receiver.processor, "retry", RetryPolicy(max_attempts=1))
    handlers.broken.add("celebrate")
    created = datetime.now(timezone.utc)
    receiver.store.record("evt_dsf", "deal.won", created, sample_body("deal.won", id="evt_dsf"))
    assert receiver.process("evt_dsf") is Result.DEAD
    [(failed, notice), (dead, _)] = got
    assert (failed, notice.handler, dead) == (
        "handler_failed",
        "tests.django.testapp.webhooks.celebrate",
        "dead",
    )
    got.clear()
    receiver.store.record("evt_dsq2", "deal.won", created, b"not json")
    assert receiver.process("evt_dsq2") is Result.QUARANTINED
    assert taken() == [("quarantined", "evt_dsq2", None)]


def test_unhandled_signal(monkeypatch: pytest.MonkeyPatch) -> None:
    receiver = get_receiver()
    # The test app handles "*": no handler at all for this one.
    monkeypatch.setattr(receiver.processor, "router", Router())
    created = datetime.now(timezone.utc)
    body = sample_body("deal.lost", id="evt_dsu")
    receiver.store.record("evt_dsu", "deal.lost", created, body)
    assert receiver.process("evt_dsu") is Result.UNHANDLED
    assert taken() == [("unhandled", "evt_dsu", None)]


def test_endpoint_at_risk_signal(client: Client) -> None:
    body = sample_body("deal.won", id="evt_dsr")
    for _ in range(3):
        assert post(client, body, secret="whsec_rotated_on_the_sender_side").status_code == 401
    risk = [n for name, n in got if name == "endpoint_at_risk"]
    assert len(risk) == 1
    assert risk[0].detail is not None
    assert "secrets=[new, old]" in risk[0].detail
    assert post(client, body).status_code == 200  # resets for the next test


def test_a_raising_signal_receiver_changes_nothing(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(sender: Any, notice: Notice, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.iverton_received.connect(broken, dispatch_uid="test_broken")
    signals.iverton_done.connect(broken, dispatch_uid="test_broken")
    try:
        with caplog.at_level(logging.ERROR, "iverton_webhooks"):
            response = client.post(
                URL,
                data=sample_body("deal.won", id="evt_dsb"),
                content_type="application/json",
                HTTP_X_IVERTON_SIGNATURE=sign(sample_body("deal.won", id="evt_dsb"), SECRET),
            )
    finally:
        signals.iverton_received.disconnect(dispatch_uid="test_broken")
        signals.iverton_done.disconnect(dispatch_uid="test_broken")
    assert response.status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_dsb").status == Status.DONE.value
    # The other receivers of the same signals still ran.
    assert [name for name, _ in got] == ["done", "received"]
    logged = [r.getMessage() for r in caplog.records if "raised (ignored)" in r.getMessage()]
    assert len(logged) == 2
    assert all("receiver bug" in line for line in logged)


def test_a_lifecycle_signal_is_wanted_only_while_something_listens(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    hooks = signals.signal_hooks
    assert hooks.wants(Hook.RECEIVED)  # the autouse fixture listens to every signal
    signals.iverton_received.disconnect(dispatch_uid="test_received")
    # Nobody listens: the receiver builds no Notice for each ack.
    assert not hooks.wants(Hook.RECEIVED)
    built: list[Notice] = []
    monkeypatch.setattr(
        "iverton_webhooks._receiver.Notice", lambda *a, **k: built.append(Notice(*a, **k))
    )
    receiver = Receiver(secret=SECRET, store="memory://", runner="inline", hooks=hooks)
    body = sample_body("deal.won", id="evt_quiet")
    assert receiver.receive("POST", body, {"X-Iverton-Signature": sign(body, SECRET)}).status == 200
    assert built == []
    # A plain subscriber is listening too.
    seen: list[Notice] = []
    hooks.add(seen.append, Hook.RECEIVED)
    try:
        assert hooks.wants(Hook.RECEIVED)
    finally:
        hooks.remove(seen.append)
