"""Scenario (b), scale: ``receive`` cost with 0, 100k and 1M events already in the inbox.

    python -m benchmarks.scale           # builds the big inboxes once (~1 min), then measures
    python -m benchmarks.scale --quick   # smoke run: 0 / 1k / 5k stored events

The pre-filled inboxes look like a week of history: done events of mixed types with
realistic bodies (stored once, then copied row by row, so building 1M rows is quick).
They are cached in ``--cache-dir`` and reused by later runs. Measured with the default
durable store (SQLiteStore, WAL, synchronous=NORMAL) and a runner that does nothing, so
the figure is the ack path alone.
"""

from __future__ import annotations

import os
import random
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator, Sequence

from iverton_webhooks import SQLiteStore
from iverton_webhooks.events import EVENT_TYPES

from .common import Case, Pool, alternate, common_args, machine, table
from .core import ReceiveCase

DEFAULT_CACHE = os.path.join(tempfile.gettempdir(), "iverton-bench-scale")


def history_rows(n: int, seed: int = 3) -> Iterator[tuple[object, ...]]:
    """``n`` finished events spread over the last 7 days, as SQLiteStore would hold them."""
    rng = random.Random(seed)
    pool = Pool(seed=seed)
    templates = [d.body for d in pool.take("history", 500)]
    now = time.time()
    for i in range(n):
        received = now - 7 * 86400 * (1 - i / max(n, 1))
        yield (
            f"evt_hist_{i:09d}_{rng.getrandbits(32):08x}",
            EVENT_TYPES[i % len(EVENT_TYPES)],
            received - 1.0,
            received,
            templates[i % len(templates)],
            "done",
            1,
            1,
            None,
            received + 0.01,
            '{"app.handler":{"ok":true,"error":null,"at":0}}',
        )


def build_inbox(path: str, n: int) -> None:
    """Create (once) an inbox file with ``n`` finished events, through the store's own schema."""
    if os.path.exists(path):
        return
    partial = path + ".partial"
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(partial + suffix):
            os.remove(partial + suffix)
    SQLiteStore(partial).close()  # the schema, exactly as the library creates it
    conn = sqlite3.connect(partial, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO iverton_events (id, type, created_at, received_at, body, status, "
        "attempts, deliveries, due_at, processed_at, outcomes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        history_rows(n),
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        if os.path.exists(partial + suffix):
            os.remove(partial + suffix)
    os.rename(partial, path)


def inbox_bytes(path: str) -> int:
    return sum(os.path.getsize(path + s) for s in ("", "-wal") if os.path.exists(path + s))


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    parser.add_argument("--cache-dir", default=DEFAULT_CACHE, help="where big inboxes are kept")
    args = parser.parse_args(argv)
    sizes = (0, 1_000, 5_000) if args.quick else (0, 100_000, 1_000_000)
    rounds = 3 if args.quick else min(args.rounds, 150)
    cache = tempfile.mkdtemp(prefix="iverton-scale-") if args.quick else args.cache_dir
    workdir = tempfile.mkdtemp(prefix="iverton-scale-run-")
    os.makedirs(cache, exist_ok=True)
    try:
        pool = Pool()
        cases: list[Case] = []
        paths: dict[str, str] = {}
        for size in sizes:
            name = f"receive, {size:,} stored"
            path = os.path.join(workdir, f"{size}.sqlite3")
            if size:
                cached = os.path.join(cache, f"inbox-{size}.sqlite3")
                started = time.monotonic()
                build_inbox(cached, size)
                if time.monotonic() - started > 1:
                    print(f"  built {cached} in {time.monotonic() - started:.0f} s")
                # Measure on a copy: the cached file stays exactly `size` events.
                shutil.copyfile(cached, path)
            paths[name] = path
            cases.append(ReceiveCase(name, pool, SQLiteStore(path)))
        for case in cases:  # warm the page cache and the connection
            assert isinstance(case, ReceiveCase)
            case.receiver.store.count()
        print(f"# benchmarks.scale: {machine()}")
        print(f"# SQLiteStore, {rounds} alternating rounds; ratio to the empty inbox\n")
        reference = cases[0].name
        results = alternate(
            cases,
            references=[reference],
            rounds=rounds,
            batch_s=0.001 if args.quick else 0.005,
        )
        rows = []
        for case in cases:
            assert isinstance(case, ReceiveCase)
            m = results[case.name]
            rows.append(
                (
                    case.name,
                    m.median_us,
                    m.ratio(reference),
                    case.receiver.store.count(),
                    f"{inbox_bytes(paths[case.name]) / 1e6:,.1f} MB",
                )
            )
            case.receiver.close()
        print(
            table(
                ("case", "median µs/op", "x empty inbox", "events after run", "inbox on disk"),
                rows,
            )
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if args.quick:
            shutil.rmtree(cache, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
