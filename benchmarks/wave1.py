"""Wave 1 against now, side by side in one process: the ack and the processing.

    git worktree add /tmp/wave1 1b12079
    python -m benchmarks.wave1 --wave1 /tmp/wave1     # ~2 min
    python -m benchmarks.wave1 --wave1 /tmp/wave1 --quick

The wave-1 package is copied under another name (``iverton_wave1``) and imported next
to the current one, so both run in the same rounds on the same machine speed: each
figure is the median over rounds of now's time divided by wave 1's in the same round
(below 1.00: now is faster). Both use the same realistic signed events, a no-op
runner for the ack (processing measured on its own) and one no-op handler.

SQLite acks are also measured one store per process, children started in turn: two
SQLite files written from one process share the file system's journal, so one store's
checkpoint fsyncs also flush the other's writes, which biases the in-process pair
against whichever checkpoints more often. Each child reports its time per ack over
the stdlib baseline (HMAC + ``json.loads``) it measures right after, on the same events;
"now, wave 1's WAL" is the current store checkpointing every 40 MiB of log (10,000 pages
of 4 KiB) as wave 1 did, which shows what bounding the WAL to a few MB costs.
"""

from __future__ import annotations

import argparse
import hmac
import importlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import iverton_webhooks

from .common import (
    SECRET,
    Case,
    Delivery,
    Pool,
    alternate,
    common_args,
    machine,
    make_deliveries,
    table,
)
from .common import SIGNATURE_HEADER as SIGNATURE
from .core import ProcessCase, ReceiveCase

WAVE1_NAME = "iverton_wave1"


def load_wave1(checkout: str, workdir: str) -> ModuleType:
    """Import the package of a wave-1 checkout as ``iverton_wave1``."""
    source = os.path.join(checkout, "iverton_webhooks")
    if not os.path.isfile(os.path.join(source, "__init__.py")):
        raise SystemExit(f"no iverton_webhooks package in {checkout}")
    shutil.copytree(source, os.path.join(workdir, WAVE1_NAME))
    sys.path.insert(0, workdir)
    return importlib.import_module(WAVE1_NAME)


class NullRunner:
    """Leaves every event pending (both waves' runner protocol): the ack path alone."""

    def bind(self, owner: object) -> None:
        pass

    def submit(self, event_id: str) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        pass

    def start(self) -> None:
        pass

    def startup(self) -> None:
        pass


def null_runner(package: ModuleType) -> Any:
    """Now's receiver wants a BaseRunner subclass; wave 1's any object with its methods."""
    runners = importlib.import_module(package.__name__ + ".runners")
    base = getattr(runners, "BaseRunner", None)
    if base is None:
        return NullRunner()
    return type("NullRunner", (base,), {"submit": lambda self, event_id: None})()


def noop_router(package: ModuleType) -> Any:
    router = package.Router()

    @router.on("*")
    def noop(event: object) -> None:
        return None

    return router


class Receive(ReceiveCase):
    """:class:`benchmarks.core.ReceiveCase` over a receiver of either wave."""

    def __init__(self, name: str, pool: Pool, receiver: Any, fresh: Callable[[], Any] | None):
        self.name = name
        self.pool = pool
        self.receiver = receiver
        self.fresh_store = fresh
        self.batch: list[Delivery] = []


class Process(ProcessCase):
    """:class:`benchmarks.core.ProcessCase` through either wave's processing call."""

    def __init__(self, name: str, pool: Pool, store: Any, process: Callable[[str], Any]):
        self.name = name
        self.pool = pool
        self.store = store
        self.process = process
        self.batch: list[str] = []

    def run(self, n: int) -> None:
        process = self.process
        for event_id in self.batch:
            process(event_id)

    def check(self) -> None:
        self.prepare(1)
        result = self.process(self.batch[0])
        if getattr(result, "value", result) != "done":
            raise AssertionError(f"{self.name}: processing gave {result}")


def build_cases(wave1: ModuleType, workdir: str) -> list[tuple[str, Case, Case]]:
    """(what, now's case, wave 1's case) for each thing compared."""
    pool = Pool()
    now = iverton_webhooks
    pairs: list[tuple[str, Case, Case]] = []

    def sqlite(package: ModuleType, name: str) -> Any:
        return package.SQLiteStore(os.path.join(workdir, f"{package.__name__}-{name}.sqlite3"))

    for label, store_of, fresh in (
        ("receive MemoryStore", lambda p: p.MemoryStore(), True),
        ("receive SQLiteStore", lambda p: sqlite(p, "receive"), False),
    ):
        built = []
        for package in (now, wave1):
            receiver = package.Receiver(
                SECRET,
                router=package.Router(),
                store=store_of(package),
                runner=null_runner(package),
            )
            fresh_store = package.MemoryStore if fresh else None
            built.append(Receive(f"{label} ({package.__name__})", pool, receiver, fresh_store))
        pairs.append((label, built[0], built[1]))

    worker = importlib.import_module(WAVE1_NAME + ".worker")
    processor_module = importlib.import_module("iverton_webhooks._processor")
    for label, store_of in (
        ("process MemoryStore", lambda p: p.MemoryStore()),
        ("process SQLiteStore", lambda p: sqlite(p, "process")),
    ):
        store = store_of(now)
        processor = processor_module.Processor(store, noop_router(now))
        ours = Process(f"{label} (now)", pool, store, processor.process)
        old_store, old_router = store_of(wave1), noop_router(wave1)
        theirs = Process(
            f"{label} (wave 1)",
            pool,
            old_store,
            lambda event_id, s=old_store, r=old_router: worker.process(s, r, event_id),
        )
        pairs.append((label, ours, theirs))
    return pairs


