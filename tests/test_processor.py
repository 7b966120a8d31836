"""The processing layer under the faults of issue [3 of 7] and the lifecycle of [2 of 7]:
unhandled events, hung handlers, lease heartbeats, store writes that fail, endpoints
sharing a store, replay_dead that ends, recovery that drains everything."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import (
    Event,
    MemoryStore,
    Receiver,
    RetryPolicy,
    Router,
    Status,
    Store,
    ThreadRunner,
)
from iverton_webhooks._errors import StoreUnavailable
from iverton_webhooks._processor import Processor
from iverton_webhooks._worker import Result
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import Claim, HandlerOutcome, Verdict
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers, wait_for
from tests.stores import STORE_PARAMS, STORES

NO_WAIT = RetryPolicy(max_attempts=3, base_delay=0, jitter=0)


@pytest.fixture(params=STORE_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with STORES[request.param](tmp_path, time.time) as made:
        yield made


def stored(store: Store, event_id: str, event_type: str = "deal.won", **kw: Any) -> str:
    body = sample_body(event_type, id=event_id)
    envelope = parse_envelope(body)
    store.record(envelope.id, envelope.type, envelope.created_at, body, **kw)
    return event_id


def test_an_event_no_handler_matches_is_unhandled_not_done(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    processor = Processor(store, Router())
    with caplog.at_level(logging.WARNING, "iverton_webhooks"):
        assert processor.process(stored(store, "evt_u1")) is Result.UNHANDLED
        assert processor.process(stored(store, "evt_u2")) is Result.UNHANDLED
    assert store.get("evt_u1").status is Status.UNHANDLED  # type: ignore[union-attr]
    warnings = [r for r in caplog.records if "no handler matches" in r.getMessage()]
    assert len(warnings) == 1
    assert "deal.won" in warnings[0].getMessage()
    # Unhandled is kept and replayable: register the handler, replay, and it runs.
    router = Router()
    ran: list[str] = []
    router.add(lambda event: ran.append(event.id), "deal.won", name="late")
    later = Processor(store, router)
    assert later.replay("evt_u1")
    assert later.process("evt_u1") is Result.DONE
    assert ran == ["evt_u1"]


def test_a_hung_sync_handler_times_out_is_retried_and_ends_dead(store: Store) -> None:
    release = threading.Event()
    router = Router()
    calls = Counter[str]()

    @router.on("deal.won")
    def hangs(event: Event) -> None:
        calls["hangs"] += 1
        release.wait(30)

    processor = Processor(
        store,
        router,
        retry=RetryPolicy(max_attempts=2, base_delay=0, jitter=0),
        handler_timeout=timedelta(seconds=0.3),
    )
    event_id = stored(store, "evt_hang")
    try:
        # process() returns at the deadline, its failure written, while the handler
        # still hangs in the thread it was left in.
        started = time.monotonic()
        assert processor.process(event_id) is Result.RETRY
        assert time.monotonic() - started < 3
        event = store.get(event_id)
        assert event is not None
        assert event.status is Status.FAILED
        assert "timed out after 0.3 s" in (event.last_error or "")
        # recover() is never held by a hung handler either.
        started = time.monotonic()
        assert processor.recover() == {Result.DEAD: 1}
        assert time.monotonic() - started < 3
        assert store.get(event_id).status is Status.DEAD  # type: ignore[union-attr]
        assert calls["hangs"] == 2
    finally:
        release.set()
    # A handler that finally returns writes nothing more.
    time.sleep(0.1)
    assert store.get(event_id).status is Status.DEAD  # type: ignore[union-attr]
    processor.close()


def test_a_thread_runner_keeps_processing_while_handlers_hang() -> None:
    release = threading.Event()
    router = Router()
    done: list[str] = []

    @router.on("deal.won")
    def maybe_hangs(event: Event) -> None:
        if event.id.startswith("evt_hang"):
            release.wait(30)
        done.append(event.id)

    receiver = Receiver(
        secret=SECRET,
        router=router,
        store="memory://",
        runner=ThreadRunner(workers=2, poll_interval=0.2),
        handler_timeout=timedelta(seconds=0.3),
        retry=RetryPolicy(max_attempts=1),
    )
    try:
        for n in range(4):
            body = sample_body("deal.won", id=f"evt_hang{n}")
            receiver.receive("POST", body, signed_headers(body))
        for n in range(20):
            body = sample_body("deal.won", id=f"evt_ok{n}")
            receiver.receive("POST", body, signed_headers(body))
        assert wait_for(lambda: receiver.stats().get(Status.DONE) == 20, 10)
        assert wait_for(lambda: receiver.stats().get(Status.DEAD) == 4, 5)
    finally:
        release.set()
        receiver.close()


def test_a_hung_async_handler_is_cancelled(store: Store) -> None:
    router = Router()
    cancelled = threading.Event()

    @router.on("deal.won")
    async def hangs(event: Event) -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    processor = Processor(store, router, retry=NO_WAIT, handler_timeout=timedelta(seconds=0.2))
    event_id = stored(store, "evt_ahang")
    assert asyncio.run(asyncio.wait_for(processor.process_async(event_id), 5)) is Result.RETRY
    assert cancelled.is_set()
    assert "timed out" in (store.get(event_id).last_error or "")  # type: ignore[union-attr]


def test_a_long_handler_keeps_its_lease_so_nobody_runs_it_twice(store: Store) -> None:
    router = Router()
    runs = Counter[str]()

    started = threading.Event()

    @router.on("deal.won")
    def slow(event: Event) -> None:
        runs["slow"] += 1
        started.set()
        time.sleep(1.2)

    lease = timedelta(seconds=0.3)
    first = Processor(store, router, lease=lease, retry=NO_WAIT)
    second = Processor(store, router, lease=lease, retry=NO_WAIT)
    event_id = stored(store, "evt_long")
    results: list[Result] = []
    worker = threading.Thread(target=lambda: results.append(first.process(event_id)))
    worker.start()
    assert started.wait(5)
    deadline = time.monotonic() + 1.0
    stolen = []
    while time.monotonic() < deadline:  # another worker tries, well past the lease
        stolen.append(second.process(event_id))
        time.sleep(0.05)
    worker.join(5)
    assert results == [Result.DONE]
    assert set(stolen) == {Result.SKIPPED}
    assert runs["slow"] == 1


class FlakyWrites:
    """A store whose checkpoint/finish raise a few times first (a database restarting),
    as a store's edge reports it: StoreUnavailable."""

    def __init__(self, inner: Store, failures: int) -> None:
        self._inner = inner
        self.failures = failures

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _maybe_fail(self) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise StoreUnavailable("server closed the connection unexpectedly")

    def checkpoint(self, claim: Claim, outcomes: Mapping[str, HandlerOutcome]) -> bool:
        self._maybe_fail()
        return self._inner.checkpoint(claim, outcomes)

    def finish(
        self, claim: Claim, outcomes: Mapping[str, HandlerOutcome], verdict: Verdict
    ) -> bool:
        self._maybe_fail()
        return self._inner.finish(claim, outcomes, verdict)


