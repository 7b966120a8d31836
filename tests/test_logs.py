"""Structured logs (issue 14, item 5): every record the library logs carries event_id,
event_type, endpoint, handler and status as attributes, escaped like the messages."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest

from iverton_webhooks import MemoryStore, Receiver, Router
from iverton_webhooks._logs import FIELDS
from iverton_webhooks._worker import RetryPolicy
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers


class DownStore(MemoryStore):
    def record(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("store is down")


def attributes(record: logging.LogRecord) -> tuple[Any, ...]:
    return tuple(getattr(record, name) for name in FIELDS)


def test_every_record_carries_the_five_fields(caplog: pytest.LogCaptureFixture) -> None:
    router = Router()

    def books(event: Any) -> None:
        raise RuntimeError("ledger offline")

    router.add(books, "deal.won", name="books")
    receiver = Receiver(
        SECRET,
        router=router,
        store=MemoryStore(),
        runner="inline",
        retry=RetryPolicy(max_attempts=1),
        max_age=timedelta(days=3),
    )
    down = Receiver(SECRET, store=DownStore(), runner="inline", endpoint="second")

    def post(target: Receiver, body: bytes, headers: dict[str, str] | None = None) -> None:
        target.receive("POST", body, headers or signed_headers(body))

    with caplog.at_level(logging.DEBUG, "iverton_webhooks"):
        post(receiver, sample_body("deal.won", id="evt_l1"))  # recorded, failed, dead
        post(receiver, sample_body("deal.won", id="evt_l1"))  # duplicate
        post(receiver, sample_body("deal.lost", id="evt_l2"))  # unhandled
        post(receiver, sample_body("deal.won", id="evt_old", created_at="2020-01-01T00:00:00Z"))
        post(receiver, b"{not json")  # quarantined
        for _ in range(3):  # refused, then the endpoint-at-risk error
            post(receiver, b"{}", {"X-Iverton-Signature": "sha256=" + "0" * 64})
        post(down, sample_body("deal.won", id="evt_l3"))  # 503
        post(receiver, sample_body("deal.won", id="evt_\x1b[2J\r\nFAKE"))
    records = caplog.records
    assert len(records) >= 10
    for record in records:
        assert all(hasattr(record, name) for name in FIELDS), record.getMessage()

    def find(text: str) -> tuple[Any, ...]:
        return attributes(next(r for r in records if text in r.getMessage()))

    assert find("evt_l1 (deal.won) recorded") == ("evt_l1", "deal.won", "default", None, "pending")
    assert find("handler books failed on event evt_l1") == (
        "evt_l1",
        "deal.won",
        "default",
        "books",
        None,
    )
    assert find("evt_l1 (deal.won) is dead") == ("evt_l1", "deal.won", "default", None, "dead")
    assert find("evt_l1 (deal.won): duplicate") == ("evt_l1", "deal.won", "default", None, None)
    assert find("no handler matches event type deal.lost") == (
        "evt_l2",
        "deal.lost",
        "default",
        None,
        "unhandled",
    )
    assert find("older than max_age") == ("evt_old", "deal.won", "default", None, None)
    assert find("signed but unreadable")[2:] == ("default", None, "quarantined")
    assert find("invalid signature")[2] == "default"
    assert find("in a row") == (None, None, "default", None, "401")
    assert find("answering 503") == ("evt_l3", "deal.won", "second", None, None)
    # Foreign text is escaped in the attributes too.
    hostile = [r for r in records if "FAKE" in r.getMessage() and "recorded" in r.getMessage()]
    assert [r.event_id for r in hostile] == ["evt_\\x1b[2J\\r\\nFAKE"]  # type: ignore[attr-defined]
    receiver.close()
    down.close()


def test_records_without_an_event_carry_the_fields_as_none(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, "iverton_webhooks"):
        logging.getLogger("iverton_webhooks").info("start-up line with no event")
    [record] = caplog.records
    assert attributes(record) == (None, None, None, None, None)
