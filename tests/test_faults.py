"""Faults on real servers (issue 12): the store dies between handlers, a handler hangs,
the web server is SIGKILLed under load and restarted with no traffic.

Every fault here is real: a private redis-server killed with SIGKILL, a tmpfs filled to
the last byte, gunicorn's whole process group killed. Handlers record each run in a
separate SQLite file (or a list), so a double run is counted, never guessed.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import Event, PostgresStore, Receiver, RetryPolicy, Router, SQLiteStore
from iverton_webhooks.samples import sample_body
from tests.conftest import mounted_tmpfs, signed_headers
from tests.fault_app import (
    HANG_PREFIX,
    SECRET,
    Gunicorn,
    Load,
    PrivatePostgres,
    PrivateRedis,
    double_runs,
    effect_counts,
    missing_effects,
    receiver_options,
    send,
    send_until_killed,
    statuses,
    temporary_directory,
    wait_until,
)

pytestmark = pytest.mark.slow

LEASE = 3.0  # the store may be down for up to half of it


def _receiver(
    store: Any, runs: list[str], fault: str, inject: Any, lease: float = LEASE
) -> Receiver:
    """Two handlers that record their runs in ``runs``; the one named ``fault`` calls
    ``inject`` (once) right after its own work, i.e. before its success is written."""
    router = Router()
    injected = threading.Event()

    def handler(name: str) -> Any:
        def run(event: Event[Any]) -> None:
            runs.append(name)
            if name == fault and not injected.is_set():
                injected.set()
                inject()

        run.__name__ = name
        return run

    router.add(handler("first"), "deal.*", name="first")
    router.add(handler("second"), "deal.*", name="second")
    return Receiver(
        secret=SECRET,
        router=router,
        store=store,
        runner="inline",
        retry=RetryPolicy(max_attempts=5, base_delay=0.1, jitter=0),
        **receiver_options(lease=timedelta(seconds=lease)),
    )


# Item 2: a store fault between handlers or at the final write ------------------------


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if not PrivateRedis.available():
        pytest.skip("redis-server is not installed")
    with PrivateRedis(tmp_path) as server:
        yield server


@pytest.mark.parametrize("fault", ["first", "second"])
def test_redis_killed_mid_event_runs_each_handler_once(
    private_redis: PrivateRedis, fault: str
) -> None:
    # "first": the checkpoint after the first handler meets a dead Redis;
    # "second": the final write does. Redis comes back (from its AOF) 0.4 s later.
    runs: list[str] = []
    outage: list[threading.Thread] = []

    def kill_redis() -> None:
        private_redis.kill()
        outage.append(private_redis.restart_after(0.4))

    receiver = _receiver(private_redis.url, runs, fault, kill_redis)
    try:
        body = sample_body("deal.won", id="evt_redis_fault")
        receiver.receive("POST", body, signed_headers(body, SECRET))
        assert outage, "the fault was not injected"
        _deliver_then_recover_tail(receiver, outage[0])
        assert sorted(runs) == ["first", "second"]  # each handler exactly once
        event = receiver.store.get("evt_redis_fault")
        assert event is not None
        assert event.status.value == "done"
    finally:
        receiver.close()


def _deliver_then_recover_tail(
    receiver: Receiver, outage: threading.Thread, lease: float = LEASE
) -> None:
    outage.join(timeout=30)
    # Past the lease: whatever was left half-done is due again, and recovery takes it.
    time.sleep(lease + 0.5)
    receiver.recover()


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    if PrivatePostgres.bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Not under pytest's tmp_path: the postgres user cannot enter root's private folder.
    with temporary_directory() as directory, PrivatePostgres(directory) as server:
        yield server


@pytest.mark.parametrize("fault", ["first", "second"])
def test_postgres_stopped_mid_event_runs_each_handler_once(
    private_postgres: PrivatePostgres, fault: str
) -> None:
    # pg_ctl stop -m immediate (no checkpoint, connections cut) right after the handler's
    # work; started again 0.3 s later, after crash recovery.
    runs: list[str] = []
    outage: list[threading.Thread] = []

    def stop_postgres() -> None:
        private_postgres.stop()
        outage.append(private_postgres.restart_after(0.3))

    lease = 8.0  # the write is retried for half of it; a restart takes about 1 s here
    store = PostgresStore(private_postgres.url, table=f"faults_{fault}")
    receiver = _receiver(store, runs, fault, stop_postgres, lease)
    try:
        body = sample_body("deal.won", id="evt_pg_fault")
        receiver.receive("POST", body, signed_headers(body, SECRET))
        assert outage, "the fault was not injected"
        _deliver_then_recover_tail(receiver, outage[0], lease)
        assert sorted(runs) == ["first", "second"]
        event = receiver.store.get("evt_pg_fault")
        assert event is not None
        assert event.status.value == "done"
    finally:
        receiver.close()


@pytest.fixture
def small_tmpfs(tmp_path: Path) -> Iterator[Path]:
    with mounted_tmpfs(tmp_path / "tmpfs", "4m") as mount:
        yield mount


def _fill(directory: Path) -> Path:
    """Fill the file system holding ``directory`` to the last byte."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as out:
        for size in (1 << 20, 1 << 16, 1 << 12, 1 << 8, 1):
            try:
                while True:
                    out.write(b"\0" * size)
            except OSError:
                pass
    return filler


def _after(delay: float, action: Any) -> threading.Thread:
    def later() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("fault", ["first", "second"])
