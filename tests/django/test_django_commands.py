"""Management commands and system checks."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command

from iverton_webhooks import RetryPolicy
from iverton_webhooks.contrib.django.endpoint import get_receiver
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET
from tests.django.testapp import webhooks as handlers

pytestmark = pytest.mark.django_db(transaction=True)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def record(event_id: str, event_type: str = "deal.won") -> None:
    """Recorded as the view does, but never handed to a runner: left pending."""
    body = sample_body(event_type, id=event_id)
    envelope = parse_envelope(body)
    get_receiver().store.record(envelope.id, envelope.type, envelope.created_at, body)


def test_worker_once_processes_every_due_event() -> None:
    record("evt_w1")
    record("evt_w2", "contact.created")
    assert "processed 2 events (done: 2)" in run("iverton_webhooks_worker", "--once")
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"done"}
    assert "processed 0 events" in run("iverton_webhooks_worker", "--once")


def test_replay_by_id_and_by_status(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {
        **settings.IVERTON_WEBHOOKS,
        "RETRY": RetryPolicy(max_attempts=1),
    }
    handlers.broken.add("celebrate")
    for event_id in ("evt_r1", "evt_r2", "evt_r3"):
        record(event_id)
    run("iverton_webhooks_worker", "--once")
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"dead"}
    handlers.broken.clear()
    assert "evt_r1: replayed, now done" in run("iverton_webhooks_replay", "evt_r1")
    assert "replayed 2 events" in run("iverton_webhooks_replay", "--status", "dead")
    assert set(WebhookEvent.objects.values_list("status", flat=True)) == {"done"}
    with pytest.raises(CommandError, match="evt_unknown"):
        run("iverton_webhooks_replay", "evt_unknown")
    with pytest.raises(CommandError, match="not both or neither"):
        run("iverton_webhooks_replay")


def test_prune_keeps_recent_and_unfinished_events() -> None:
    record("evt_old")
    record("evt_pending")
    run("iverton_webhooks_worker", "--once")
    record("evt_still_pending")
    WebhookEvent.objects.filter(event_id__in=["evt_old", "evt_still_pending"]).update(
        received_at=WebhookEvent.objects.get(event_id="evt_old").received_at - timedelta(days=30)
    )
    assert "deleted 1 events" in run("iverton_webhooks_prune")
    assert sorted(WebhookEvent.objects.values_list("event_id", flat=True)) == [
        "evt_pending",
        "evt_still_pending",
    ]
    with pytest.raises(CommandError, match="retry span"):
        run("iverton_webhooks_prune", "--older-than-hours", "1")


def test_send_test_posts_a_signed_sample(live_server: Any) -> None:
    url = live_server.url + "/webhooks/iverton/"
    assert '200 {"status":"accepted"}' in run(
        "iverton_webhooks_send_test", "deal.won", "--url", url
    )
    deadline = time.monotonic() + 10
    while not WebhookEvent.objects.filter(status="done").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert WebhookEvent.objects.get().type == "deal.won"
    with pytest.raises(CommandError, match="401"):
        call_command(
            "iverton_webhooks_send_test",
            "deal.won",
            "--url",
            live_server.url + "/webhooks/second/",
            stdout=StringIO(),
        )


def test_send_test_refuses_unknown_types_and_unreachable_urls() -> None:
    with pytest.raises(CommandError):
        run("iverton_webhooks_send_test", "deal.wonn")
    with pytest.raises(CommandError, match="could not reach"):
        run(
            "iverton_webhooks_send_test",
            "deal.won",
            "--url",
            "http://127.0.0.1:9/",
            "--timeout",
            "2",
        )


def ids(settings_value: Any, settings: Any) -> list[str]:
    settings.IVERTON_WEBHOOKS = settings_value
    return sorted(m.id for m in run_checks(tags=["iverton_webhooks"]))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"SECRET": SECRET}, []),
        ({}, ["iverton_webhooks.E001"]),
        ({"SECRET": ""}, ["iverton_webhooks.E001"]),
        ({"SECRET": "whsec_..."}, ["iverton_webhooks.E002"]),
        ({"SECRET": "changeme"}, ["iverton_webhooks.E002"]),
        ({"SECRETS": [SECRET, "whsec_xxx"]}, ["iverton_webhooks.E002"]),
        ({"SECRET": SECRET, "RETENTION": timedelta(hours=12)}, ["iverton_webhooks.E003"]),
        ({"SECRET": SECRET, "MAX_AGE": timedelta(days=7)}, ["iverton_webhooks.E004"]),
        ({"SECRET": SECRET, "MAX_AGE": 3600}, ["iverton_webhooks.E004"]),
        ({"SECRET": SECRET, "MAX_AGE": timedelta(days=3)}, []),
        ({"SECRET": SECRET, "RETENTION": "a week"}, ["iverton_webhooks.E005"]),
        ({"SECRET": SECRET, "RUNNER": "no.such.Runner"}, ["iverton_webhooks.E005"]),
        ({"SECRET": SECRET, "ROUTER": "iverton_webhooks.Receiver"}, ["iverton_webhooks.E005"]),
        ({"SECRET": SECRET, "SECERT": "typo"}, ["iverton_webhooks.W006"]),
        ("whsec_not_a_dict", ["iverton_webhooks.E005"]),
    ],
)
def test_checks(value: Any, expected: list[str], settings: Any) -> None:
    assert ids(value, settings) == expected


def test_missing_secret_error_tells_the_fix(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {}
    (message,) = run_checks(tags=["iverton_webhooks"])
    assert "IVERTON_WEBHOOK_SECRET" in (message.hint or "")
    assert message.is_serious()
