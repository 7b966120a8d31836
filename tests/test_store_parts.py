"""The store's parts: a store with only the required `Store` part receives and
processes; what needs an optional part refuses it by name; `persist` retries only
`StoreUnavailable`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import ConfigurationError, MemoryStore, Receiver, SQLiteStore, Status
from iverton_webhooks._errors import StoreUnavailable
from iverton_webhooks._worker import persist
from iverton_webhooks.inbox import (
    AnswerCounter,
    CompleteStore,
    Store,
    StoreOperations,
    open_store,
    operations_of,
)
from iverton_webhooks.inbox.base import Claim, HandlerOutcome, StoredEvent, Verdict
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers


class CoreOnly:
    """The required part and nothing else (a MemoryStore does the work)."""

    blocking = False

    def __init__(self) -> None:
        self._inner = MemoryStore()
        self.clock: Callable[[], float] = self._inner.clock

    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes,
               **kw: Any) -> bool:  # fmt: skip
        return self._inner.record(event_id, event_type, created_at, body, **kw)

    def claim(self, event_id: str, lease_seconds: float, **kw: Any) -> Claim | None:
        return self._inner.claim(event_id, lease_seconds, **kw)

    def renew(self, claim: Claim, lease_seconds: float) -> bool:
        return self._inner.renew(claim, lease_seconds)

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        return self._inner.checkpoint(claim, outcomes)

    def finish(
        self, claim: Claim, outcomes: Mapping[str, HandlerOutcome], verdict: Verdict
    ) -> bool:
        return self._inner.finish(claim, outcomes, verdict)

    def due(self, limit: int = 100, **kw: Any) -> list[str]:
        return self._inner.due(limit, **kw)

    def get(self, event_id: str, **kw: Any) -> StoredEvent | None:
        return self._inner.get(event_id, **kw)

    def oldest_due(self, **kw: Any) -> float | None:
        return self._inner.oldest_due(**kw)

    def close(self) -> None:
        self._inner.close()


def post(receiver: Receiver, body: bytes, headers: dict[str, str] | None = None) -> int:
    return receiver.receive("POST", body, headers or signed_headers(body)).status


def test_a_store_with_only_the_required_part_receives_and_processes() -> None:
    store = CoreOnly()
    assert isinstance(store, Store)
    assert not isinstance(store, StoreOperations)
    assert not isinstance(store, AnswerCounter)
    handled: list[str] = []
    receiver = Receiver(SECRET, store=store, runner="inline")
    receiver.router.on("deal.won")(lambda event: handled.append(event.id))
    assert post(receiver, sample_body("deal.won", id="evt_core")) == 200
    assert post(receiver, sample_body("deal.won", id="evt_core")) == 200  # a redelivery
    assert handled == ["evt_core"]
    event = store.get("evt_core")
    assert event is not None
    assert (event.status, event.deliveries) == (Status.DONE, 2)


def test_operations_refuse_a_store_without_them_by_name() -> None:
    receiver = Receiver(SECRET, store=CoreOnly(), runner="inline")
    calls: dict[str, Callable[[], object]] = {
        "stats": receiver.processor.stats,
        "list": receiver.processor.list,
        "replay": lambda: receiver.processor.replay("evt_1"),
        "resolve": lambda: receiver.processor.resolve("evt_1"),
        "prune": receiver.processor.prune,
        "replay_dead": receiver.processor.replay_dead,
    }
    for name, call in calls.items():
        with pytest.raises(ConfigurationError, match="CoreOnly does not implement StoreOperations"):
            call()
        assert name  # every operation, not only the first
    with pytest.raises(ConfigurationError, match=r"missing: list, replay, resolve, prune, stats"):
        operations_of(CoreOnly())


def test_without_the_answer_counter_failed_answers_are_counted_in_this_process(
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver = Receiver(SECRET, store=CoreOnly(), runner="inline")
    body = sample_body("deal.won", id="evt_forged")
    forged = signed_headers(body, secret="whsec_not_the_one_configured_here")
    with caplog.at_level(logging.WARNING, logger="iverton_webhooks"):
        statuses = [post(receiver, body, forged) for _ in range(3)]
    assert statuses == [401, 401, 401]
    assert "3 non-2xx responses in a row" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="iverton_webhooks"):
        assert post(receiver, body) == 200  # a success clears, with nothing to call
    assert "could not count this answer" not in caplog.text


def test_open_store_names_what_a_non_store_lacks() -> None:
    with pytest.raises(ConfigurationError, match=r"is not a Store \(missing: .*record.*claim"):
        open_store(object())  # type: ignore[arg-type]


def test_every_built_in_store_has_every_part(tmp_path: Path) -> None:
    sqlite = SQLiteStore(tmp_path / "inbox.sqlite3")
    try:
        for store in (MemoryStore(), sqlite):
            assert isinstance(store, CompleteStore)
            assert operations_of(store) is store
    finally:
        sqlite.close()


class _Job:
    def describe(self) -> str:
        return "event evt_p"

    def fields(self) -> dict[str, Any]:
        return {}


async def _inline(write: Callable[[], Any]) -> Any:
    return write()


def test_persist_retries_a_store_that_is_unavailable_then_succeeds() -> None:
    attempts: list[int] = []

    def write() -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise StoreUnavailable("down")
        return "saved"

    result = asyncio.run(persist(write, 1.0, _Job(), _inline))  # type: ignore[arg-type]
    assert result == (True, "saved")
    assert len(attempts) == 3


def test_persist_gives_up_when_the_store_stays_unavailable() -> None:
    def write() -> None:
        raise StoreUnavailable("down")

    assert asyncio.run(persist(write, 0.2, _Job(), _inline)) == (False, None)  # type: ignore[arg-type]


def test_persist_does_not_retry_what_is_not_an_outage() -> None:
    attempts: list[int] = []

    def write() -> None:
        attempts.append(1)
        raise ValueError("a bug in the store, not an outage")

    with pytest.raises(ValueError, match="a bug"):
        asyncio.run(persist(write, 1.0, _Job(), _inline))  # type: ignore[arg-type]
    assert len(attempts) == 1
