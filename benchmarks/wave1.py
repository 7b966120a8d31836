"""Wave 1 against now, side by side in one process: the ack and the processing.

    git worktree add /tmp/wave1 1b12079
    python -m benchmarks.wave1 --wave1 /tmp/wave1     # ~1 min
    python -m benchmarks.wave1 --wave1 /tmp/wave1 --quick

The wave-1 package is copied under another name (``iverton_wave1``) and imported next
to the current one, so both run in the same rounds on the same machine speed: each
figure is the median over rounds of now's time divided by wave 1's in the same round
(below 1.00: now is faster). Both use the same realistic signed events, a no-op
runner for the ack (processing measured on its own) and one no-op handler.
"""

from __future__ import annotations

import importlib
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import iverton_webhooks
from iverton_webhooks.events import parse_envelope

from .common import SECRET, Case, Delivery, Pool, alternate, common_args, machine, table

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


class Receive(Case):
    """``Receiver.receive`` of distinct events, each new to its store."""

    def __init__(self, name: str, pool: Pool, receiver: Any, fresh: Callable[[], Any] | None):
        self.name = name
        self.pool = pool
        self.receiver = receiver
        self.fresh = fresh
        self.batch: list[Delivery] = []

    def prepare(self, n: int) -> None:
        if self.fresh is not None:  # a MemoryStore would otherwise grow all run long
            self.receiver.store = self.fresh()
        self.batch = self.pool.take(self.name, n)

    def run(self, n: int) -> None:
        receive = self.receiver.receive
        for d in self.batch:
            receive("POST", d.body, d.headers)

    def check(self) -> None:
        self.prepare(1)
        reply = self.receiver.receive("POST", self.batch[0].body, self.batch[0].headers)
        if reply.body != b'{"status":"accepted"}':
            raise AssertionError(f"{self.name}: unexpected reply {reply}")


class Process(Case):
    """Processing stored pending events with one no-op handler (recorded untimed)."""

    def __init__(self, name: str, pool: Pool, store: Any, process: Callable[[str], Any]):
        self.name = name
        self.pool = pool
        self.store = store
        self.process = process
        self.batch: list[str] = []

    def prepare(self, n: int) -> None:
        self.batch = []
        for d in self.pool.take(self.name, n):
            envelope = parse_envelope(d.body)
            self.store.record(envelope.id, envelope.type, envelope.created_at, d.body)
            self.batch.append(envelope.id)

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
    processor_module = importlib.import_module("iverton_webhooks.processor")
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


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    parser.add_argument("--wave1", required=True, help="a checkout of wave 1 (1b12079)")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="iverton-wave1-")
    try:
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
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