def test_a_store_fault_after_the_handlers_does_not_run_them_again() -> None:
    inner = MemoryStore()
    store = FlakyWrites(inner, failures=3)
    router = Router()
    runs = Counter[str]()
    for name in ("first", "second"):
        router.add(lambda event, name=name: runs.update([name]), "deal.won", name=name)
    processor = Processor(store, router)  # type: ignore[arg-type]
    event_id = stored(inner, "evt_fault")
    assert processor.process(event_id) is Result.DONE
    assert runs == Counter({"first": 1, "second": 1})
    assert inner.get(event_id).status is Status.DONE  # type: ignore[union-attr]


def test_when_the_store_stays_down_recorded_successes_are_still_not_rerun() -> None:
    inner = MemoryStore()
    router = Router()
    runs = Counter[str]()
    for name in ("first", "second"):
        router.add(lambda event, name=name: runs.update([name]), "deal.won", name=name)
    lease = timedelta(seconds=0.2)
    event_id = stored(inner, "evt_down")
    # The checkpoint after "first" is written; then the store is down for good.
    store = FlakyWrites(inner, failures=0)
    original = store.finish

    def finish_down(*args: Any) -> bool:
        raise StoreUnavailable("down")

    store.finish = finish_down  # type: ignore[method-assign]
    assert Processor(store, router, lease=lease).process(event_id) is Result.STORE_DOWN  # type: ignore[arg-type]
    store.finish = original  # type: ignore[method-assign]
    time.sleep(0.25)  # the lease runs out; a second worker takes over
    assert Processor(inner, router, lease=lease).process(event_id) is Result.DONE
    assert runs == Counter({"first": 1, "second": 2})  # only the unrecorded one again