def test_sqlite_disk_full_mid_event_runs_each_handler_once(small_tmpfs: Path, fault: str) -> None:
    # A real full disk: the inbox is on a 4 MB tmpfs that the handler fills; the space is
    # freed 0.4 s later.
    runs: list[str] = []
    outage: list[threading.Thread] = []
    probe_failed: list[bool] = []

    def fill_disk() -> None:
        filler = _fill(small_tmpfs)
        try:
            (small_tmpfs / "probe").write_bytes(b"x" * 4096)
            probe_failed.append(False)
        except OSError:
            probe_failed.append(True)
        outage.append(_after(0.4, filler.unlink))

    store = SQLiteStore(small_tmpfs / "inbox.sqlite3")
    receiver = _receiver(store, runs, fault, fill_disk)
    try:
        body = sample_body("deal.won", id="evt_disk_full")
        receiver.receive("POST", body, signed_headers(body, SECRET))
        assert probe_failed == [True], "the disk was not full"
        _deliver_then_recover_tail(receiver, outage[0])
        assert sorted(runs) == ["first", "second"]
        event = receiver.store.get("evt_disk_full")
        assert event is not None
        assert event.status.value == "done"
    finally:
        receiver.close()


# Item 3: hung handlers on a real multi-process server --------------------------------


def test_hung_handlers_do_not_stall_gunicorn(tmp_path: Path) -> None:
    # 2 gunicorn workers x 2 runner threads: four hanging events would hold every runner
    # thread if a handler could hold one for ever.
    env = {
        "FAULT_STORE": f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
        "FAULT_EFFECTS": str(tmp_path / "effects.sqlite3"),
        "FAULT_THREADS": "2",
        "FAULT_POLL": "0.5",
        "FAULT_TIMEOUT": "1",
        "FAULT_LEASE": "30",
        "FAULT_MAX_ATTEMPTS": "2",
        "FAULT_BASE_DELAY": "0",
    }
    store = SQLiteStore(tmp_path / "inbox.sqlite3")
    with Gunicorn(env, workers=2) as server:
        hung = send(server.port, range(4), HANG_PREFIX, Load(), threads=4)
        time.sleep(0.5)  # the hung handlers are running before the normal load arrives
        normal = send(server.port, range(100), "evt_normal", Load(), threads=4)
        assert len(hung.acked) == 4
        assert len(normal.acked) == 100
        acked = normal.acked_ids()

        def normal_done() -> bool:
            return not missing_effects(acked, effect_counts(env["FAULT_EFFECTS"]))

        assert wait_until(normal_done, timeout=20), (
            f"normal events stalled behind hung ones: {Counter(statuses(store).values())}; "
            f"server log: {server.log}"
        )

        def hung_dead() -> bool:
            found = statuses(store)
            return all(found.get(event_id) == "dead" for event_id, _ in hung.acked)

        assert wait_until(hung_dead, timeout=15), statuses(store)
        for event_id, _ in hung.acked:
            event = store.get(event_id)
            assert event is not None
            assert (event.last_error or "").endswith("first: timed out after 1 s")
            assert event.attempts == 2
        found = statuses(store)
        assert all(found[event_id] == "done" for event_id in acked)
        assert "processing" not in found.values()
        assert double_runs(effect_counts(env["FAULT_EFFECTS"])) == 0
    store.close()


# Item 1: SIGKILL under load, restart, no traffic --------------------------------------


@pytest.mark.parametrize(
    ("flask", "preload"),
    [(False, False), (False, True), (True, False)],
    ids=["wsgi", "wsgi-preload", "flask"],
)
def test_restart_after_sigkill_recovers_without_traffic(
    tmp_path: Path, flask: bool, preload: bool
) -> None:
    env = {
        "FAULT_STORE": f"sqlite:///{tmp_path / 'inbox.sqlite3'}",
        "FAULT_EFFECTS": str(tmp_path / "effects.sqlite3"),
        "FAULT_THREADS": "2",
        "FAULT_SLEEP": "0.02",  # slower than the acks, so a backlog is there at the kill
        "FAULT_POLL": "1",
        "FAULT_LEASE": "4",
    }
    server = Gunicorn(env, workers=2, preload=preload, flask=flask)
    server.start()
    try:
        load = send_until_killed(
            server.port,
            "evt_kill",
            server.kill,
            kill_after_acks=300,
            limit=2000,
            path=server.path,
        )
        acked = load.acked_ids()
        effects = env["FAULT_EFFECTS"]
        backlog = missing_effects(acked, effect_counts(effects))
        assert len(backlog) > 20, "no backlog at the kill: the test would prove nothing"

        store = SQLiteStore(tmp_path / "inbox.sqlite3")
        assert set(acked) <= set(statuses(store)), "an acked event is not in the inbox"
        server.start()  # and no request from here on
        restarted = time.monotonic()
        recovered = wait_until(lambda: not missing_effects(acked, effect_counts(effects)), 15)
        left = missing_effects(acked, effect_counts(effects))
        if not recovered:
            server.dump_stacks()  # every thread's stack, into the server log
        stuck = [(e.id, e.status.value, e.lease_until) for e in map(store.get, left) if e]
        assert recovered, (
            f"{len(left)} of {len(acked)} acked events unprocessed 15 s after restart: "
            f"{stuck[:5]}; server log (stacks at the end): {server.log}"
        )
        took = time.monotonic() - restarted
        found = statuses(store)
        assert wait_until(lambda: all(statuses(store)[i] == "done" for i in acked), 5), found
        store.close()
        print(f"backlog {len(backlog)} of {len(acked)} acked; recovered in {took:.1f} s")
    finally:
        server.kill(signal.SIGKILL)
