"""Fault campaign: real faults under load, then count what was lost or run twice.

    python -m benchmarks.faults              # 2 rounds (~1-2 min)
    python -m benchmarks.faults --rounds 5

Each round makes two runs against gunicorn (2 workers, the core WSGI app from
``tests/fault_app.py``, all on 127.0.0.1):

* ``sigkill``: SQLite inbox; the whole gunicorn process group is SIGKILLed under load
  (alternately with and without ``--preload``), then started again, and no request is
  sent after the restart.
* ``redis-outage``: the inbox is a private redis-server (AOF, ``appendfsync always``) on
  a free port; it is killed with SIGKILL under load and started again 1 s later. The
  load stops when Redis is back.

Printed per run: deliveries sent, acked (2xx), lost (acked but not in the inbox), double
runs (handler runs beyond the first, from the handlers' own effects file), left (acked
events still unprocessed when the run gave up) and the recovery time (from the restart
to every acked event processed, no traffic needed). Every wait is bounded.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iverton_webhooks.inbox import open_store
from tests.fault_app import (
    Gunicorn,
    Load,
    PrivateRedis,
    double_runs,
    effect_counts,
    missing_effects,
    send,
    statuses,
    temporary_directory,
    wait_until,
)

from .common import machine, table

RECOVERY_LIMIT = 60.0  # s; a run that has not recovered by then is reported with "left"


@dataclass
class Run:
    name: str
    sent: int
    acked: int
    lost: int
    double: int
    left: int
    recovery: float | None


def _env(directory: Path, store: str) -> dict[str, str]:
    return {
        "FAULT_STORE": store,
        "FAULT_EFFECTS": str(directory / "effects.sqlite3"),
        "FAULT_THREADS": "2",
        "FAULT_SLEEP": "0.02",  # handlers slower than acks: a backlog at the fault
        "FAULT_POLL": "1",
        "FAULT_LEASE": "4",
    }


def _outcome(name: str, load: Load, store_url: str, effects: str, restarted: float) -> Run:
    acked = load.acked_ids()
    recovered = wait_until(
        lambda: not missing_effects(acked, effect_counts(effects)), RECOVERY_LIMIT, 0.2
    )
    took = time.monotonic() - restarted if recovered else None
    store = open_store(store_url)
    try:
        inbox = statuses(store)
    finally:
        store.close()
    counts = effect_counts(effects)
    return Run(
        name,
        sent=len(load.sent),
        acked=len(acked),
        lost=sum(1 for event_id in acked if event_id not in inbox),
        double=double_runs(counts),
        left=len(missing_effects(acked, counts)),
        recovery=took,
    )


def sigkill_run(directory: Path, n: int, deliveries: int, preload: bool) -> Run:
    store_url = f"sqlite:///{directory / 'inbox.sqlite3'}"
    env = _env(directory, store_url)
    server = Gunicorn(env, workers=2, preload=preload)
    server.start()
    try:
        load = _load_until(server.port, f"evt_k{n}", deliveries, server.kill)
        server.start()  # no request from here on
        restarted = time.monotonic()
        name = "sigkill" + (" --preload" if preload else "")
        return _outcome(name, load, store_url, env["FAULT_EFFECTS"], restarted)
    finally:
        server.kill()


def redis_outage_run(directory: Path, n: int, deliveries: int) -> Run:
    with PrivateRedis(directory) as redis_server:
        env = _env(directory, redis_server.url)
        with Gunicorn(env, workers=2) as server:
            restarted = [0.0]

            def outage() -> None:
                redis_server.kill()
                time.sleep(1.0)
                redis_server.start()
                restarted[0] = time.monotonic()
                time.sleep(1.0)  # and some load after it is back

            load = _load_until(server.port, f"evt_r{n}", deliveries, outage)
            return _outcome(
                "redis-outage", load, redis_server.url, env["FAULT_EFFECTS"], restarted[0]
            )


def _load_until(port: int, prefix: str, deliveries: int, fault: Callable[[], None]) -> Load:
    """Send up to ``deliveries``; inject ``fault`` once a third of them are acked; stop
    sending once the fault's action has returned."""
    load, stop = Load(), threading.Event()
    sender = threading.Thread(
        target=send,
        args=(port, range(deliveries), prefix, load),
        kwargs={"stop": stop, "threads": 4},
        daemon=True,
    )
    sender.start()
    deadline = time.monotonic() + 60
    while len(load.acked) < deliveries // 3 and sender.is_alive() and time.monotonic() < deadline:
        time.sleep(0.005)
    fault()
    stop.set()
    sender.join(timeout=30)
    return load


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="rounds (each: both runs)")
    parser.add_argument("--deliveries", type=int, default=900, help="most sent per run")
    args = parser.parse_args()
    rounds = max(1, min(args.rounds, 20))
    deliveries = max(30, min(args.deliveries, 5000))
    print(f"# Fault campaign: {rounds} round(s), up to {deliveries} deliveries per run")
    print(f"# {machine()}")
    runs: list[Run] = []
    for n in range(rounds):
        with temporary_directory() as directory:
            runs.append(sigkill_run(directory, n, deliveries, preload=n % 2 == 1))
            print(_line(runs[-1]), flush=True)
        if PrivateRedis.available():
            with temporary_directory() as directory:
                runs.append(redis_outage_run(directory, n, deliveries))
                print(_line(runs[-1]), flush=True)
    print()
    print(
        table(
            ["run", "sent", "acked", "lost", "double runs", "left", "recovery s"],
            [(r.name, r.sent, r.acked, r.lost, r.double, r.left, r.recovery) for r in runs],
        )
    )
    lost = sum(r.lost for r in runs)
    left = sum(r.left for r in runs)
    print(f"\ntotal: lost {lost}, double runs {sum(r.double for r in runs)}, left {left}")


def _line(run: Run) -> str:
    recovery = "not within limit" if run.recovery is None else f"{run.recovery:.1f} s"
    return (
        f"{run.name}: sent {run.sent}, acked {run.acked}, lost {run.lost}, "
        f"double runs {run.double}, left {run.left}, recovery {recovery}"
    )


if __name__ == "__main__":
    main()
