"""Scenario (c), duplicate storm: half of the deliveries repeat an id seen recently.

    python -m benchmarks.duplicates           # timings + a correctness pass (~1 min)
    python -m benchmarks.duplicates --quick   # smoke run

Two parts:

1. Cost: ``receive`` on a stream where 50% of requests repeat one of the last 1,000 ids,
   against a stream of all-new events, alternating rounds, for MemoryStore and SQLiteStore.
   A duplicate must stay cheap (it is answered 200 without dispatch).
2. Correctness under the storm, with the library defaults (SQLiteStore, ThreadRunner):
   every request is acknowledged 2xx, each distinct event is stored once with its
   delivery count, and each handler runs once per distinct event.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Sequence

from iverton_webhooks import MemoryStore, Receiver, Router, SQLiteStore
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import Store
from iverton_webhooks.runners import ThreadRunner

from .common import SECRET, Case, Delivery, Pool, alternate, common_args, machine, table
from .core import NullRunner

WINDOW = 1_000  # "recent": a repeat picks one of the last WINDOW distinct ids


def storm(
    pool: Pool, consumer: str, n: int, rng: random.Random, recent: list[Delivery]
) -> list[Delivery]:
    """``n`` deliveries, each a repeat of a recent one with probability 1/2."""
    fresh = iter(pool.take(consumer, n))
    out = []
    for _ in range(n):
        if recent and rng.random() < 0.5:
            out.append(rng.choice(recent))
        else:
            d = next(fresh)
            recent.append(d)
            if len(recent) > WINDOW:
                del recent[: len(recent) - WINDOW]
            out.append(d)
    return out


class StreamCase(Case):
    """``receive`` over a stream of deliveries: all new, or a 50% duplicate storm."""

    def __init__(self, name: str, pool: Pool, store: Store, duplicates: bool) -> None:
        self.name = name
        self.pool = pool
        self.duplicates = duplicates
        self.receiver = Receiver(SECRET, router=Router(), store=store, runner=NullRunner())
        self._rng = random.Random(name)
        self._recent: list[Delivery] = []
        self.batch: list[Delivery] = []

    def prepare(self, n: int) -> None:
        if self.duplicates:
            self.batch = storm(self.pool, self.name, n, self._rng, self._recent)
        else:
            self.batch = self.pool.take(self.name, n)

    def run(self, n: int) -> None:
        receive = self.receiver.receive
        for d in self.batch:
            if receive("POST", d.body, d.headers).status != 200:
                raise AssertionError(f"{self.name}: a delivery was not acknowledged")


def correctness(workdir: str, n: int) -> list[tuple[object, ...]]:
    """The storm through the library defaults; returns rows for the report."""
    calls: dict[str, int] = {}
    lock = threading.Lock()
    router = Router()

    @router.on("*")
    def count(event: object) -> None:
        with lock:
            event_id = event.id  # type: ignore[attr-defined]
            calls[event_id] = calls.get(event_id, 0) + 1

    runner = ThreadRunner()
    receiver = Receiver(
        SECRET, router=router, store=SQLiteStore(os.path.join(workdir, "storm.db")), runner=runner
    )
    deliveries = storm(Pool(seed=99), "storm", n, random.Random(1), [])
    started = time.perf_counter()
    statuses = [receiver.receive("POST", d.body, d.headers).status for d in deliveries]
    elapsed = time.perf_counter() - started
    runner.join(timeout=60)
    distinct = {parse_envelope(d.body).id for d in deliveries}
    stored = receiver.store.count()
    events = receiver.store.list(limit=len(distinct) + 10)
    receiver.close()
    ok = sum(200 <= s < 300 for s in statuses)
    return [
        ("deliveries", n, "-"),
        ("answered 2xx", ok, "yes" if ok == n else "NO"),
        ("distinct ids", len(distinct), "-"),
        ("rows in the inbox", stored, "yes" if stored == len(distinct) else "NO"),
        (
            "sum of delivery counts",
            sum(e.deliveries for e in events),
            "yes" if sum(e.deliveries for e in events) == n else "NO",
        ),
        (
            "handler runs",
            sum(calls.values()),
            "yes" if calls.keys() == distinct and set(calls.values()) == {1} else "NO",
        ),
        ("ack throughput, req/s", round(n / elapsed), "-"),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    args = parser.parse_args(argv)
    rounds = 3 if args.quick else min(args.rounds, 150)
    workdir = tempfile.mkdtemp(prefix="iverton-dups-")
    try:
        pool = Pool()
        cases: list[Case] = []
        for label, make in (
            ("MemoryStore", lambda: MemoryStore()),
            ("SQLiteStore", lambda: SQLiteStore(os.path.join(workdir, f"{len(cases)}.db"))),
        ):
            cases.append(StreamCase(f"{label}, all new", pool, make(), duplicates=False))
            cases.append(StreamCase(f"{label}, 50% duplicates", pool, make(), duplicates=True))
        print(f"# benchmarks.duplicates: {machine()}")
        print(f"# {rounds} alternating rounds; repeats drawn from the last {WINDOW:,} ids\n")
        results = alternate(
            cases,
            references=[c.name for c in cases if not c.duplicates],  # type: ignore[attr-defined]
            rounds=rounds,
            batch_s=0.001 if args.quick else 0.005,
        )
        rows = []
        for case in cases:
            m = results[case.name]
            reference = case.name.split(",")[0] + ", all new"
            rows.append((case.name, m.median_us, m.ratio(reference)))
        print(table(("case", "median µs/request", "x all new (same store)"), rows))
        print("\n## Correctness under the storm (SQLiteStore + ThreadRunner, the defaults)\n")
        n = 300 if args.quick else 20_000
        print(table(("check", "value", "as promised"), correctness(workdir, n)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
