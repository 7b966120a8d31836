"""Management commands and system checks."""

from __future__ import annotations

import json
import socket
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.db import connection

from iverton_webhooks import RetryPolicy, Router, Status
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


def refused(*args: str) -> tuple[int, str]:
    """The exit code and message of a command that ends with a CommandError."""
    with pytest.raises(CommandError) as caught:
        run(*args)
    return caught.value.returncode, str(caught.value)


def record(
    event_id: str,
    event_type: str = "deal.won",
    *,
    status: Status = Status.PENDING,
    error: str | None = None,
) -> None:
    """Recorded as the view does, but never handed to a runner: left pending."""
    body = sample_body(event_type, id=event_id)
    created_at = parse_envelope(sample_body(event_type)).created_at
    get_receiver().store.record(event_id, event_type, created_at, body, status=status, error=error)


def statuses() -> set[str]:
    return set(WebhookEvent.objects.values_list("status", flat=True))


def test_worker_once_processes_every_due_event() -> None:
    record("evt_w1")
    record("evt_w2", "contact.created")
    assert run("iverton_webhooks_worker", "--once") == "processed 2 event(s) (done=2)\n"
    assert statuses() == {"done"}
    assert run("iverton_webhooks_worker", "--once") == "processed 0 event(s)\n"


def test_worker_once_drains_more_than_one_batch() -> None:
    for n in range(12):
        record(f"evt_b{n}")
    assert run("iverton_webhooks_worker", "--once", "--batch", "5") == (
        "processed 12 event(s) (done=12)\n"
    )
    assert statuses() == {"done"}


def test_worker_refuses_to_run_without_handlers(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "ROUTER": Router()}
    record("evt_n1")
    code, message = refused("iverton_webhooks_worker", "--once")
    assert code == 2
    assert message.startswith("no handlers: connect a receiver to a webhook signal")
    assert statuses() == {"pending"}


def test_replay_only_requeues_like_the_other_command_lines(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {
        **settings.IVERTON_WEBHOOKS,
        "RETRY": RetryPolicy(max_attempts=1),
    }
    handlers.broken.add("celebrate")
    for event_id in ("evt_r1", "evt_r2", "evt_r3"):
        record(event_id)
    run("iverton_webhooks_worker", "--once")
    assert statuses() == {"dead"}
    handlers.broken.clear()
    handlers.calls.clear()
    assert run("iverton_webhooks_replay", "evt_r1") == (
        "evt_r1: replayed\nreplayed 1 of 1 event(s); the worker will process them\n"
    )
    # Requeued, not processed here (wave 1 ran it inline): the worker runs it.
    assert WebhookEvent.objects.get(event_id="evt_r1").status == "pending"
    assert handlers.calls == []
    assert run("iverton_webhooks_replay", "--dead") == (
        "replayed 2 dead event(s); the worker will process them\n"
    )
    assert statuses() == {"pending"}
    run("iverton_webhooks_worker", "--once")
    assert statuses() == {"done"}

    # Nothing to do is not a failure: exit 0, saying so.
    assert "no dead events: nothing to replay" in run("iverton_webhooks_replay", "--dead")
    assert refused("iverton_webhooks_replay") == (
        2,
        "name event ids, or pass --dead or --unhandled",
    )
    record("evt_r4")
    code, message = refused("iverton_webhooks_replay", "evt_r4", "evt_unknown")
    assert code == 1
    assert message == (
        "replayed 0 of 2 event(s); not replayed: evt_r4 (it is pending), "
        "evt_unknown (no such event)"
    )


def test_events_and_stats_show_quarantined_events_escaped() -> None:
    record("evt_e1")
    hostile = ["evt_cls\x1b[2J", "evt_clip\x1b]52;c;eA==\x07", "evt_crlf\r\nFAKE_line"]
    for event_id in hostile:
        record(event_id, status=Status.QUARANTINED, error="body \x1b]8;;http://x\x1b\\")
    output = run("iverton_webhooks_events")
    for control in ("\x1b", "\x07", "\r"):
        assert control not in output
    header, *lines = output.splitlines()
    assert header.split()[:3] == ["ID", "TYPE", "STATUS"]
    assert len(lines) == 4
    assert "evt_cls\\x1b[2J" in output
    assert sum(line.split()[2] == "quarantined" for line in lines) == 3
    exact = [
        json.loads(line)["id"] for line in run("iverton_webhooks_events", "--json").splitlines()
    ]
    assert sorted(exact) == sorted(["evt_e1", *hostile])
    assert run("iverton_webhooks_events", "--status", "done") == "no events\n"
    assert run("iverton_webhooks_events", "--endpoint", "other") == "no events\n"
    counts = json.loads(run("iverton_webhooks_stats", "--json"))
    assert (counts["pending"], counts["quarantined"], counts["endpoint"]) == (1, 3, "default")
    assert run("iverton_webhooks_stats").splitlines()[0] == "endpoint default: 4 event(s)"


def test_commands_refuse_a_missing_table_and_say_migrate() -> None:
    table = WebhookEvent._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{table}_aside"')
    try:
        for command in ("iverton_webhooks_events", "iverton_webhooks_stats"):
            code, message = refused(command)
            assert code == 2
            assert f"no table {table}" in message
            assert "manage.py migrate" in message
        assert refused("iverton_webhooks_replay", "--dead")[0] == 2
        assert refused("iverton_webhooks_prune")[0] == 2
        assert table not in connection.introspection.table_names()  # not created either
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f'ALTER TABLE "{table}_aside" RENAME TO "{table}"')


def test_prune_keeps_recent_and_unfinished_events(settings: Any) -> None:
    record("evt_old")
    record("evt_pending")
    run("iverton_webhooks_worker", "--once")
    record("evt_still_pending")
    WebhookEvent.objects.filter(event_id__in=["evt_old", "evt_still_pending"]).update(
        received_at=WebhookEvent.objects.get(event_id="evt_old").received_at - timedelta(days=30)
    )
    assert run("iverton_webhooks_prune") == "deleted 1 event(s)\n"
    assert sorted(WebhookEvent.objects.values_list("event_id", flat=True)) == [
        "evt_pending",
        "evt_still_pending",
    ]
    code, message = refused("iverton_webhooks_prune", "--older-than-hours", "1")
    assert code == 2
    assert message.startswith("prune refused: retention 1:00:00 is shorter")


def test_prune_refuses_a_span_inside_max_age(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "MAX_AGE": timedelta(days=3)}
    record("evt_50h")
    run("iverton_webhooks_worker", "--once")
    WebhookEvent.objects.update(
        received_at=WebhookEvent.objects.get().received_at - timedelta(hours=50)
    )
    code, message = refused("iverton_webhooks_prune", "--older-than-hours", "49")
    assert code == 2
    assert "max_age" in message
    assert WebhookEvent.objects.count() == 1
    assert run("iverton_webhooks_prune", "--older-than-hours", "96") == "deleted 0 event(s)\n"


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
    code, message = refused(
        "iverton_webhooks_send_test", "deal.won", "--url", live_server.url + "/webhooks/second/"
    )
    assert (code, "401" in message) == (1, True)


def test_send_test_refuses_unknown_types_and_unreachable_urls() -> None:
    with pytest.raises(CommandError):
        run("iverton_webhooks_send_test", "deal.wonn")
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, message = refused(
        "iverton_webhooks_send_test",
        "deal.won",
        "--url",
        f"http://127.0.0.1:{port}/",
        "--timeout",
        "2",
    )
    assert code == 2
    assert message.startswith(f"could not reach http://127.0.0.1:{port}/: ")
    assert "\n" not in message


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
