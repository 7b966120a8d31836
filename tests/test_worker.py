from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from iverton_webhooks import (
    AsyncioRunner,
    Event,
    Receiver,
    Result,
    RetryPolicy,
    Router,
    SQLiteStore,
    Status,
    Store,
)
from iverton_webhooks._processor import Processor
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers
from tests.stores import STORE_PARAMS, STORES

NO_WAIT = RetryPolicy(max_attempts=4, base_delay=0, jitter=0)


def process(
    store: Store,
    router: Router,
    event_id: str,
    *,
    policy: RetryPolicy | None = None,
    lease_seconds: float = 300.0,
) -> Result:
    """One call of a processor built with these settings (what every runner does)."""
    lease = timedelta(seconds=lease_seconds)
    return Processor(store, router, retry=policy, lease=lease).process(event_id)


async def process_async(store: Store, router: Router, event_id: str) -> Result:
    return await Processor(store, router).process_async(event_id)


@pytest.fixture(params=STORE_PARAMS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    with STORES[request.param](tmp_path, time.time) as made:
        yield made


def stored(store: Store, event_id: str, event_type: str = "deal.won") -> str:
    body = sample_body(event_type, id=event_id)
    from iverton_webhooks.events import parse_envelope

    envelope = parse_envelope(body)
    store.record(envelope.id, envelope.type, envelope.created_at, body)
    return event_id


def test_fails_twice_then_succeeds_reruns_only_the_failing_handler(store: Store) -> None:
    router, calls = Router(), Counter[str]()

    @router.on("deal.won")
    def steady(event: Event) -> None:
        calls["steady"] += 1

    @router.on("deal.*")
    def flaky(event: Event) -> None:
        calls["flaky"] += 1
        if calls["flaky"] < 3:
            raise ConnectionError(f"try {calls['flaky']}")

    event_id = stored(store, "evt_flaky")
    results = [process(store, router, event_id, policy=NO_WAIT) for _ in range(4)]
    assert results == [Result.RETRY, Result.RETRY, Result.DONE, Result.SKIPPED]
    assert calls == {"steady": 1, "flaky": 3}
    final = store.get(event_id)
    assert final is not None
    assert (final.status, final.attempts, final.last_error) == (Status.DONE, 3, None)


def test_always_failing_handler_goes_dead_then_replay_brings_it_back(store: Store) -> None:
    router, fixed = Router(), threading.Event()

    @router.on("deal.won")
    def broken(event: Event) -> None:
        if not fixed.is_set():
            raise ValueError("bad data")

    event_id = stored(store, "evt_dead")
    results = [process(store, router, event_id, policy=NO_WAIT) for _ in range(5)]
    assert results == [Result.RETRY] * 3 + [Result.DEAD, Result.SKIPPED]
    dead = store.get(event_id)
    assert dead is not None
    assert dead.status is Status.DEAD
    assert dead.attempts == NO_WAIT.max_attempts
    assert "ValueError: bad data" in (dead.last_error or "")
    fixed.set()
    assert store.replay(event_id)
    assert process(store, router, event_id, policy=NO_WAIT) is Result.DONE


def test_retry_waits_for_its_backoff(store: Store) -> None:
    router = Router()
    router.on("*")(lambda event: 1 / 0)
    event_id = stored(store, "evt_backoff")
    policy = RetryPolicy(base_delay=3600, jitter=0)
    assert process(store, router, event_id, policy=policy) is Result.RETRY
    assert process(store, router, event_id, policy=policy) is Result.SKIPPED
    waiting = store.get(event_id)
    assert waiting is not None
    assert waiting.next_attempt_at is not None
    assert 3500 < waiting.next_attempt_at.timestamp() - store.clock() <= 3600


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=60, factor=3, max_delay=600, jitter=0)
    assert [policy.delay(n) for n in (1, 2, 3, 4)] == [60, 180, 540, 600]
    jittered = {round(RetryPolicy().delay(1)) for _ in range(50)}
    assert len(jittered) > 1
    assert all(45 <= d <= 75 for d in jittered)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


