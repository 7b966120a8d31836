"""The cost of bounding SQLite's write-ahead log, measured side by side in one run.

    python -m benchmarks.sqlite_wal             # 30 rounds of 2,000 acks per setting
    python -m benchmarks.sqlite_wal --quick

"old" is wave 1's setting (checkpoint every 10,000 pages, the WAL never cut back:
it grows to ~40 MB); "new" is the store's (SQLite's own checkpoint every 1,000 pages,
the file cut back to 4 MiB after a checkpoint a reader held back). Each round records a batch of
realistic events into each store, in an order that alternates, so both see the same
machine speed; the figure is the median over rounds of new/old acks per second, with
the largest -wal file each store reached.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timezone

from iverton_webhooks.inbox.sqlite import SQLiteStore

from .common import realistic_body

CREATED = datetime(2024, 1, 15, 10, 30, tzinfo=timezone.utc)


class Wave1WalStore(SQLiteStore):
    """The store with wave 1's WAL settings."""

    def _connect(self):  # type: ignore[no-untyped-def]
        conn = super()._connect()
        conn.execute("PRAGMA wal_autocheckpoint=10000")
        conn.execute("PRAGMA journal_size_limit=-1")  # never cut back
        return conn


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--batch", type=int, default=2000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    rounds, batch = (4, 500) if args.quick else (args.rounds, args.batch)
    rng = random.Random(7)
    bodies = [realistic_body(rng) for _ in range(batch)]
    with tempfile.TemporaryDirectory() as workdir:
        stores = {
            "old": Wave1WalStore(os.path.join(workdir, "old.sqlite3")),
            "new": SQLiteStore(os.path.join(workdir, "new.sqlite3")),
        }
        rates: dict[str, list[float]] = {name: [] for name in stores}
        largest = dict.fromkeys(stores, 0)
        for r in range(rounds):
            order = list(stores) if r % 2 == 0 else list(reversed(stores))
            for name in order:
                store, wal = stores[name], f"{stores[name].path}-wal"
                started = time.perf_counter()
                for n, body in enumerate(bodies):
                    store.record(f"evt_{r}_{n}", "deal.won", CREATED, body)
                    if n % 250 == 0:
                        largest[name] = max(largest[name], os.path.getsize(wal))
                rates[name].append(batch / (time.perf_counter() - started))
                largest[name] = max(largest[name], os.path.getsize(wal))
        for store in stores.values():
            store.close()
    ratios = [new / old for new, old in zip(rates["new"], rates["old"], strict=True)]
    print(f"{rounds} rounds x {batch} acks per setting (SQLiteStore.record, one thread)")
    print(f"{'setting':8} {'median acks/s':>14} {'largest -wal':>13}")
    for name in stores:
        print(f"{name:8} {statistics.median(rates[name]):14,.0f} {largest[name] / 1e6:11.1f} MB")
    print(f"new/old acks per second, median of per-round ratios: {statistics.median(ratios):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