def test_receivers_sharing_a_store_never_process_each_others_events(tmp_path: Path) -> None:
    store = MemoryStore()
    ran: list[str] = []
    router_a, router_b = Router(), Router()
    router_a.add(lambda event: ran.append(f"A:{event.id}"), "deal.won", name="a")

    @router_b.on("deal.won")
    def fails(event: Event) -> None:
        raise RuntimeError("B's handler fails")

    a = Receiver(secret=SECRET, router=router_a, store=store, runner="inline", endpoint="a")
    b = Receiver(secret=SECRET, router=router_b, store=store, runner="inline", endpoint="b")
    body = sample_body("deal.won", id="evt_shared")
    assert b.receive("POST", body, signed_headers(body)).status == 200
    assert b.stats() == {Status.FAILED: 1}
    a.recover()
    assert ran == []  # A never touched B's event
    assert store.get("evt_shared", endpoint="b").status is Status.FAILED  # type: ignore[union-attr]
    # The same id sent to A is A's own event, not a duplicate of B's.
    assert a.receive("POST", body, signed_headers(body)).body == b'{"status":"accepted"}'
    assert ran == ["A:evt_shared"]


def test_replay_dead_ends_when_replayed_events_die_again() -> None:
    router = Router()
    runs = Counter[str]()

    @router.on("deal.won")
    def fails(event: Event) -> None:
        runs[event.id] += 1
        raise RuntimeError("still broken")

    receiver = Receiver(
        secret=SECRET,
        router=router,
        store="memory://",
        runner="inline",
        retry=RetryPolicy(max_attempts=1),
    )
    for n in range(3):
        body = sample_body("deal.won", id=f"evt_dead{n}")
        receiver.receive("POST", body, signed_headers(body))
    assert receiver.stats() == {Status.DEAD: 3}
    assert receiver.replay_dead() == 3  # each replayed (and dead again) exactly once
    assert runs == Counter({f"evt_dead{n}": 2 for n in range(3)})
    assert receiver.stats() == {Status.DEAD: 3}


def test_recover_drains_everything_due_not_just_one_batch(store: Store) -> None:
    for n in range(1203):
        stored(store, f"evt_many{n}")
    counts = Processor(store, Router()).recover()
    assert counts == {Result.UNHANDLED: 1203}
    assert store.stats() == {Status.UNHANDLED: 1203}


def test_an_unreadable_body_in_the_inbox_is_quarantined_not_dead(store: Store) -> None:
    store.record("evt_raw", "deal.won", parse_envelope(sample_body("deal.won")).created_at, b"{")
    assert Processor(store, Router()).process("evt_raw") is Result.QUARANTINED
    event = store.get("evt_raw")
    assert event is not None
    assert event.status is Status.QUARANTINED
    assert event.last_error


def test_a_replayed_quarantined_event_is_parsed_again() -> None:
    store = MemoryStore()
    ran: list[str] = []
    router = Router()
    router.add(lambda event: ran.append(event.id), "deal.won", name="h")
    body = sample_body("deal.won", id="evt_q")
    store.record(
        "evt_q",
        "deal.won",
        parse_envelope(body).created_at,
        body,
        status=Status.QUARANTINED,
        error="was unreadable by an older version",
    )
    processor = Processor(store, router)
    assert processor.process("evt_q") is Result.SKIPPED  # quarantined is never due
    assert processor.replay("evt_q")
    assert processor.process("evt_q") is Result.DONE
    assert ran == ["evt_q"]


def test_closing_while_a_handler_hangs_hands_the_event_back() -> None:
    release = threading.Event()
    router = Router()

    @router.on("deal.won")
    def hangs(event: Event) -> None:
        release.wait(30)

    runner = ThreadRunner(workers=1, poll_interval=60)
    receiver = Receiver(
        secret=SECRET,
        router=router,
        store="memory://",
        runner=runner,
        handler_timeout=timedelta(seconds=0.3),
        retry=RetryPolicy(max_attempts=1),
    )
    try:
        body = sample_body("deal.won", id="evt_hang_at_close")
        receiver.receive("POST", body, signed_headers(body))
        assert wait_for(lambda: receiver.stats().get(Status.PROCESSING) == 1, 5)
        started = time.monotonic()
        runner.close(0)  # shutting down while the handler hangs
        assert time.monotonic() - started < 3
        # Handed back, due at once, for whichever worker runs next: not left leased.
        event = receiver.store.get("evt_hang_at_close")
        assert event is not None
        assert event.status is Status.FAILED
        assert event.last_error == "interrupted by shutdown"
    finally:
        release.set()
        receiver.close()