def test_a_worker_that_died_holding_the_lease_is_recovered_after_expiry(store: Store) -> None:
    router, calls = Router(), Counter[str]()
    router.on("*")(lambda event: calls.update(["h"]))
    event_id = stored(store, "evt_crash")
    assert store.claim(event_id, lease_seconds=0.2) is not None  # a worker that then died
    assert process(store, router, event_id) is Result.SKIPPED
    time.sleep(0.3)
    assert process(store, router, event_id) is Result.DONE
    assert calls["h"] == 1


def test_poison_event_that_kills_every_worker_goes_dead(store: Store) -> None:
    router = Router()
    router.on("*")(lambda event: None)
    event_id = stored(store, "evt_poison")
    policy = RetryPolicy(max_attempts=2)
    for _ in range(2):
        assert store.claim(event_id, lease_seconds=0) is not None  # each worker died
    assert process(store, router, event_id, policy=policy) is Result.DEAD
    dead = store.get(event_id)
    assert dead is not None
    assert dead.status is Status.DEAD
    assert "attempts used up" in (dead.last_error or "")


def test_slow_worker_that_lost_its_lease_does_not_overwrite(store: Store) -> None:
    slow_router, fast_router, release = Router(), Router(), threading.Event()
    slow_router.add(lambda event: release.wait(5), "*", name="handler")
    fast_router.add(lambda event: None, "*", name="handler")
    event_id = stored(store, "evt_slow")
    results: list[Result] = []

    class Partitioned:
        """The slow worker cannot reach the store to renew its lease (a network split)."""

        def __getattr__(self, name: str) -> object:
            return getattr(store, name)

        def renew(self, *args: object) -> bool:
            raise ConnectionError("unreachable")

    cut_off = Partitioned()
    slow = threading.Thread(
        target=lambda: results.append(process(cut_off, slow_router, event_id, lease_seconds=0.1))  # type: ignore[arg-type]
    )
    slow.start()
    time.sleep(0.3)  # the slow worker's lease has run out while its handler still runs
    assert process(store, fast_router, event_id, lease_seconds=30) is Result.DONE
    release.set()
    slow.join(5)
    assert results == [Result.LOST_LEASE]
    assert store.get(event_id).status is Status.DONE  # type: ignore[union-attr]


def test_processing_context_wraps_each_event() -> None:
    entered: list[str] = []

    @contextlib.contextmanager
    def context() -> Iterator[None]:
        entered.append("in")
        yield
        entered.append("out")

    router = Router()
    router.on("*")(lambda event: entered.append("handler"))
    receiver = Receiver(
        SECRET, router=router, store="memory://", runner="inline", process_context=context
    )
    body = sample_body("deal.won")
    receiver.receive("POST", body, signed_headers(body))
    assert entered == ["in", "handler", "out"]


def test_process_async_runs_async_handlers_on_the_loop_and_sync_ones_in_threads(
    store: Store,
) -> None:
    router, where = Router(), {}

    @router.on("deal.won")
    async def on_loop(event: Event) -> None:
        where["async"] = threading.get_ident()

    @router.on("deal.won")
    def in_thread(event: Event) -> None:
        where["sync"] = threading.get_ident()

    event_id = stored(store, "evt_async")

    async def main() -> Result:
        where["loop"] = threading.get_ident()
        return await process_async(store, router, event_id)

    assert asyncio.run(main()) is Result.DONE
    assert where["async"] == where["loop"]
    assert where["sync"] != where["loop"]