SEPARATE = {"wave 1": (WAVE1_NAME, None), "now": ("iverton_webhooks", None)}
SEPARATE["now, wave 1's WAL"] = ("iverton_webhooks", 10_000)


def sqlite_child(package_name: str, wal_pages: int | None, acks: int, workdir: str) -> None:
    """One process, one store: ``acks`` timed receives after a warm-up, then the stdlib
    baseline on the same events; prints the ratio."""
    package = importlib.import_module(package_name)
    # Wave 1's interval was in 4 KiB pages; a store with smaller pages gets as many bytes.
    page_size = getattr(importlib.import_module(f"{package_name}.inbox.sqlite"), "PAGE_SIZE", 4096)
    options = {} if wal_pages is None else {"wal_pages": wal_pages * 4096 // page_size}
    store = package.SQLiteStore(os.path.join(workdir, "child.sqlite3"), **options)
    receiver = package.Receiver(
        SECRET, router=package.Router(), store=store, runner=null_runner(package)
    )
    deliveries = make_deliveries(acks + acks // 4, seed=11)
    warm, timed = deliveries[: acks // 4], deliveries[acks // 4 :]
    for d in warm:
        receiver.receive("POST", d.body, d.headers)
    start = time.perf_counter()
    for d in timed:
        receiver.receive("POST", d.body, d.headers)
    ours = time.perf_counter() - start
    key = SECRET.encode()
    start = time.perf_counter()
    for d in timed:
        expected = "sha256=" + hmac.digest(key, d.body, "sha256").hex()
        hmac.compare_digest(expected, d.headers[SIGNATURE])
        json.loads(d.body)
    baseline = time.perf_counter() - start
    print(json.dumps({"us": ours / len(timed) * 1e6, "x_stdlib": ours / baseline}))


def separate_processes(checkout: str, rounds: int, acks: int) -> str:
    """Each setting in its own child process, in turn, ``rounds`` times."""
    figures: dict[str, list[dict[str, float]]] = {name: [] for name in SEPARATE}
    for _ in range(rounds):
        for name, (package_name, wal_pages) in SEPARATE.items():
            with tempfile.TemporaryDirectory(prefix="iverton-wave1-child-") as child_dir:
                argv = [sys.executable, "-m", "benchmarks.wave1", "--wave1", checkout]
                argv += ["--child", package_name, "--child-wal", str(wal_pages or 0)]
                argv += ["--child-acks", str(acks), "--child-dir", child_dir]
                done = subprocess.run(argv, capture_output=True, text=True, timeout=600)
                if done.returncode != 0:
                    raise SystemExit(f"child {name} failed: {done.stderr[-2000:]}")
                figures[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
    wave1 = statistics.median(f["x_stdlib"] for f in figures["wave 1"])
    rows = []
    for name, runs in figures.items():
        x_stdlib = statistics.median(f["x_stdlib"] for f in runs)
        rows.append((name, statistics.median(f["us"] for f in runs), x_stdlib, x_stdlib / wave1))
    return table(("receive SQLiteStore, own process", "µs/ack", "x stdlib", "/ wave 1"), rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    parser.add_argument("--wave1", required=True, help="a checkout of wave 1 (1b12079)")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    parser.add_argument("--child-wal", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-acks", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--child-dir", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="iverton-wave1-")
    try:
        if args.child:
            load_wave1(args.wave1, workdir)
            sqlite_child(args.child, args.child_wal or None, args.child_acks, args.child_dir)
            return 0
        wave1 = load_wave1(args.wave1, workdir)
        pairs = build_cases(wave1, workdir)
        rounds = 3 if args.quick else args.rounds
        print(f"# benchmarks.wave1: {machine()}")
        print(f"# {rounds} alternating rounds; ratio = now / wave 1 in the same round\n")
        rows = []
        for label, ours, theirs in pairs:
            results = alternate(
                [ours, theirs],
                references=[theirs.name],
                rounds=rounds,
                batch_s=0.001 if args.quick else 0.004,
            )
            rows.append(
                (
                    label,
                    results[theirs.name].median_us,
                    results[ours.name].median_us,
                    results[ours.name].ratio(theirs.name),
                )
            )
        print(table(("case", "wave 1 µs/op", "now µs/op", "now / wave 1"), rows))
        print()
        print(separate_processes(args.wave1, 1 if args.quick else 5, 400 if args.quick else 16_000))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
