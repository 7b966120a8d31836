"""The store contract: the tests every inbox store passes, for the stores in this
package and for yours.

The processor's guarantees (each event recorded once, one worker at a time, a lost
lease cannot overwrite a result, receivers on different endpoints never see each
other's events, no stored row can block the inbox) rest on what a store does. This
module holds those checks as one pytest class. A store proves itself by subclassing it
in its own test module and saying how to build a fresh, empty store::

    # tests/test_my_store.py
    from iverton_webhooks.testing import StoreContract

    class TestMyStore(StoreContract):
        def make_store(self, clock, tmp_path):
            # A new, empty store that reads the time from ``clock`` (a callable
            # returning epoch seconds; the tests move it forward by hand).
            return MyStore("my://test", clock=clock)

Three more hooks are optional, each described on the class: `cleanup_store` (after each
test), `write_unreadable_row` and `make_unreachable_store`.

Run it with plain ``pytest``: nothing beyond pytest itself is needed. The class name
does not start with ``Test``, so pytest collects only your subclass. For full control,
override the ``store`` fixture instead of ``make_store`` (it must yield a store whose
``clock`` is the ``clock`` fixture).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, TypeVar

import pytest

from ._errors import ConfigurationError, StoreUnavailable, WebhookError
from .inbox.base import (
    CLAIMABLE,
    FINISHED,
    AnswerCounter,
    Claim,
    CompleteStore,
    EndpointRecord,
    EndpointRegistry,
    EndpointSecret,
    HandlerOutcome,
    MarkAnswer,
    MarkKey,
    ResourceMarks,
    Status,
    Store,
    StoredEvent,
    StoreOperations,
    Verdict,
)

__all__ = ["ANY_TEXT", "EDGE_VALUES", "ContractClock", "StoreContract"]

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)
START = 1_700_000_000.0
DONE = Verdict(Status.DONE)
KEY = MarkKey("default", "deal/d_1", "h")
_T = TypeVar("_T")


class ContractClock:
    """A clock the tests move by hand: ``clock()`` is ``clock.now``."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


#: (label, event id, event type, created_at, body): values the envelope accepts or a
#: quarantined body may carry. Every store must record, claim, finish and list each.
EDGE_VALUES: list[tuple[str, str, str, datetime, bytes]] = [
    ("long type", "evt_long_type", "t" * 255, CREATED, b"{}"),
    ("long id", "e" * 255, "deal.won", CREATED, b"{}"),
    ("unicode", "évt_☃_𝄞_中文", "déal.wön_☃", CREATED, '{"k":"☃"}'.encode()),
    ("crlf", "evt_a\r\nInjected: 1", "deal.won\r\n", CREATED, b"{}"),
    ("controls", "evt_\x01\x07\x1b[2J\x1b]52;c;eA==\x07\x7f", "deal.\x1b[31mwon", CREATED, b"{}"),
    ("year 1", "evt_year_1", "deal.won", datetime(1, 1, 1, tzinfo=timezone.utc), b"{}"),
    (
        "year 9999",
        "evt_year_9999",
        "deal.won",
        datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc),
        b"{}",
    ),
    ("nul body", "evt_nul_body", "deal.won", CREATED, b'{"a":"\x00"}\x00\x00'),
    ("non-utf8 body", "evt_latin1", "deal.won", CREATED, b"\xff\xfe\x80caf\xe9\x00"),
    ("empty body", "sha256:" + "0" * 64, "", CREATED, b""),
    # What the JSON parser makes of "\ud83d" and "\u0000" in a signed body.
    ("lone surrogate", "evt_\ud83d", "deal.\udc00won\ud83d", CREATED, b'{"id":"\\ud83d"}'),
    ("nul", "evt_a\x00b", "deal.won\x00", CREATED, b'{"id":"evt_a\\u0000b"}'),
    ("escape marker", 'json:"evt_1"', 'json:"x', CREATED, b"{}"),
]

#: (label, text): strings the JSON parser can produce that not every backend can hold
#: as they are. Every store must keep each, exactly, in every text field: event ids,
#: types, endpoints, handler names, handler errors, verdict errors, quarantine reasons.
ANY_TEXT: list[tuple[str, str]] = [
    ("plain", "evt_plain"),
    ("lone high surrogate", "a\ud83d"),
    ("lone low surrogate", "\udc00z"),
    ("nul", "a\x00b"),
    ("only nul", "\x00"),
    ("mixed", "\x00\ud83d\u2603\U0001d11e\r\n\x1b[2J\u202e"),
    ("escape marker", 'json:"a"'),
    ("marker, not escaped", 'json:"not json'),
    ("backslashes", "C:\\path\\u0000"),
]


def _ok(name: str = "h", at: float = 0.0) -> dict[str, HandlerOutcome]:
    return {name: HandlerOutcome(ok=True, at=at)}


def _together(count: int, work: Callable[[int], _T]) -> list[_T]:
    """``work(0)`` ... ``work(count - 1)``, each in its own thread, all let go at once:
    their results, in order. An error in a thread fails the test."""
    start = threading.Barrier(count, timeout=30)
    results: dict[int, _T] = {}
    errors: list[BaseException] = []

    def run(n: int) -> None:
        try:
            start.wait()
            results[n] = work(n)
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return [results[n] for n in range(count)]


