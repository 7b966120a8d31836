"""Processing after the ack: signals as tracked handlers, thread runner after commit,
stale connections recycled, retries that re-run only what failed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connections
from django.dispatch import receiver
from django.test import Client

from iverton_webhooks import Event, RetryPolicy, Status
from iverton_webhooks.contrib.django import signals
from iverton_webhooks.contrib.django.endpoint import fresh_connections, get_receiver
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.samples import sample_body
from tests.django.dj_helpers import AUTODISCOVERED, db_mark, post
from tests.django.testapp import webhooks as handlers

pytestmark = pytest.mark.django_db(transaction=True)

received: list[tuple[str, str, str]] = []
failing: set[str] = set()


@pytest.fixture
def connected() -> Iterator[None]:
    """Receivers on ``webhook_received`` and ``deal_won`` for the test's duration."""

    @receiver(signals.webhook_received, dispatch_uid="test_every")
    def every(sender: Any, event: Event, **kwargs: Any) -> None:
        assert sender is WebhookEvent
        assert kwargs["signal"] is signals.webhook_received
        received.append(("every", event.type, event.id))
        if "every" in failing:
            raise RuntimeError("every failed")

    @receiver(signals.deal_won, dispatch_uid="test_won")
    def won(sender: Any, event: Event, **kwargs: Any) -> None:
        received.append(("won", event.type, event.data.id))

    received.clear()
    failing.clear()
    yield
    signals.webhook_received.disconnect(dispatch_uid="test_every")
    signals.deal_won.disconnect(dispatch_uid="test_won")


def test_webhooks_module_was_autodiscovered_at_ready() -> None:
    assert AUTODISCOVERED == {"testapp": True}


def test_there_is_one_signal_per_event_type() -> None:
    from iverton_webhooks import EVENT_TYPES

    assert sorted(signals.SIGNALS) == sorted(EVENT_TYPES)
    assert signals.SIGNALS["deal.stage_changed"] is signals.deal_stage_changed


@pytest.mark.usefixtures("connected")
def test_signals_fire_and_each_receiver_is_a_tracked_handler(client: Client) -> None:
    assert post(client, sample_body("deal.won", id="evt_sig")).status_code == 200
    assert post(client, sample_body("contact.created", id="evt_other")).status_code == 200
    assert received == [
        ("every", "deal.won", "evt_sig"),
        ("won", "deal.won", "deal_654mno"),
        ("every", "contact.created", "evt_other"),
    ]
    outcomes = WebhookEvent.objects.get(event_id="evt_sig").outcomes
    assert sorted(outcomes) == [
        f"{__name__}.connected.<locals>.every (webhook_received)",
        f"{__name__}.connected.<locals>.won (deal_won)",
        "tests.django.testapp.webhooks.audit",
        "tests.django.testapp.webhooks.celebrate",
    ]
    assert all(o["ok"] for o in outcomes.values())


@pytest.mark.usefixtures("connected")
def test_a_failing_receiver_is_retried_alone(client: Client, settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {
        **settings.IVERTON_WEBHOOKS,
        "RETRY": RetryPolicy(max_attempts=3, base_delay=0, jitter=0),
    }
    failing.add("every")
    assert post(client, sample_body("deal.won", id="evt_retry")).status_code == 200
    row = WebhookEvent.objects.get(event_id="evt_retry")
    assert row.status == Status.FAILED.value
    assert "every failed" in (row.last_error or "")
    failing.clear()
    get_receiver().recover()
    assert WebhookEvent.objects.get(event_id="evt_retry").status == Status.DONE.value
    # The second pass ran only the receiver that had failed.
    assert [r[0] for r in received] == ["every", "won", "every"]
    assert handlers.calls == [("audit", "evt_retry"), ("celebrate", "evt_retry")]


def test_dead_after_last_attempt_then_replay_runs_only_the_failed_handler(
    client: Client, settings: Any
) -> None:
    settings.IVERTON_WEBHOOKS = {
        **settings.IVERTON_WEBHOOKS,
        "RETRY": RetryPolicy(max_attempts=2, base_delay=0, jitter=0),
    }
    handlers.broken.add("celebrate")
    assert post(client, sample_body("deal.won", id="evt_dead")).status_code == 200
    get_receiver().recover()
    assert WebhookEvent.objects.get(event_id="evt_dead").status == "dead"
    handlers.broken.clear()
    assert get_receiver().replay("evt_dead")
    assert WebhookEvent.objects.get(event_id="evt_dead").status == "done"
    assert handlers.calls == [
        ("audit", "evt_dead"),
        ("celebrate", "evt_dead"),
        ("celebrate", "evt_dead"),
        ("celebrate", "evt_dead"),
    ]


@pytest.mark.usefixtures("connected")
def test_unknown_types_reach_webhook_received_only(client: Client) -> None:
    body = (
        b'{"id":"evt_new_type","type":"quote.sent","created_at":"2024-01-15T10:30:00Z",'
        b'"data":{"id":"q_1"}}'
    )
    assert post(client, body).status_code == 200
    assert received == [("every", "quote.sent", "evt_new_type")]


def test_thread_runner_processes_after_commit_off_the_request_thread(
    client: Client, settings: Any
) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "RUNNER": "thread"}
    threads: list[str] = []

    @handlers.router.on("client.created")
    def where(event: Event) -> None:
        # The ORM works from the worker thread, on its own connection.
        threads.append(threading.current_thread().name)
        assert WebhookEvent.objects.filter(event_id=event.id).exists()

    try:
        for n in range(5):
            assert post(client, sample_body("client.created", id=f"evt_t{n}")).status_code == 200
        assert get_receiver().runner.inner.join(10)  # type: ignore[attr-defined]
    finally:
        handlers.router._handlers["client.created"].clear()
    assert len(threads) == 5
    assert all(name.startswith("iverton") for name in threads)
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"done"}