def test_asyncio_runner_drain_hands_unfinished_events_back_due_now(tmp_path: Path) -> None:
    router, calls = Router(), Counter[str]()

    @router.on("deal.won")
    async def quick(event: Event) -> None:
        calls["quick"] += 1

    @router.on("deal.won")
    async def slow(event: Event) -> None:
        await asyncio.sleep(30)
        calls["slow"] += 1

    path = tmp_path / "drain.db"
    runner = AsyncioRunner(poll_interval=60)
    receiver = Receiver(SECRET, router=router, store=SQLiteStore(path), runner=runner)
    body = sample_body("deal.won", id="evt_drain")

    async def serve() -> int:
        await runner.startup()
        reply = await receiver.receive_async("POST", body, signed_headers(body))
        assert reply.status == 200
        for _ in range(100):  # until the quick handler has run
            if calls["quick"]:
                break
            await asyncio.sleep(0.02)
        return await runner.drain(timeout=0.2)

    assert asyncio.run(serve()) == 1
    left = receiver.store.get("evt_drain")
    assert left is not None
    assert left.status is Status.FAILED
    assert left.succeeded_handlers == {name_of(quick)}
    assert left.next_attempt_at is not None

    # A restart with a fixed slow handler finishes the event and never re-runs `quick`.
    fresh = Router()
    fresh.add(lambda event: calls.update(["quick-again"]), "deal.won", name=name_of(quick))
    fresh.add(lambda event: calls.update(["slow-fixed"]), "deal.won", name=name_of(slow))
    restarted = Receiver(SECRET, router=fresh, store=SQLiteStore(path), runner="inline")
    assert restarted.recover() == {Result.DONE: 1}
    assert calls["slow-fixed"] == 1
    assert calls["quick-again"] == 0
    receiver.close()
    restarted.close()


def name_of(func: object) -> str:
    return f"{func.__module__}.{func.__qualname__}"  # type: ignore[attr-defined]


def test_retention_guard_on_prune(store: Store) -> None:
    receiver = Receiver(SECRET, store=store, runner="inline")
    with pytest.raises(ValueError, match="retry span"):
        receiver.prune(older_than=timedelta(hours=2))
    assert receiver.prune() == 0


def test_starting_a_thread_receiver_recovers_leftovers_without_a_request(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "left.db")
    stored(store, "evt_left_over")
    router, seen = Router(), threading.Event()
    router.on("*")(lambda event: seen.set())
    receiver = Receiver(SECRET, router=router, store=store, runner="thread")
    receiver.start()
    assert seen.wait(5)
    receiver.close()


def test_sync_handler_caught_by_shutdown_is_recorded_and_not_run_again(tmp_path: Path) -> None:
    calls = Counter[str]()

    def slow_sync(event: Event) -> None:
        time.sleep(0.4)  # still running in its thread when the drain gives up
        calls["slow_sync"] += 1

    router = Router()
    router.add(slow_sync, "deal.won", name="slow_sync")
    path = tmp_path / "shield.db"
    runner = AsyncioRunner(poll_interval=60)
    receiver = Receiver(SECRET, router=router, store=SQLiteStore(path), runner=runner)
    body = sample_body("deal.won", id="evt_shield")

    async def serve() -> int:
        await runner.startup()
        assert (await receiver.receive_async("POST", body, signed_headers(body))).status == 200
        await asyncio.sleep(0.1)
        return await runner.drain(timeout=0.05)

    assert asyncio.run(serve()) == 1
    left = receiver.store.get("evt_shield")
    assert left is not None
    assert left.succeeded_handlers == {"slow_sync"}  # the thread's real outcome was kept
    restarted = Receiver(SECRET, router=router, store=SQLiteStore(path), runner="inline")
    assert restarted.recover() == {Result.DONE: 1}
    assert calls["slow_sync"] == 1
    receiver.close()
    restarted.close()