@pytest.mark.parametrize("raised", [SystemExit, KeyboardInterrupt])
@pytest.mark.parametrize("kind", ["sync", "async"])
def test_a_handler_raising_a_base_exception_fails_and_stops_no_runner(
    raised: type[BaseException], kind: str
) -> None:
    router = Router()
    done: list[str] = []

    if kind == "sync":

        @router.on("deal.won")
        def exits(event: Event) -> None:
            if event.id.startswith("evt_exit"):
                raise raised("handler gave up")
            done.append(event.id)

    else:

        @router.on("deal.won")
        async def exits_async(event: Event) -> None:
            if event.id.startswith("evt_exit"):
                raise raised("handler gave up")
            done.append(event.id)

    receiver = Receiver(
        secret=SECRET,
        router=router,
        store="memory://",
        runner=ThreadRunner(workers=2, poll_interval=60),
        retry=RetryPolicy(max_attempts=1),
    )
    try:
        ids = [f"evt_exit{n}" for n in range(4)] + [f"evt_ok{n}" for n in range(10)]
        for event_id in ids:
            body = sample_body("deal.won", id=event_id)
            assert receiver.receive("POST", body, signed_headers(body)).status == 200
        assert wait_for(lambda: receiver.stats().get(Status.DONE) == 10, 10)
        assert receiver.stats().get(Status.DEAD) == 4
        dead = receiver.store.get("evt_exit0")
        assert dead is not None
        assert raised.__name__ in (dead.last_error or "")
        assert sorted(done) == sorted(i for i in ids if i.startswith("evt_ok"))
    finally:
        receiver.close()


def test_a_default_receiver_starts_no_thread_before_work_and_two_for_it(tmp_path: Path) -> None:
    router = Router()
    seen: list[str] = []
    router.on("deal.won")(lambda event: seen.append(event.id))
    before = set(threading.enumerate())
    receiver = Receiver(secret=SECRET, router=router, store=f"sqlite:///{tmp_path}/inbox.db")
    try:
        assert set(threading.enumerate()) == before
        for n in range(5):
            body = sample_body("deal.won", id=f"evt_threads{n}")
            assert receiver.receive("POST", body, signed_headers(body)).status == 200
            assert wait_for(lambda n=n: len(seen) == n + 1, 5)
        started = [t.name for t in set(threading.enumerate()) - before]
        assert len(started) <= 2, started
    finally:
        receiver.close()


def test_a_run_that_outlives_its_lease_is_said_once_with_the_fix(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    router = Router()
    router.add(lambda event: time.sleep(0.6), "deal.won", name="slow")
    processor = Processor(store, router, lease=timedelta(seconds=0.3), retry=NO_WAIT)
    event_id = stored(store, "evt_outlived")
    renewals: list[str] = []

    def lost_lease(claim: Claim, lease_seconds: float) -> bool:
        renewals.append(claim.event.id)
        return False  # as when the heartbeat came too late and another worker took over

    store.renew = lost_lease  # type: ignore[method-assign]
    with caplog.at_level(logging.WARNING, "iverton_webhooks"):
        processor.process(event_id)
    assert len(renewals) >= 2  # the heartbeat tried more than once ...
    said = [r.getMessage() for r in caplog.records if "outlived its lease" in r.getMessage()]
    assert len(said) == 1, said  # ... and it was said once, with what to do
    assert "longer lease" in said[0]
    assert "process-based runner" in said[0]


def test_a_failing_recovery_poll_is_said_in_one_line_not_at_every_poll(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    polls: list[int] = []

    def broken_due(limit: int = 100, *, endpoint: str = "default") -> list[str]:
        polls.append(limit)
        raise RuntimeError("no such table: iverton_events")

    store.due = broken_due  # type: ignore[method-assign]
    runner = ThreadRunner(workers=1, poll_interval=0.05)
    runner.bind(Processor(store, Router()))
    with caplog.at_level(logging.WARNING, "iverton_webhooks"):
        runner.start()
        try:
            assert wait_for(lambda: len(polls) >= 10, 5)
        finally:
            runner.close(1)
    said = [r for r in caplog.records if "recovery poll failed" in r.getMessage()]
    assert len(said) == 1
    assert "no such table" in said[0].getMessage()
    assert said[0].exc_info is None  # one line, no traceback