def test_a_duplicate_posted_while_processing_is_not_processed_twice(
    client: Client, settings: Any
) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "RUNNER": "thread"}
    release = threading.Event()

    @handlers.router.on("client.updated")
    def slow(event: Event) -> None:
        release.wait(10)

    body = sample_body("client.updated", id="evt_slow")
    try:
        assert post(client, body).json() == {"status": "accepted"}
        assert post(client, body).json() == {"status": "duplicate"}
        release.set()
        assert get_receiver().runner.inner.join(10)  # type: ignore[attr-defined]
    finally:
        handlers.router._handlers["client.updated"].clear()
    row = WebhookEvent.objects.get(event_id="evt_slow")
    assert (row.status, row.attempts, row.deliveries) == ("done", 1, 2)
    assert handlers.calls == [("audit", "evt_slow")]


def test_connections_are_recycled_around_each_event_but_not_inside_a_transaction(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed: list[bool] = []
    wrapper = type(connections["default"])
    original = wrapper.close_if_unusable_or_obsolete

    def spy(self: Any) -> None:
        closed.append(self.in_atomic_block)
        original(self)

    monkeypatch.setattr(wrapper, "close_if_unusable_or_obsolete", spy)
    connections["default"].ensure_connection()
    with fresh_connections():
        pass
    assert closed == [False, False]
    from django.db import transaction

    closed.clear()
    with transaction.atomic(), fresh_connections():
        pass
    assert closed == []


@db_mark("postgres")
@pytest.mark.postgres
def test_events_are_stored_and_processed_on_postgresql(client: Client, settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "DATABASE": "postgres"}
    body = sample_body("deal.won", id="evt_pg")
    assert post(client, body).json() == {"status": "accepted"}
    assert post(client, body).json() == {"status": "duplicate"}
    row = WebhookEvent.objects.using("postgres").get(event_id="evt_pg")
    assert (row.status, row.deliveries, bytes(row.body)) == ("done", 2, body)
    assert handlers.calls == [("audit", "evt_pg"), ("celebrate", "evt_pg")]


def test_the_pollers_connection_is_not_kept_for_ever() -> None:
    # The thread runner's poller calls due() every few seconds for the life of the
    # process, outside any request: it must not hold on to a connection that may break.
    left_open: list[bool] = []

    def poll() -> None:
        get_receiver().store.due()
        left_open.append(connections["default"].connection is not None)

    thread = threading.Thread(target=poll)
    thread.start()
    thread.join(10)
    assert left_open == [False]


def test_runner_from_a_dotted_path(client: Client, settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {
        **settings.IVERTON_WEBHOOKS,
        "RUNNER": "iverton_webhooks.runners.InlineRunner",
    }
    assert post(client, sample_body("deal.lost", id="evt_dotted")).status_code == 200
    assert handlers.calls == [("audit", "evt_dotted")]
    runner = get_receiver().runner
    assert type(runner.inner).__name__ == "InlineRunner"  # type: ignore[attr-defined]
