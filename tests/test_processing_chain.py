"""Processing throughput (issue 15): a worker finishes one event and claims the next in
one store transaction, and SQLite keeps its scratch tables in memory."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import Router, SQLiteStore
from iverton_webhooks.inbox.base import Claim, Status, Verdict
from iverton_webhooks.processor import Processor
from iverton_webhooks.runners import ThreadRunner
from iverton_webhooks.samples import sample_body
from iverton_webhooks.worker import Result

CREATED = datetime(2026, 1, 1, tzinfo=timezone.utc)


class TracedStore(SQLiteStore):
    """Counts the transactions: each autocommitted write, and each BEGIN."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.writes: list[str] = []
        super().__init__(*args, **kwargs)

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        if not statement.startswith("SELECT"):
            self.writes.append(statement.split()[0])
        return super()._execute(statement, params)

    def commits(self) -> int:
        """Transactions: explicit ones, and statements run outside one."""
        count, inside = 0, False
        for word in self.writes:
            if word == "BEGIN":
                inside = True
            elif word in ("COMMIT", "ROLLBACK"):
                inside, count = False, count + 1
            elif not inside:
                count += 1
        return count


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TracedStore]:
    made = TracedStore(tmp_path / "inbox.sqlite3")
    yield made
    made.close()


def _record(store: SQLiteStore, *ids: str) -> None:
    for event_id in ids:
        store.record(event_id, "deal.won", CREATED, sample_body("deal.won", id=event_id))


def _router(seen: list[str]) -> Router:
    router = Router()
    router.add(lambda event: seen.append(event.id), "deal.won", name="collect")
    return router


def test_sqlite_scratch_tables_are_in_memory(store: TracedStore) -> None:
    # temp_store=MEMORY (2): with the default each RETURNING and IN list made and
    # deleted a temporary file, most of the cost of a claim or an insert.
    assert store._conn.execute("PRAGMA temp_store").fetchone()[0] == 2


def test_finish_and_claim_is_one_transaction(store: TracedStore) -> None:
    _record(store, "evt_1", "evt_2")
    first = store.claim("evt_1", 30)
    assert first is not None
    store.writes.clear()
    kept, second = store.finish_and_claim(first, {}, Verdict(Status.DONE), "evt_2", 30)
    assert kept is True
    assert second is not None
    assert store.commits() == 1
    assert store.writes[0] == "BEGIN"
    assert store.writes[-1] == "COMMIT"


def test_finish_and_claim_writes_neither_when_the_claim_fails(
    store: TracedStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    _record(store, "evt_1", "evt_2")
    first = store.claim("evt_1", 30)
    assert first is not None

    def broken(*args: Any, **kwargs: Any) -> Claim | None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(store, "claim", broken)
    with pytest.raises(sqlite3.OperationalError):
        store.finish_and_claim(first, {}, Verdict(Status.DONE), "evt_2", 30)
    monkeypatch.undo()
    # Rolled back: the first event still holds its lease, and can be finished again.
    assert store.get("evt_1").status is Status.PROCESSING  # type: ignore[union-attr]
    assert store.finish(first, {}, Verdict(Status.DONE)) is True
    assert store.get("evt_2").status is Status.PENDING  # type: ignore[union-attr]


def test_process_step_claims_the_next_event_with_this_ones_verdict(store: TracedStore) -> None:
    seen: list[str] = []
    processor = Processor(store, _router(seen))
    _record(store, "evt_1", "evt_2", "evt_3")
    ids = iter(["evt_2", "evt_3"])
    store.writes.clear()
    result, claim = processor.process_step("evt_1", then=lambda: next(ids, None))
    assert result is Result.DONE
    assert claim is not None
    assert claim.event.id == "evt_2"
    result, claim = processor.process_step(claim, then=lambda: next(ids, None))
    assert result is Result.DONE
    assert claim is not None
    assert claim.event.id == "evt_3"
    result, claim = processor.process_step(claim, then=lambda: next(ids, None))
    assert (result, claim) == (Result.DONE, None)
    assert seen == ["evt_1", "evt_2", "evt_3"]
    # Three events, four commits: the first claim, then one per verdict (with the next
    # claim inside). One by one it takes six.
    assert store.commits() == 4
    assert store.stats() == {Status.DONE: 3}


def test_process_step_does_not_ask_for_the_next_id_when_it_writes_no_verdict(
    store: TracedStore,
) -> None:
    processor = Processor(store, _router([]))
    asked: list[bool] = []

    def then() -> str | None:
        asked.append(True)
        return None

    assert processor.process_step("evt_missing", then=then) == (Result.SKIPPED, None)
    assert asked == []


def test_thread_runner_chains_queued_events(store: TracedStore) -> None:
    seen: list[str] = []
    release = threading.Event()
    router = Router()

    def collect(event: Any) -> None:
        release.wait(10)  # the first event holds the worker while the rest queue up
        seen.append(event.id)

    router.add(collect, "deal.won", name="collect")
    runner = ThreadRunner(workers=1, poll_interval=3600)
    runner.bind(Processor(store, router))
    ids = [f"evt_{n}" for n in range(20)]
    _record(store, *ids)
    runner.start()
    try:
        for event_id in ids:
            runner.submit(event_id)
        store.writes.clear()
        release.set()
        assert runner.join(10)
    finally:
        runner.close(5)
    assert sorted(seen) == sorted(ids)
    assert store.stats() == {Status.DONE: 20}
    # One by one: about 40 commits (a claim and a verdict each). Chained: one per
    # verdict, with the next claim inside (the poller's first pass may claim nothing
    # and the first claim may land after the clear: a few more at most).
    assert store.commits() <= 23
