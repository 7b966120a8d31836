"""The SQL stores bind no None: a NULL is written into the statement instead.

Python's sqlite3 binds a None only after a failed attribute lookup (an exception built
and dropped per parameter); an ack's insert had five. The values read back are the
same: the store contract checks every column of every transition.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import Status
from iverton_webhooks.inbox.base import Verdict
from iverton_webhooks.inbox.sql import SQLStore
from tests.stores import postgres_store, sqlite_store

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)

SQL_STORES = [
    pytest.param(sqlite_store, id="sqlite"),
    pytest.param(postgres_store, id="postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=SQL_STORES)
def spied(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, list[Any]]]:
    """A SQL store whose every statement's parameters are kept, in order."""
    ticks = itertools.count(1_700_000_000)
    factory: Callable[..., Any] = request.param
    with factory(tmp_path, lambda: float(next(ticks))) as store:
        assert isinstance(store, SQLStore)
        seen: list[Any] = []
        execute = store._execute

        def spy(statement: str, params: Any = ()) -> Any:
            seen.append((statement, list(params)))
            return execute(statement, params)

        store._execute = spy  # type: ignore[method-assign]
        yield store, seen


def test_no_write_of_the_lifecycle_binds_a_none(spied: tuple[Any, list[Any]]) -> None:
    store, seen = spied
    assert store.record("evt_1", "deal.won", CREATED, b"{}")
    assert store.record("evt_q", "deal.won", CREATED, b"x", status=Status.QUARANTINED, error="e")
    assert not store.record("evt_1", "deal.won", CREATED, b"{}")
    claim = store.claim("evt_1", 30)
    assert claim is not None
    assert store.renew(claim, 30)
    assert store.finish(claim, {}, Verdict(Status.FAILED, "boom", store.clock() - 1))
    claim = store.claim("evt_1", 30)
    assert claim is not None
    assert store.finish(claim, {}, Verdict(Status.DEAD, "boom again"))
    assert store.replay("evt_1")
    claim = store.claim("evt_1", 30)
    assert claim is not None
    assert store.finish(claim, {}, Verdict(Status.DONE))
    assert store.replay("evt_1", rerun_all=True)
    claim = store.claim("evt_1", 30)
    assert claim is not None
    assert store.finish(claim, {}, Verdict(Status.DEAD, "third"))
    assert store.resolve("evt_1")

    writes = [(sql, params) for sql, params in seen if not sql.startswith("SELECT")]
    assert len(writes) >= 12
    for sql, params in writes:
        assert None not in params, sql

    # What was written as NULL reads back as nothing, and the rest as written.
    done, quarantined = store.get("evt_1"), store.get("evt_q")
    assert done is not None
    assert quarantined is not None
    assert (done.status, done.lease_until, done.next_attempt_at) == (Status.DONE, None, None)
    assert done.attempts == 1
    assert done.deliveries == 2
    assert done.processed_at is not None
    assert (quarantined.status, quarantined.last_error) == (Status.QUARANTINED, "e")
    assert store.due() == []