def test_receive_async_attaches_the_asyncio_runner_without_lifespan(tmp_path: Path) -> None:
    router, seen = Router(), []

    @router.on("deal.won")
    async def handler(event: Event) -> None:
        seen.append(event.id)

    runner = AsyncioRunner(poll_interval=60)
    receiver = Receiver(SECRET, router=router, store=SQLiteStore(tmp_path / "a.db"), runner=runner)

    async def serve() -> None:
        body = sample_body("deal.won", id="evt_nolifespan")
        assert (await receiver.receive_async("POST", body, signed_headers(body))).status == 200
        for _ in range(100):
            if seen:
                return
            await asyncio.sleep(0.02)

    asyncio.run(serve())
    assert seen == ["evt_nolifespan"]


def test_a_process_that_can_start_no_thread_hands_events_back_and_says_so_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # An exiting interpreter (a gunicorn worker stopping mid-burst) refuses new threads:
    # each queued event is claimed, then cannot reach its handler's thread. It must be
    # handed back due now, not left leased, and the log must not get a line per event.
    calls = Counter[str]()
    router = Router()
    router.add(lambda event: calls.update([event.id]), "deal.won", name="count")
    store = SQLiteStore(tmp_path / "exiting.db")
    ids = [stored(store, f"evt_exit_{n}") for n in range(3)]

    def refused(self: Processor, func: object, *args: object) -> None:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    # As ThreadRunner runs a SQLite store: store calls on the loop, handlers in threads.
    runner = AsyncioRunner(poll_interval=60, store_calls_here=True)
    runner.bind(Processor(store, router, lease=timedelta(seconds=300)))

    async def exiting() -> None:
        await runner.startup()
        for event_id in ids:
            runner.submit(event_id)
        await runner.idle()
        await runner.drain()

    with monkeypatch.context() as patch, caplog.at_level("WARNING", "iverton_webhooks"):
        patch.setattr(Processor, "_in_thread", refused)
        asyncio.run(exiting())
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(said) == 1, said
    assert "left for recovery" in said[0]
    # Each was claimed, then handed back: all due at once, their handler never run.
    assert sorted(store.due(10)) == sorted(ids)
    assert {store.get(i).status for i in ids} == {Status.FAILED}  # type: ignore[union-attr]
    assert not calls
    assert Processor(store, router).recover() == {Result.DONE: 3}
    assert calls == Counter(ids)
    store.close()


EXITING_APP = textwrap.dedent(
    """
    import sys, time
    from iverton_webhooks import Receiver, Router, SQLiteStore, sign
    from iverton_webhooks.samples import sample_body

    db, ran = sys.argv[1], sys.argv[2]
    router = Router()

    @router.on("deal.won")
    def slow(event):
        time.sleep(0.3)
        with open(ran, "a") as out:
            out.write(event.id + "\\n")

    receiver = Receiver("whsec_exit_test_0123456789", router=router, store=SQLiteStore(db))
    for n in range(12):
        body = sample_body("deal.won", id=f"evt_exit_{n}")
        headers = {"X-Iverton-Signature": sign(body, "whsec_exit_test_0123456789")}
        assert receiver.receive("POST", body, headers).status == 200
    time.sleep(0.1)  # handlers are running: the process exits under them
    """
)


def test_an_exiting_process_records_what_its_handlers_finished_and_hands_back_the_rest(
    tmp_path: Path,
) -> None:
    # A server stopping its worker: the thread runner's loop is a daemon thread. What a
    # handler finished must be recorded before it stops (else it runs again after its
    # lease), and what never started must be due at once, not leased.
    db, ran = tmp_path / "exit.db", tmp_path / "ran.txt"
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", EXITING_APP, str(db), str(ran)],
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    handled = ran.read_text().split()
    assert handled  # some handlers were running when it exited
    store = SQLiteStore(db)
    events = {event.id: event for event in store.list(limit=100)}
    assert len(events) == 12
    assert {i for i, e in events.items() if e.status is Status.DONE} == set(handled)
    assert not [i for i, e in events.items() if e.status is Status.PROCESSING]
    assert sorted(store.due(100)) == sorted(set(events) - set(handled))
    store.close()