class StoreContract:
    """Every store-contract test. Subclass it (with a name starting ``Test``) and
    implement `make_store`; see the module docstring."""

    # -- hooks ---------------------------------------------------------------------

    def make_store(self, clock: ContractClock, tmp_path: Path) -> Store:
        """Return a new, empty store whose ``clock`` is ``clock``. Required."""
        raise NotImplementedError(f"{type(self).__name__} must implement make_store()")

    def cleanup_store(self, store: Store) -> None:
        """Called after each test; the default closes the store."""
        store.close()

    def write_unreadable_row(self, store: Store, event_id: str) -> None:
        """Write a pending, due event on the default endpoint that the store cannot read
        back (e.g. ``created_at`` far outside Python's datetime range), bypassing the
        store's own methods. Optional: the test using it is skipped without it."""
        pytest.skip(f"{type(self).__name__} does not implement write_unreadable_row()")

    def make_unreachable_store(self, clock: ContractClock, tmp_path: Path) -> Store:
        """Return a store whose backend cannot be reached: a server on a closed port, a
        file that cannot be opened. Building it may already raise `StoreUnavailable`, and
        every call on it must, never the driver's own exception. Optional: the test
        using it is skipped without it."""
        pytest.skip(f"{type(self).__name__} does not implement make_unreachable_store()")

    # -- fixtures ------------------------------------------------------------------

    @pytest.fixture
    def clock(self) -> ContractClock:
        return ContractClock()

    @pytest.fixture
    def store(self, clock: ContractClock, tmp_path: Path) -> Iterator[CompleteStore]:
        made = self.make_store(clock, tmp_path)
        try:
            # The contract covers every part: a store without the optional ones
            # (StoreOperations, AnswerCounter) cannot prove itself with it.
            for part in (Store, StoreOperations, AnswerCounter):
                assert isinstance(made, part), f"{made!r} does not implement {part.__name__}"
            assert isinstance(made, CompleteStore)
            yield made
        finally:
            self.cleanup_store(made)

    # -- helpers -------------------------------------------------------------------

    @staticmethod
    def record(store: Store, event_id: str = "evt_1", body: bytes = b"{}", **kw: Any) -> bool:
        return store.record(event_id, "deal.won", CREATED, body, **kw)

    @staticmethod
    def claimed(store: Store, event_id: str = "evt_1", lease: float = 30, **kw: Any) -> Claim:
        claim = store.claim(event_id, lease, **kw)
        assert claim is not None, f"{event_id} was not claimable"
        return claim

    @staticmethod
    def status(store: Store, event_id: str = "evt_1", **kw: Any) -> Status | None:
        event = store.get(event_id, **kw)
        return None if event is None else event.status

    @staticmethod
    def stored(store: Store, event_id: str = "evt_1", **kw: Any) -> StoredEvent:
        event = store.get(event_id, **kw)
        assert event is not None, f"{event_id} is not stored"
        return event

    def claim_new(self, store: Store, event_id: str = "evt_1", **kw: Any) -> Claim:
        self.record(store, event_id, **kw)
        return self.claimed(store, event_id, **kw)

    def finished(
        self, store: Store, event_id: str = "evt_1", verdict: Verdict = DONE, **kw: Any
    ) -> None:
        assert store.finish(self.claimed(store, event_id, **kw), {}, verdict)

    def finish_new(self, store: Store, event_id: str = "evt_1", verdict: Verdict = DONE) -> None:
        self.record(store, event_id)
        self.finished(store, event_id, verdict)

    # -- recording -----------------------------------------------------------------

    def test_record_is_insert_if_absent_and_counts_deliveries(self, store: CompleteStore) -> None:
        assert self.record(store, body=b"first") is True
        assert self.record(store, body=b"second") is False
        event = self.stored(store)
        assert (event.body, event.deliveries, event.status) == (b"first", 2, Status.PENDING)
        assert (event.endpoint, event.attempts, event.unreadable) == ("default", 0, None)
        assert event.created_at == CREATED
        assert event.received_at.timestamp() == pytest.approx(START)
        assert store.count() == 1
        assert store.get("evt_missing") is None
        assert store.claim("evt_missing", 30) is None

    def test_concurrent_records_of_one_id_store_it_once(self, store: CompleteStore) -> None:
        def record_all(_: int) -> list[bool]:
            return [self.record(store, f"evt_{n}") for n in range(200)]

        results = [outcome for batch in _together(4, record_all) for outcome in batch]
        assert results.count(True) == 200
        assert len(results) == 800
        assert store.count() == 200
        assert {e.deliveries for e in store.list(limit=1000)} == {4}

    # -- claiming and leases ----------------------------------------------------------

    def test_only_one_claim_at_a_time_and_lease_expiry_frees_it(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        self.record(store)
        assert store.due() == ["evt_1"]
        first = self.claimed(store)
        assert first.event.attempts == 1
        assert first.event.status is Status.PROCESSING
        assert store.claim("evt_1", 30) is None
        assert store.due() == []
        clock.advance(31)
        assert store.due() == ["evt_1"]
        second = self.claimed(store)
        assert second.event.attempts == 2
        # The first worker woke up late: its token no longer counts.
        assert store.finish(first, _ok(), DONE) is False
        assert store.checkpoint(first, _ok("late")) is False
        assert store.finish(second, _ok(), DONE) is True
        assert self.status(store) is Status.DONE
        assert "late" not in self.stored(store).outcomes

    def test_renew_extends_the_lease_and_fails_once_it_is_lost(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        claim = self.claim_new(store)
        clock.advance(20)
        assert store.renew(claim, 30) is True
        clock.advance(20)  # 40 s after the claim: past the first lease, within the renewed one
        assert store.due() == []
        assert store.claim("evt_1", 30) is None
        lease_until = self.stored(store).lease_until
        assert lease_until is not None
        assert lease_until.timestamp() == pytest.approx(START + 50)
        clock.advance(11)
        assert store.due() == ["evt_1"]
        taken = self.claimed(store)
        assert store.renew(claim, 30) is False
        assert store.renew(taken, 30) is True

    def test_due_is_soonest_first_and_limited(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        for n in range(3):
            self.record(store, f"evt_{n}")
            clock.advance(1)
        assert store.due() == ["evt_0", "evt_1", "evt_2"]
        assert store.due(limit=2) == ["evt_0", "evt_1"]

    def test_oldest_due_is_the_earliest_due_time_of_this_endpoint(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        assert store.oldest_due() is None
        first = clock()
        self.record(store, "evt_0")
        clock.advance(5)
        self.record(store, "evt_1")
        self.record(store, "evt_other", endpoint="other")
        assert store.oldest_due() == pytest.approx(first)
        self.claimed(store, "evt_0", lease=30)  # held: not due until its lease runs out
        assert store.oldest_due() == pytest.approx(first + 5)
        clock.advance(31)
        assert store.oldest_due() == pytest.approx(first + 35)  # the lease's end
        assert store.oldest_due(endpoint="nobody") is None

    def test_failed_answers_count_per_endpoint_until_cleared(self, store: CompleteStore) -> None:
        assert [store.note_failure("default", "signature") for _ in range(3)] == [1, 2, 3]
        assert store.note_failure("other", "store_down") == 1
        store.clear_failures("default")
        store.clear_failures("nobody")  # nothing to clear is fine
        assert store.note_failure("default", "signature") == 1
        assert store.note_failure("other", "store_down") == 2

    # -- finishing ---------------------------------------------------------------

    @pytest.mark.parametrize(
        "status", [s for s in Status if s not in (Status.PENDING, Status.PROCESSING)], ids=str
    )
    def test_finish_with_each_verdict(
        self, store: CompleteStore, clock: ContractClock, status: Status
    ) -> None:
        claim = self.claim_new(store)
        clock.advance(1)
        retry_at = clock() + 100 if status is Status.FAILED else None
        error = None if status in (Status.DONE, Status.UNHANDLED) else f"why {status}"
        assert store.finish(claim, _ok(at=clock()), Verdict(status, error, retry_at)) is True
        event = self.stored(store)
        assert (event.status, event.last_error, event.attempts) == (status, error, 1)
        assert event.lease_until is None
        assert event.outcomes == _ok(at=clock())
        if status in FINISHED:
            assert event.processed_at is not None
            assert event.processed_at.timestamp() == pytest.approx(clock())
            assert event.next_attempt_at is None
        else:
            assert event.processed_at is None
            assert event.next_attempt_at is not None
            assert event.next_attempt_at.timestamp() == pytest.approx(clock() + 100)
        assert store.due() == []
        clock.advance(3600)  # past the retry time, and long past the lease
        assert store.due() == ([] if status in FINISHED else ["evt_1"])
        assert (store.claim("evt_1", 30) is None) is (status in FINISHED)
        # The lease is gone with the verdict: the token cannot write again.
        assert store.finish(claim, {}, DONE) is False

    def test_outcomes_merge_across_checkpoint_failure_and_retry(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        claim = self.claim_new(store)
        assert store.checkpoint(claim, {"a": HandlerOutcome(ok=True, at=1.0)})
        failed_b = {"b": HandlerOutcome(ok=False, error="boom", at=1.0)}
        assert store.finish(claim, failed_b, Verdict(Status.FAILED, "b: boom", clock() + 100))
        failed = self.stored(store)
        assert (failed.status, failed.last_error) == (Status.FAILED, "b: boom")
        assert failed.outcomes == {"a": HandlerOutcome(ok=True, at=1.0), **failed_b}
        assert store.claim("evt_1", 30) is None  # not due yet
        clock.advance(101)
        retry = self.claimed(store)
        assert retry.event.succeeded_handlers == {"a"}
        assert store.finish(retry, _ok("b", at=2.0), DONE)
        done = self.stored(store)
        # b's success replaces its failure entirely: no error, no old time.
        assert done.outcomes == {"a": HandlerOutcome(ok=True, at=1.0), **_ok("b", at=2.0)}
        assert done.last_error is None
        assert done.processed_at is not None

    # -- replay, resolve, list, prune, stats ------------------------------------------

    def test_dead_replay_and_resolve(self, store: CompleteStore) -> None:
        outcomes = {"a": HandlerOutcome(ok=True), "b": HandlerOutcome(ok=False, error="x")}
        claim = self.claim_new(store, "evt_dead")
        assert store.finish(claim, outcomes, Verdict(Status.DEAD, "b: x"))
        self.record(store, "evt_other")
        assert [e.id for e in store.list(status="dead")] == ["evt_dead"]
        assert "evt_dead" not in store.due()
        assert store.replay("evt_other") is False  # pending: nothing to replay
        assert store.replay("evt_missing") is False
        assert store.replay("evt_dead") is True
        replayed = self.stored(store, "evt_dead")
        assert (replayed.status, replayed.attempts) == (Status.PENDING, 0)
        assert replayed.succeeded_handlers == {"a"}
        assert "evt_dead" in store.due()
        self.finished(store, "evt_dead", Verdict(Status.DEAD, "still"))
        assert store.resolve("evt_dead") is True
        assert self.status(store, "evt_dead") is Status.DONE
        assert store.resolve("evt_other") is False
        assert store.resolve("evt_dead") is False  # done is not resolvable
        assert store.replay("evt_dead", rerun_all=True) is True
        assert self.stored(store, "evt_dead").outcomes == {}

    def test_a_processing_event_is_neither_replayed_nor_resolved(
        self, store: CompleteStore
    ) -> None:
        self.claim_new(store)
        assert store.replay("evt_1") is False
        assert store.resolve("evt_1") is False
        assert self.status(store) is Status.PROCESSING

    def test_unhandled_is_finished_replayable_and_resolvable(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        for event_id in ("evt_u1", "evt_u2"):
            self.finish_new(store, event_id, Verdict(Status.UNHANDLED))
        assert store.due() == []
        assert [e.id for e in store.list(status=Status.UNHANDLED)] == ["evt_u2", "evt_u1"]
        assert store.replay("evt_u1") is True
        assert store.due() == ["evt_u1"]
        assert store.resolve("evt_u2") is True
        assert self.status(store, "evt_u2") is Status.DONE
        self.finish_new(store, "evt_u3", Verdict(Status.UNHANDLED))
        clock.advance(10)
        assert store.prune(clock()) == 2  # evt_u2 (done) and evt_u3 (unhandled)
        assert store.get("evt_u1") is not None

    def test_quarantined_record_list_replay_resolve_and_prune(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        why = "body is not JSON"
        assert self.record(
            store, "sha256:ab", b"\xffnot json", status=Status.QUARANTINED, error=why
        )
        assert self.record(store, "sha256:ab", b"\xffnot json", status=Status.QUARANTINED) is False
        event = self.stored(store, "sha256:ab")
        assert (event.status, event.last_error, event.deliveries) == (Status.QUARANTINED, why, 2)
        assert event.body == b"\xffnot json"
        assert event.processed_at is not None
        assert store.due() == []
        assert store.claim("sha256:ab", 30) is None
        assert [e.id for e in store.list(status="quarantined")] == ["sha256:ab"]
        assert store.stats() == {Status.QUARANTINED: 1}
        # Replay re-parses it: back to pending, due now.
        assert store.replay("sha256:ab") is True
        assert store.due() == ["sha256:ab"]
        self.finished(store, "sha256:ab", Verdict(Status.QUARANTINED, why))
        assert self.status(store, "sha256:ab") is Status.QUARANTINED
        assert self.record(store, "sha256:cd", b"?", status=Status.QUARANTINED, error=why)
        assert store.resolve("sha256:cd") is True
        assert self.status(store, "sha256:cd") is Status.DONE
        clock.advance(10)
        assert store.prune(clock() - 5) == 2
        assert store.count() == 0

    def test_list_filters_newest_first(self, store: CompleteStore, clock: ContractClock) -> None:
        for n in range(5):
            store.record(f"evt_{n}", "deal.won" if n % 2 else "contact.created", CREATED, b"{}")
            clock.advance(1)
        assert [e.id for e in store.list()] == ["evt_4", "evt_3", "evt_2", "evt_1", "evt_0"]
        assert [e.id for e in store.list(event_type="deal.won")] == ["evt_3", "evt_1"]
        assert [e.id for e in store.list(status=Status.PENDING, limit=2)] == ["evt_4", "evt_3"]
        assert list(store.list(status="done")) == []

    def test_prune_deletes_only_finished_events_received_before_the_cutoff(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        self.finish_new(store, "evt_old_done")
        self.record(store, "evt_old_pending")
        self.finish_new(store, "evt_old_failed", Verdict(Status.FAILED, "x", clock() + 1))
        clock.advance(1000)
        self.finish_new(store, "evt_new_done")
        cutoff = clock() - 500
        assert store.prune(cutoff) == 1
        assert store.get("evt_old_done") is None
        assert store.get("evt_old_pending") is not None
        assert store.get("evt_old_failed") is not None
        assert store.get("evt_new_done") is not None
        assert self.record(store, "evt_old_done") is True  # forgotten ids are new again

    def test_retention_guard_on_prune(self, store: CompleteStore) -> None:
        # The guard is the processor's, run here so every store's suite includes it.
        from ._processor import Processor

        # Both received at the contract clock's start, long before the wall clock's now.
        self.record(store, "evt_pending")
        self.finish_new(store, "evt_old_done")
        processor = Processor(store)
        with pytest.raises(ConfigurationError, match="retry span"):
            processor.prune(older_than=timedelta(hours=2))
        assert store.count() == 2
        assert processor.prune() == 1
        assert store.get("evt_pending") is not None
        assert store.get("evt_old_done") is None

    def test_stats_count_each_status_and_leave_out_empty_ones(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        assert store.stats() == {}
        self.finish_new(store, "evt_0")
        self.finish_new(store, "evt_1")
        self.finish_new(store, "evt_2", Verdict(Status.DEAD, "x"))
        self.finish_new(store, "evt_3", Verdict(Status.FAILED, "x", clock() + 9))
        self.claim_new(store, "evt_4")
        self.record(store, "evt_5")
        self.record(store, "sha256:q", status=Status.QUARANTINED, error="bad")
        assert store.stats() == {
            Status.DONE: 2,
            Status.DEAD: 1,
            Status.FAILED: 1,
            Status.PROCESSING: 1,
            Status.PENDING: 1,
            Status.QUARANTINED: 1,
        }
        assert store.count() == 7

    # -- endpoints ------------------------------------------------------------------

    def test_endpoints_are_isolated(self, store: CompleteStore, clock: ContractClock) -> None:
        assert self.record(store, "evt_1", b"a", endpoint="a") is True
        assert self.record(store, "evt_1", b"b", endpoint="b") is True  # same id, other endpoint
        assert self.record(store, "evt_only_b", endpoint="b") is True
        assert store.count() == 3
        assert store.count(endpoint="a") == 1
        assert store.get("evt_1") is None  # neither is on the default endpoint
        assert self.stored(store, endpoint="a").body == b"a"
        assert self.stored(store, endpoint="b").endpoint == "b"
        assert store.due() == []
        assert store.due(endpoint="a") == ["evt_1"]
        assert sorted(store.due(endpoint="b")) == ["evt_1", "evt_only_b"]
        assert store.claim("evt_only_b", 30, endpoint="a") is None
        claim_a = self.claimed(store, "evt_1", endpoint="a")
        assert claim_a.event.endpoint == "a"
        assert self.status(store, "evt_1", endpoint="b") is Status.PENDING
        assert store.finish(claim_a, {}, Verdict(Status.DEAD, "x")) is True
        assert self.status(store, "evt_1", endpoint="b") is Status.PENDING
        assert [e.endpoint for e in store.list(endpoint="a")] == ["a"]
        assert {(e.endpoint, e.id) for e in store.list(endpoint=None)} == {
            ("a", "evt_1"),
            ("b", "evt_1"),
            ("b", "evt_only_b"),
        }
        assert list(store.list()) == []
        assert store.stats(endpoint="a") == {Status.DEAD: 1}
        assert store.stats(endpoint="b") == {Status.PENDING: 2}
        assert store.stats(endpoint=None) == {Status.DEAD: 1, Status.PENDING: 2}
        assert store.replay("evt_1", endpoint="b") is False  # pending there
        assert store.resolve("evt_1", endpoint="b") is False
        assert store.replay("evt_1") is False
        assert store.replay("evt_1", endpoint="a") is True
        self.finished(store, endpoint="a")
        self.finished(store, endpoint="b")
        clock.advance(10)
        assert store.prune(clock(), endpoint="b") == 1
        assert store.get("evt_1", endpoint="a") is not None
        assert store.prune(clock()) == 1  # every endpoint
        assert store.count() == 1

    # -- values at the edges ---------------------------------------------------------

    @pytest.mark.parametrize(
        ("event_id", "event_type", "created_at", "body"),
        [pytest.param(*row[1:], id=row[0]) for row in EDGE_VALUES],
    )
    def test_edge_values_are_recorded_claimed_finished_and_listed(
        self,
        store: CompleteStore,
        event_id: str,
        event_type: str,
        created_at: datetime,
        body: bytes,
    ) -> None:
        assert store.record(event_id, event_type, created_at, body) is True
        assert store.record(event_id, event_type, created_at, body) is False
        assert store.due() == [event_id]
        claim = self.claimed(store, event_id)
        assert store.checkpoint(claim, {event_type: HandlerOutcome(ok=False, error=event_id)})
        assert store.finish(claim, _ok(event_type), DONE)
        listed = store.list(limit=10)
        assert [e.id for e in listed] == [event_id]
        for event in (listed[0], self.stored(store, event_id), claim.event):
            assert event.unreadable is None
            assert (event.id, event.type, event.body) == (event_id, event_type, body)
            assert event.created_at == created_at
        assert self.stored(store, event_id).outcomes == _ok(event_type)
        assert store.stats() == {Status.DONE: 1}

    # -- the store's edge ------------------------------------------------------------

    def test_an_unreachable_store_raises_store_unavailable_from_every_call(
        self, clock: ContractClock, tmp_path: Path
    ) -> None:
        def check(error: StoreUnavailable, call: str = "make_unreachable_store") -> None:
            # The driver's error is kept as the cause, for the log; nothing of ours.
            assert isinstance(error.__cause__, Exception), call
            assert not isinstance(error.__cause__, WebhookError), call

        try:
            store = self.make_unreachable_store(clock, tmp_path)
        except StoreUnavailable as error:
            check(error)
            return
        assert isinstance(store, CompleteStore)
        event = StoredEvent("evt_1", "deal.won", CREATED, CREATED, b"{}", Status.PROCESSING)
        claim = Claim(event, "token")
        calls: dict[str, Any] = {
            "record": lambda: self.record(store),
            "claim": lambda: store.claim("evt_1", 30),
            "renew": lambda: store.renew(claim, 30),
            "checkpoint": lambda: store.checkpoint(claim, _ok()),
            "finish": lambda: store.finish(claim, _ok(), DONE),
            "due": lambda: store.due(),
            "get": lambda: store.get("evt_1"),
            "list": lambda: store.list(endpoint=None),
            "replay": lambda: store.replay("evt_1"),
            "resolve": lambda: store.resolve("evt_1"),
            "prune": lambda: store.prune(clock()),
            "stats": lambda: store.stats(),
            "oldest_due": lambda: store.oldest_due(),
            "note_failure": lambda: store.note_failure("default", "store_down"),
            "clear_failures": lambda: store.clear_failures("default"),
            "count": lambda: store.count(),
        }
        try:
            for name, call in calls.items():
                with pytest.raises(StoreUnavailable) as raised:
                    call()
                check(raised.value, name)
        finally:
            store.close()

    # -- any text ----------------------------------------------------------------------

    @pytest.mark.parametrize("text", [pytest.param(t, id=label) for label, t in ANY_TEXT])
    def test_any_text_is_kept_exactly_in_every_field(
        self, store: CompleteStore, clock: ContractClock, text: str
    ) -> None:
        assert store.record(text, text, CREATED, b"{}", endpoint=text) is True
        assert store.record(text, text, CREATED, b"{}", endpoint=text) is False
        assert store.get(text) is None  # on its own endpoint only
        assert store.due(endpoint=text) == [text]
        assert store.oldest_due(endpoint=text) == pytest.approx(clock())
        claim = self.claimed(store, text, endpoint=text)
        assert (claim.event.id, claim.event.type, claim.event.endpoint) == (text, text, text)
        assert store.renew(claim, 30)
        assert store.checkpoint(claim, {text: HandlerOutcome(ok=True, at=1.0)})
        failed = {"h" + text: HandlerOutcome(ok=False, error=text, at=2.0)}
        assert store.finish(claim, failed, Verdict(Status.FAILED, text, clock() + 10))
        event = self.stored(store, text, endpoint=text)
        assert event.unreadable is None
        assert (event.id, event.type, event.endpoint, event.last_error) == (text, text, text, text)
        assert event.outcomes == {
            text: HandlerOutcome(ok=True, at=1.0),
            "h" + text: HandlerOutcome(ok=False, error=text, at=2.0),
        }
        assert [e.id for e in store.list(event_type=text, endpoint=text)] == [text]
        assert [e.id for e in store.list(status=Status.FAILED, endpoint=text)] == [text]
        assert (text, text) in {(e.endpoint, e.id) for e in store.list(endpoint=None)}
        assert store.stats(endpoint=text) == {Status.FAILED: 1}
        assert store.count(endpoint=text) == 1
        clock.advance(11)
        retry = self.claimed(store, text, endpoint=text)
        assert retry.event.succeeded_handlers == {text}
        assert store.finish(retry, {}, Verdict(Status.DEAD, text))
        assert self.stored(store, text, endpoint=text).last_error == text
        assert store.replay(text, endpoint=text) is True
        self.finished(store, text, Verdict(Status.DEAD, text), endpoint=text)
        assert store.resolve(text, endpoint=text) is True
        assert self.status(store, text, endpoint=text) is Status.DONE
        # A quarantined body: its reason is text too.
        quarantined = "sha256:" + text
        assert store.record(
            quarantined,
            text,
            CREATED,
            b"\xff",
            status=Status.QUARANTINED,
            error=text,
            endpoint=text,
        )
        kept = self.stored(store, quarantined, endpoint=text)
        assert (kept.status, kept.last_error, kept.type) == (Status.QUARANTINED, text, text)
        # Failed answers in a row are counted per endpoint, whatever its name.
        assert store.note_failure(text, text) == 1
        assert store.note_failure(text, "signature") == 2
        store.clear_failures(text)
        assert store.note_failure(text, text) == 1
        clock.advance(10)
        assert store.prune(clock(), endpoint=text) == 2
        assert store.count(endpoint=None) == 0

    def test_a_row_the_store_cannot_read_never_blocks_the_inbox(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        self.record(store, "evt_before")
        clock.advance(1)
        self.write_unreadable_row(store, "evt_bad")
        clock.advance(1)
        self.record(store, "evt_after")
        clock.advance(1)
        listed = {e.id: e for e in store.list(limit=10)}
        assert set(listed) == {"evt_before", "evt_bad", "evt_after"}
        bad = listed["evt_bad"]
        assert bad.unreadable is not None
        assert bad.status is Status.QUARANTINED
        assert self.stored(store, "evt_bad").unreadable
        assert set(store.due()) >= {"evt_before", "evt_after"}
        for event_id in store.due():
            claim = self.claimed(store, event_id)
            if claim.event.unreadable:
                verdict = Verdict(Status.QUARANTINED, claim.event.unreadable)
            else:
                verdict = DONE
            assert store.finish(claim, {}, verdict)
        assert store.due() == []
        assert self.status(store, "evt_after") is Status.DONE
        assert sum(store.stats().values()) == 3
        assert set(store.stats()) <= set(Status)
        assert CLAIMABLE.isdisjoint(store.stats())

    # -- resource marks (the optional part newest-only handlers need) --------------------

    @staticmethod
    def marks(store: Store) -> ResourceMarks:
        """The store as `ResourceMarks`; the test is skipped for a store without them."""
        if not isinstance(store, ResourceMarks):
            pytest.skip(f"{type(store).__name__} does not implement ResourceMarks")
        return store

    def test_a_mark_supersedes_older_and_the_same_event(self, store: CompleteStore) -> None:
        marks = self.marks(store)
        assert marks.take_mark(KEY, 100.0, "evt_b", "w1", 30) is MarkAnswer.RUN
        marks.release_mark(KEY, "w1", (100.0, "evt_b"))
        assert marks.take_mark(KEY, 100.0, "evt_b", "w2", 30) is MarkAnswer.SUPERSEDED
        assert marks.take_mark(KEY, 99.0, "evt_a", "w2", 30) is MarkAnswer.SUPERSEDED
        # Same created_at, another id: not ordered, so it runs.
        assert marks.take_mark(KEY, 100.0, "evt_c", "w2", 30) is MarkAnswer.RUN
        marks.release_mark(KEY, "w2", (100.0, "evt_c"))
        assert marks.take_mark(KEY, 101.0, "evt_d", "w3", 30) is MarkAnswer.RUN
        # Other handlers, resources and endpoints have marks of their own.
        for other in (KEY._replace(handler="h2"), KEY._replace(resource="deal/d_2")):
            assert marks.take_mark(other, 1.0, "evt_a", "w9", 30) is MarkAnswer.RUN
        other_endpoint = KEY._replace(endpoint="other")
        assert marks.take_mark(other_endpoint, 1.0, "evt_a", "w9", 30) is MarkAnswer.RUN

    def test_a_held_mark_is_busy_until_its_hold_runs_out(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        marks = self.marks(store)
        assert marks.take_mark(KEY, 100.0, "evt_a", "w1", 30) is MarkAnswer.RUN
        assert marks.take_mark(KEY, 200.0, "evt_b", "w2", 30) is MarkAnswer.BUSY
        clock.advance(20)
        assert marks.renew_mark(KEY, "w2", 30) is False  # not the holder
        assert marks.renew_mark(KEY, "w1", 30) is True
        clock.advance(20)  # past the first hold, within the renewed one
        assert marks.take_mark(KEY, 200.0, "evt_b", "w2", 30) is MarkAnswer.BUSY
        clock.advance(11)
        assert marks.take_mark(KEY, 200.0, "evt_b", "w2", 30) is MarkAnswer.RUN
        assert marks.renew_mark(KEY, "w1", 30) is False  # it lost the mark
        # The first holder did apply its event: recorded, though its hold was lost.
        marks.release_mark(KEY, "w1", (100.0, "evt_a"))
        assert marks.take_mark(KEY, 300.0, "evt_c", "w3", 30) is MarkAnswer.BUSY
        marks.release_mark(KEY, "w2", (200.0, "evt_b"))
        assert marks.take_mark(KEY, 150.0, "evt_x", "w3", 30) is MarkAnswer.SUPERSEDED

    def test_a_holder_may_take_its_mark_again_and_times_keep_every_digit(
        self, store: CompleteStore
    ) -> None:
        marks = self.marks(store)
        # One ulp apart near a real epoch: kept with fewer than 17 significant digits,
        # the two would be one time and the older would not be superseded.
        early = 1_700_000_000.123456
        late = early + 2.384185791015625e-07
        assert marks.take_mark(KEY, early, "evt_a", "w1", 30) is MarkAnswer.RUN
        assert marks.take_mark(KEY, early, "evt_a", "w1", 30) is MarkAnswer.RUN  # its own
        marks.release_mark(KEY, "w1", (late, "evt_b"))
        assert marks.take_mark(KEY, early, "evt_a", "w2", 30) is MarkAnswer.SUPERSEDED
        never_taken = KEY._replace(handler="never_taken")
        assert marks.renew_mark(never_taken, "w1", 30) is False

    def test_releasing_a_mark_never_moves_the_applied_event_backwards(
        self, store: CompleteStore
    ) -> None:
        marks = self.marks(store)
        assert marks.take_mark(KEY, 200.0, "evt_b", "w1", 30) is MarkAnswer.RUN
        marks.release_mark(KEY, "w1", (200.0, "evt_b"))
        assert marks.take_mark(KEY, 300.0, "evt_c", "w2", 30) is MarkAnswer.RUN
        marks.release_mark(KEY, "w2", None)  # its handler failed: evt_b stays applied
        assert marks.take_mark(KEY, 150.0, "evt_a", "w3", 30) is MarkAnswer.SUPERSEDED
        assert marks.take_mark(KEY, 300.0, "evt_c", "w3", 30) is MarkAnswer.RUN
        marks.release_mark(KEY, "w3", (300.0, "evt_c"))
        marks.release_mark(KEY, "w0", (100.0, "evt_0"))  # late and older: ignored
        assert marks.take_mark(KEY, 250.0, "evt_x", "w4", 30) is MarkAnswer.SUPERSEDED
        assert marks.take_mark(KEY, 300.0, "evt_c", "w4", 30) is MarkAnswer.SUPERSEDED

    @pytest.mark.parametrize("text", [pytest.param(t, id=label) for label, t in ANY_TEXT])
    def test_any_text_is_kept_exactly_in_every_mark_field(
        self, store: CompleteStore, text: str
    ) -> None:
        marks, key = self.marks(store), MarkKey(text, text, text)
        assert marks.take_mark(key, 100.0, text, text, 30) is MarkAnswer.RUN
        assert marks.take_mark(key, 200.0, "evt_other", "w2", 30) is MarkAnswer.BUSY
        assert marks.renew_mark(key, text, 30) is True
        marks.release_mark(key, text, (100.0, text))
        assert marks.take_mark(key, 100.0, text, "w2", 30) is MarkAnswer.SUPERSEDED
        assert marks.take_mark(key, 100.0, text + "2", "w2", 30) is MarkAnswer.RUN
        for other in (MarkKey(text + "x", text, text), MarkKey(text, text, text + "x")):
            assert marks.take_mark(other, 100.0, text, "w3", 30) is MarkAnswer.RUN

    def test_racing_takers_of_one_mark_get_exactly_one_run(self, store: CompleteStore) -> None:
        marks = self.marks(store)
        answers = _together(8, lambda n: marks.take_mark(KEY, 100.0 + n, f"evt_{n}", f"w{n}", 30))
        assert sorted(answers) == sorted([MarkAnswer.RUN] + [MarkAnswer.BUSY] * 7)

    def test_a_superseded_outcome_is_kept_and_old_outcomes_still_load(
        self, store: CompleteStore
    ) -> None:
        claim = self.claim_new(store)
        skipped = HandlerOutcome.superseded_at(3.0)
        assert store.finish(claim, {"newest": skipped, **_ok()}, DONE)
        event = self.stored(store)
        assert event.outcomes == {"newest": skipped, "h": HandlerOutcome(ok=True, at=0.0)}
        assert event.outcomes["newest"].superseded
        assert not event.outcomes["h"].superseded
        assert "newest" in event.succeeded_handlers

    def test_a_busy_verdict_is_pending_again_without_counting_the_attempt(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        claim = self.claim_new(store)
        assert claim.event.attempts == 1
        assert store.finish(claim, _ok("done_already"), Verdict.busy(clock() + 1, 1))
        event = self.stored(store)
        assert (event.status, event.attempts) == (Status.PENDING, 0)
        assert event.succeeded_handlers == {"done_already"}
        assert store.due() == []
        clock.advance(1)
        assert store.due() == ["evt_1"]
        again = self.claimed(store)
        assert again.event.attempts == 1
        assert again.event.succeeded_handlers == {"done_already"}

    # -- endpoint registry (the optional part that keeps endpoints in the store) ---------

    @staticmethod
    def registry(store: Store) -> EndpointRegistry:
        """The store as `EndpointRegistry`; the test is skipped for a store without it."""
        if not isinstance(store, EndpointRegistry):
            pytest.skip(f"{type(store).__name__} does not implement EndpointRegistry")
        return store

    @staticmethod
    def endpoint(registry: EndpointRegistry, name: str) -> EndpointRecord:
        endpoint = registry.get_endpoint(name)
        assert endpoint is not None, f"no endpoint {name!r}"
        return endpoint

    def test_an_endpoint_is_added_once_and_read_back(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        registry = self.registry(store)
        assert registry.get_endpoint("shop_1") is None
        assert registry.list_endpoints() == []
        assert registry.add_endpoint("shop_1", "whsec_one") is True
        clock.advance(5)
        assert registry.add_endpoint("shop_1", "whsec_other") is False
        endpoint = self.endpoint(registry, "shop_1")
        assert (endpoint.name, endpoint.enabled) == ("shop_1", True)
        assert endpoint.secrets == (EndpointSecret("whsec_one"),)
        assert endpoint.created_at == pytest.approx(START)
        assert endpoint.updated_at == pytest.approx(START)
        assert endpoint.valid_secrets(clock()) == ("whsec_one",)
        assert "whsec_one" not in repr(endpoint)
        assert store.count() == 0  # kept apart from the events

    def test_endpoints_are_listed_by_name(self, store: CompleteStore) -> None:
        registry = self.registry(store)
        for name in ("shop_b", "shop_a", "shop_c"):
            assert registry.add_endpoint(name, f"whsec_{name}") is True
        assert [(e.name, e.secrets[0].secret) for e in registry.list_endpoints()] == [
            (name, f"whsec_{name}") for name in ("shop_a", "shop_b", "shop_c")
        ]

    def test_a_rotation_keeps_the_old_secret_until_its_grace_period_ends(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        registry = self.registry(store)
        registry.add_endpoint("shop_1", "whsec_one")
        clock.advance(10)
        assert registry.rotate_endpoint("shop_1", "whsec_two", 60) is True
        endpoint = self.endpoint(registry, "shop_1")
        assert endpoint.secrets == (
            EndpointSecret("whsec_two"),
            EndpointSecret("whsec_one", START + 70),
        )
        assert endpoint.created_at == pytest.approx(START)
        assert endpoint.updated_at == pytest.approx(START + 10)
        assert endpoint.valid_secrets(clock()) == ("whsec_two", "whsec_one")
        clock.advance(59)
        assert endpoint.valid_secrets(clock()) == ("whsec_two", "whsec_one")
        clock.advance(1)
        assert endpoint.valid_secrets(clock()) == ("whsec_two",)
        # The next rotation drops what has run out.
        assert registry.rotate_endpoint("shop_1", "whsec_three", 60) is True
        again = self.endpoint(registry, "shop_1")
        assert again.secrets == (
            EndpointSecret("whsec_three"),
            EndpointSecret("whsec_two", clock() + 60),
        )
        assert registry.rotate_endpoint("shop_missing", "whsec_x", 60) is False
        assert registry.get_endpoint("shop_missing") is None

    def test_an_endpoint_is_disabled_enabled_and_removed(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        registry = self.registry(store)
        registry.add_endpoint("shop_1", "whsec_one")
        clock.advance(3)
        assert registry.set_endpoint_enabled("shop_1", False) is True
        disabled = self.endpoint(registry, "shop_1")
        assert disabled.enabled is False
        assert disabled.updated_at == pytest.approx(START + 3)
        assert disabled.secrets == (EndpointSecret("whsec_one"),)
        assert registry.set_endpoint_enabled("shop_1", True) is True
        enabled = self.endpoint(registry, "shop_1")
        assert enabled.enabled is True
        assert registry.set_endpoint_enabled("shop_missing", False) is False
        assert registry.remove_endpoint("shop_1") is True
        assert registry.get_endpoint("shop_1") is None
        assert registry.list_endpoints() == []
        assert registry.remove_endpoint("shop_1") is False
        # The name is free again, with nothing left of the old secrets.
        assert registry.add_endpoint("shop_1", "whsec_new") is True
        again = self.endpoint(registry, "shop_1")
        assert again.secrets == (EndpointSecret("whsec_new"),)

    @pytest.mark.parametrize(
        "text",
        [pytest.param(t, id=label) for label, t in [*ANY_TEXT, ("lone surrogate", "\ud83d")]],
    )
    def test_any_text_is_kept_exactly_in_endpoint_names_and_secrets(
        self, store: CompleteStore, clock: ContractClock, text: str
    ) -> None:
        registry = self.registry(store)
        assert registry.add_endpoint(text, text) is True
        assert registry.add_endpoint(text + "x", "whsec_x") is True
        assert registry.rotate_endpoint(text, text + "2", 60) is True
        endpoint = self.endpoint(registry, text)
        assert endpoint.name == text
        assert endpoint.secrets == (EndpointSecret(text + "2"), EndpointSecret(text, clock() + 60))
        assert [e.name for e in registry.list_endpoints()] == [text, text + "x"]
        assert registry.set_endpoint_enabled(text, False) is True
        assert registry.remove_endpoint(text) is True
        assert [e.name for e in registry.list_endpoints()] == [text + "x"]

    def test_concurrent_rotations_lose_no_update(
        self, store: CompleteStore, clock: ContractClock
    ) -> None:
        registry = self.registry(store)
        registry.add_endpoint("shop_1", "whsec_0")
        rotated = _together(8, lambda n: registry.rotate_endpoint("shop_1", f"whsec_{n + 1}", 3600))
        assert rotated == [True] * 8
        endpoint = self.endpoint(registry, "shop_1")
        # Every rotation read the one before it: each secret is current or in its grace.
        assert sorted(endpoint.valid_secrets(clock())) == [f"whsec_{n}" for n in range(9)]
        assert [s.valid_until is None for s in endpoint.secrets].count(True) == 1
