"""Newest-only handlers: given each resource's events one at a time and never an event
older than one they applied; the others superseded, the event still done."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from iverton_webhooks import ConfigurationError, MemoryStore, Router, Status
from iverton_webhooks._processor import Processor
from iverton_webhooks._worker import BUSY_DELAY, Result
from iverton_webhooks.events import Event, parse_envelope
from iverton_webhooks.hooks import Hook
from iverton_webhooks.inbox.base import MarkAnswer, MarkKey
from iverton_webhooks.samples import sample_body
from tests.ordering_checks import Delivery, SkewedClock, Workers, deliveries
from tests.stores import STORES

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def record(
    store: MemoryStore, event_id: str, seconds: int, deal: str = "d_1", kind: str = "deal.updated"
) -> str:
    created = (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = sample_body(kind, id=event_id, created_at=created, data={"id": deal})
    assert store.record(event_id, kind, parse_envelope(body).created_at, body)
    return event_id


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


class Seen:
    def __init__(self) -> None:
        self.guarded: list[str] = []
        self.audit: list[str] = []

    def router(self) -> Router:
        router = Router()

        @router.on("deal.updated", "deal.stage_changed", newest_only=True)
        def sync_deal(event: Event[Any]) -> None:
            self.guarded.append(event.id)

        router.add(lambda event: self.audit.append(event.id), "deal.*", name="audit")
        return router


def test_an_older_event_after_a_newer_one_is_superseded_and_done(store: MemoryStore) -> None:
    seen, notices = Seen(), []
    processor = Processor(store, seen.router())
    processor.hooks.add(notices.append, Hook.SUPERSEDED)
    record(store, "evt_new", 60)
    assert processor.process("evt_new") is Result.DONE
    record(store, "evt_old", 0)  # retried by the sender, it arrives last

    assert processor.process("evt_old") is Result.DONE
    assert seen.guarded == ["evt_new"]
    assert seen.audit == ["evt_new", "evt_old"]  # unguarded handlers are not affected
    old = store.get("evt_old")
    assert old is not None
    assert old.status is Status.DONE
    name = next(n for n in old.outcomes if n.endswith("sync_deal"))
    assert old.outcomes[name].superseded
    assert old.outcomes[name].ok
    assert not old.outcomes["audit"].superseded
    assert [(n.hook, n.event_id, n.handler) for n in notices] == [
        (Hook.SUPERSEDED, "evt_old", name)
    ]


def test_the_other_event_types_of_the_guard_share_the_resource(store: MemoryStore) -> None:
    seen = Seen()
    processor = Processor(store, seen.router())
    record(store, "evt_stage", 30, kind="deal.stage_changed")
    processor.process("evt_stage")
    record(store, "evt_update", 10)
    processor.process("evt_update")
    assert seen.guarded == ["evt_stage"]


def test_resources_and_endpoints_have_their_own_marks(store: MemoryStore) -> None:
    seen = Seen()
    processor = Processor(store, seen.router())
    record(store, "evt_a", 60, deal="d_a")
    record(store, "evt_b", 0, deal="d_b")
    processor.process("evt_a")
    processor.process("evt_b")
    assert seen.guarded == ["evt_a", "evt_b"]


def test_in_order_events_each_run(store: MemoryStore) -> None:
    seen = Seen()
    processor = Processor(store, seen.router())
    for n in range(5):
        processor.process(record(store, f"evt_{n}", n))
    assert seen.guarded == [f"evt_{n}" for n in range(5)]


def test_a_busy_resource_makes_the_event_wait_without_using_an_attempt(
    store: MemoryStore, clock: Clock
) -> None:
    seen = Seen()
    router = seen.router()
    processor = Processor(store, router)
    guarded = next(h for h in router.handlers_for("deal.updated") if h.newest_only)
    key = MarkKey("default", "deal/d_1", guarded.name)
    assert store.take_mark(key, 0.0, "evt_elsewhere", "other_worker", 30) is MarkAnswer.RUN
    record(store, "evt_1", 0)

    assert processor.process("evt_1") is Result.BUSY
    waiting = store.get("evt_1")
    assert waiting is not None
    assert (waiting.status, waiting.attempts) == (Status.PENDING, 0)
    assert seen.guarded == []
    assert seen.audit == ["evt_1"]
    assert processor.process("evt_1") is Result.SKIPPED  # not due yet

    clock.now += BUSY_DELAY
    assert processor.process("evt_1") is Result.BUSY  # still held
    store.release_mark(key, "other_worker", None)
    clock.now += BUSY_DELAY
    assert processor.process("evt_1") is Result.DONE
    assert seen.guarded == ["evt_1"]
    assert seen.audit == ["evt_1"]  # its success was kept: not run again


def test_a_holder_that_died_lets_go_when_its_hold_runs_out(
    store: MemoryStore, clock: Clock
) -> None:
    seen = Seen()
    router = seen.router()
    guarded = next(h for h in router.handlers_for("deal.updated") if h.newest_only)
    store.take_mark(MarkKey("default", "deal/d_1", guarded.name), 0.0, "x", "dead_worker", 30)
    processor = Processor(store, router)
    record(store, "evt_1", 0)
    assert processor.process("evt_1") is Result.BUSY
    clock.now += 30
    assert processor.process("evt_1") is Result.DONE
    assert seen.guarded == ["evt_1"]


def test_a_failed_guarded_handler_does_not_advance_the_mark(store: MemoryStore) -> None:
    calls: list[str] = []
    fail = {"evt_new"}
    router = Router()

    @router.on("deal.updated", newest_only=True)
    def sync_deal(event: Event[Any]) -> None:
        calls.append(event.id)
        if event.id in fail:
            raise RuntimeError("the CRM is down")

    processor = Processor(store, router)
    record(store, "evt_new", 60)
    assert processor.process("evt_new") is Result.RETRY
    record(store, "evt_old", 0)
    # The newer one failed, so the older one is still the newest applied: it runs.
    assert processor.process("evt_old") is Result.DONE
    assert calls == ["evt_new", "evt_old"]


def test_the_same_event_replayed_in_full_is_not_given_again(store: MemoryStore) -> None:
    seen = Seen()
    processor = Processor(store, seen.router())
    processor.process(record(store, "evt_1", 0))
    assert processor.replay("evt_1", rerun_all=True)
    assert processor.process("evt_1") is Result.DONE
    assert seen.guarded == ["evt_1"]
    assert seen.audit == ["evt_1", "evt_1"]


def test_the_mark_is_held_while_the_handler_runs_past_several_heartbeats(
    store: MemoryStore,
) -> None:
    # Real time: the lease is renewed every third of it, and the mark with it.
    store.clock = time.time
    started, release = threading.Event(), threading.Event()
    router = Router()

    @router.on("deal.updated", newest_only=True)
    def slow(event: Event[Any]) -> None:
        started.set()
        release.wait(5)

    processor = Processor(store, router, lease=0.3)
    record(store, "evt_1", 0)
    worker = threading.Thread(target=processor.process, args=("evt_1",))
    worker.start()
    try:
        assert started.wait(5)
        time.sleep(0.6)  # twice the lease: only renewal keeps the mark held
        key = MarkKey("default", "deal/d_1", f"{__name__}.{slow.__qualname__}")
        assert store.take_mark(key, 1e12, "evt_later", "other", 30) is MarkAnswer.BUSY
    finally:
        release.set()
        worker.join(10)
    event = store.get("evt_1")
    assert event is not None
    assert event.status is Status.DONE


def test_a_store_without_marks_fails_the_guarded_handler_with_the_fix(
    store: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    class NoMarks:
        """A third-party store: the inbox, but not the optional marks part."""

        def __init__(self, inner: MemoryStore) -> None:
            self._inner = inner

        def __getattr__(self, name: str) -> Any:
            if name in {"take_mark", "renew_mark", "release_mark"}:
                raise AttributeError(name)
            return getattr(self._inner, name)

    seen = Seen()
    with pytest.raises(ConfigurationError, match="keeps no resource marks"):
        Processor(NoMarks(store), seen.router())  # type: ignore[arg-type]
    # A handler registered once the processor exists fails when it would run.
    router = Router()
    processor = Processor(NoMarks(store), router)  # type: ignore[arg-type]
    router.include(seen.router())
    record(store, "evt_1", 0)
    with caplog.at_level(logging.WARNING, "iverton_webhooks"):
        assert processor.process("evt_1") is Result.RETRY
    event = store.get("evt_1")
    assert event is not None
    error = next(o.error for o in event.outcomes.values() if not o.ok)
    assert "keeps no resource marks" in error
    assert "without newest_only" in error
    assert seen.audit == ["evt_1"]
    assert seen.guarded == []


def test_registering_keeps_the_flag_per_handler() -> None:
    router = Router()
    router.add(print, "deal.won", name="plain")
    router.add(print, "deal.won", name="guarded", newest_only=True)
    assert [(h.name, h.newest_only) for h in router.handlers_for("deal.won")] == [
        ("plain", False),
        ("guarded", True),
    ]


# -- every store, under interleavings ----------------------------------------------------

STORE_PARAMS = [
    "memory",
    "sqlite",
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
]


@pytest.fixture(scope="module")
def tmp_module(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ordering")


@pytest.fixture(params=STORE_PARAMS)
def workers(
    request: pytest.FixtureRequest, tmp_module: Path
) -> Iterator[tuple[Workers, SkewedClock]]:
    clock, where = SkewedClock(), tmp_module / request.param
    where.mkdir(exist_ok=True)
    with STORES[request.param](where, clock) as store:
        made = Workers(store)
        yield made, clock
        made.close()


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(plan=deliveries())
def test_every_resource_ends_at_its_newest_event(
    workers: tuple[Workers, SkewedClock], plan: list[Delivery]
) -> None:
    found, clock = workers
    found.run(clock, plan)


def test_the_events_listing_names_the_handlers_an_event_was_superseded_for(
    store: MemoryStore,
) -> None:
    from iverton_webhooks._operations import event_line

    seen = Seen()
    processor = Processor(store, seen.router())
    processor.process(record(store, "evt_new", 60))
    processor.process(record(store, "evt_old", 0))
    old, new = store.get("evt_old"), store.get("evt_new")
    assert old is not None
    assert new is not None
    guarded = f"{__name__}.Seen.router.<locals>.sync_deal"
    assert event_line(old).endswith(f"  (superseded for {guarded})")
    assert "superseded" not in event_line(new)
