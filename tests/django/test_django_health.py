"""The Django ``iverton_webhooks_stats`` thresholds (same flags, messages and exit codes
as the other command lines) and the admin change list's counts (issue 14, item 3)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from iverton_webhooks.contrib.django.endpoint import get_receiver
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import Status, Verdict
from iverton_webhooks.samples import sample_body

pytestmark = pytest.mark.django_db(transaction=True)
CHANGELIST = "/admin/iverton_webhooks/webhookevent/"


def seed(*dead: str, pending: tuple[str, ...] = (), endpoint: str = "default") -> None:
    store = get_receiver().store
    for event_id in (*dead, *pending):
        body = sample_body("deal.won", id=event_id)
        store.record(event_id, "deal.won", parse_envelope(body).created_at, body, endpoint=endpoint)
    for event_id in dead:
        claim = store.claim(event_id, 60, endpoint=endpoint)
        assert claim is not None
        store.finish(claim, {}, Verdict(Status.DEAD, "boom"))


def stats(*args: str) -> str:
    out = StringIO()
    call_command("iverton_webhooks_stats", *args, stdout=out)
    return out.getvalue()


def refused(*args: str) -> tuple[int, str]:
    with pytest.raises(CommandError) as caught:
        stats(*args)
    return caught.value.returncode, str(caught.value)


def test_stats_thresholds_and_exit_codes() -> None:
    seed("evt_dd1", "evt_dd2")
    lines = stats().splitlines()
    assert lines[0] == "endpoint default: 2 event(s)"
    assert lines[-1].split() == ["oldest-due", "-"]
    assert stats("--max-dead", "2").splitlines()[-1] == "healthy"
    assert refused("--max-dead", "0") == (1, "unhealthy: 2 dead (max 0)")
    assert refused("--max-unhandled", "-1") == (2, "--max-unhandled must not be negative, not -1")
    assert refused("--json", "--max-dead", "1") == (1, "unhealthy: 2 dead (max 1)")
    assert json.loads(stats("--json"))["dead"] == 2


def test_admin_change_list_shows_counts_by_status(admin_client: Client) -> None:
    seed("evt_da1", pending=("evt_dp1", "evt_dp2"))
    seed(pending=("evt_other",), endpoint="other")
    page = admin_client.get(CHANGELIST).content.decode()
    assert (
        "all endpoints: pending 3 · processing 0 · done 0 · unhandled 0 · failed 0 · dead 1" in page
    )
    page = admin_client.get(CHANGELIST, {"endpoint__exact": "other"}).content.decode()
    assert "endpoint other: pending 1 · processing 0" in page
