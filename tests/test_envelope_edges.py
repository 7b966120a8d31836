"""The envelope's edges: a quarantined body keyed by its readable id whatever else it
holds, and the exact first and last ``created_at`` accepted (README's table says them)."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import MemoryStore, Receiver, Status
from iverton_webhooks._errors import InvalidPayload
from iverton_webhooks.events import parse_envelope, parse_event
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers

README = Path(__file__).resolve().parent.parent / "README.md"


def _with_huge_integer(event_id: str) -> bytes:
    # sample_body is JSON; a 5,000-digit integer has more digits than int() takes from
    # text (4,300 by default), so it goes in as text.
    payload = json.loads(sample_body("deal.won", id=event_id))
    payload["data"]["amount"] = "HUGE"
    return json.dumps(payload).replace('"HUGE"', "9" * 5000).encode()


def test_a_body_with_a_5000_digit_integer_is_quarantined_under_its_id() -> None:
    receiver = Receiver(SECRET, store=MemoryStore(), runner="inline")
    body = _with_huge_integer("evt_huge_int")
    reply = receiver.receive("POST", body, signed_headers(body))
    assert reply.status == 200
    assert json.loads(reply.body)["status"] == "quarantined"
    stored = receiver.store.get("evt_huge_int")
    assert stored is not None, "keyed by its sha256, not by the readable id"
    assert stored.status is Status.QUARANTINED
    assert stored.type == "deal.won"
    assert stored.body == body
    assert receiver.store.get(f"sha256:{hashlib.sha256(body).hexdigest()}") is None

    # The sender's retry of the same body is a duplicate of that row, not a second row.
    again = receiver.receive("POST", body, signed_headers(body))
    assert again.status == 200
    assert receiver.store.count() == 1


# The first and last instants accepted, in UTC, and the ones just outside.
FIRST, LAST = "0001-01-02T00:00:00Z", "9999-12-30T23:59:59.999999Z"
BEFORE_FIRST = ["0001-01-01T00:00:00Z", "0001-01-01T23:59:59.999999Z", "0001-01-02T00:30:00+01:00"]
AFTER_LAST = ["9999-12-31T00:00:00Z", "9999-12-31T23:59:59Z", "9999-12-30T23:30:00-01:00"]


@pytest.mark.parametrize("created_at", [FIRST, LAST, "0001-01-02T01:00:00+01:00"])
def test_the_first_and_last_accepted_instants_parse(created_at: str) -> None:
    body = sample_body("deal.won", created_at=created_at)
    expected = datetime.fromisoformat(created_at.replace("Z", "+00:00")).astimezone(timezone.utc)
    assert parse_envelope(body).created_at == expected
    assert parse_event(body).created_at == expected


@pytest.mark.parametrize("created_at", BEFORE_FIRST + AFTER_LAST)
def test_a_day_inside_either_end_of_datetime_is_refused(created_at: str) -> None:
    body = sample_body("deal.won", created_at=created_at)
    with pytest.raises(InvalidPayload, match="created_at"):
        parse_envelope(body)
    with pytest.raises(InvalidPayload, match="created_at"):
        parse_event(body)


@pytest.mark.parametrize(
    ("created_at", "status"),
    [
        (FIRST, "accepted"),
        (LAST, "accepted"),
        (BEFORE_FIRST[0], "quarantined"),
        (AFTER_LAST[0], "quarantined"),
    ],
)
def test_the_receiver_answers_both_ends_as_readme_says(created_at: str, status: str) -> None:
    receiver = Receiver(SECRET, store=MemoryStore(), runner="inline")
    body = sample_body("deal.won", id="evt_edge", created_at=created_at)
    reply = receiver.receive("POST", body, signed_headers(body))
    assert reply.status in (200, 202)
    answer = json.loads(reply.body)["status"]
    if status == "quarantined":
        assert answer == "quarantined"
    else:
        assert answer != "quarantined"
    stored = receiver.store.get("evt_edge")
    assert stored is not None


def test_readme_names_the_accepted_range_exactly() -> None:
    text = README.read_text()
    assert "outside years 1-9999" not in text
    assert "0001-01-02T00:00:00Z" in text
    assert "9999-12-30T23:59:59.999999Z" in text
