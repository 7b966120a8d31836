"""The core's request and processing costs against the floor, the stdlib baseline and peers.

    python -m benchmarks.core              # full run: timings + instructions (~5 min)
    python -m benchmarks.core --no-ir      # timings only (~1 min)
    python -m benchmarks.core --quick      # smoke run
    python -m benchmarks.core --only endpoints   # 1,000 registered endpoints vs one static

Every receive case uses a runner whose ``submit`` does nothing, so it measures the ack
path alone (verify, parse, durable record); ``process`` is measured separately.
"""

from __future__ import annotations

import base64
import hmac
import importlib.util
import json
import os
import random
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from iverton_webhooks import MemoryStore, Receiver, Router, SQLiteStore, parse_event, sign, verify
from iverton_webhooks._answers import OK
from iverton_webhooks._processor import Processor
from iverton_webhooks._signature import SIGNATURE_HEADER, Verifier
from iverton_webhooks._worker import Result
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox.base import Store
from iverton_webhooks.runners import BaseRunner

from .common import (
    SECRET,
    Case,
    Delivery,
    FuncCase,
    Pool,
    alternate,
    common_args,
    ir_per_op,
    machine,
    make_deliveries,
    run_ir_case,
    table,
)


class NullRunner(BaseRunner):
    """A runner that leaves every event pending: isolates the cost of the ack path."""

    def submit(self, event_id: str, endpoint: str | None = None) -> None:
        pass


def noop_router(*, newest_only: bool = False) -> Router:
    """One no-op handler for every event type: the worker's own cost, nothing else's
    (``newest_only``: plus the out-of-order guard's, its mark taken and released)."""
    router = Router()

    @router.on("*", newest_only=newest_only)
    def noop(event: object) -> None:
        return None

    return router


FLOOR = "floor (hmac + compare_digest)"
BASELINE = "stdlib baseline (floor + json.loads)"
SVIX = "svix verify + json.loads"

# The reference implementations a user could write by hand -----------------------

_KEY = SECRET.encode()


def floor(d: Delivery) -> None:
    """HMAC of the raw body and a constant-time compare: nothing less is correct."""
    if not hmac.compare_digest(
        "sha256=" + hmac.digest(_KEY, d.body, "sha256").hex(), d.headers[SIGNATURE_HEADER]
    ):
        raise AssertionError("floor refused a valid signature")


def stdlib_baseline(d: Delivery) -> None:
    """The hand-written receiver: the floor plus ``json.loads`` into dicts."""
    floor(d)
    json.loads(d.body)


# Receive and process --------------------------------------------------------------


class ReceiveCase(Case):
    """``Receiver.receive`` on distinct events (each one new to its store).

    With ``fresh_store``, each batch starts on an empty store (untimed): used for the
    MemoryStore, a test double that would otherwise grow to every event of the run and
    charge Python's garbage collector for it; the durable stores keep growing (see
    ``benchmarks.scale`` for how little that matters)."""

    def __init__(
        self,
        name: str,
        pool: Pool,
        store: Store,
        fresh_store: Callable[[], Store] | None = None,
    ) -> None:
        self.name = name
        self.pool = pool
        self.fresh_store = fresh_store
        self.receiver = Receiver(SECRET, router=Router(), store=store, runner=NullRunner())
        self.batch: list[Delivery] = []

    def prepare(self, n: int) -> None:
        if self.fresh_store is not None:
            self.receiver.store = self.fresh_store()
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


# Registered endpoints ------------------------------------------------------------

ENDPOINTS = 1000
ENDPOINT_NAMES = [f"shop-{n:04d}" for n in range(ENDPOINTS)]
ENDPOINT_SECRETS = {name: f"whsec_{name}_Lp9RtV4nZ8cWb3Ky6Hd" for name in ENDPOINT_NAMES}


class Counted:
    """Counts the store calls that a fresh per-endpoint answer saves (the registry read,
    the answer log's clear), so a warm case can show it stayed warm."""

    misses = 0

    def get_endpoint(self, name: str) -> Any:
        self.misses += 1
        return super().get_endpoint(name)  # type: ignore[misc]

    def clear_failures(self, endpoint: str) -> None:
        self.misses += 1
        super().clear_failures(endpoint)  # type: ignore[misc]


class CountedMemoryStore(Counted, MemoryStore):
    pass


class CountedSQLiteStore(Counted, SQLiteStore):
    pass


def registered(store: Any) -> Any:
    for name in ENDPOINT_NAMES:
        store.add_endpoint(name, ENDPOINT_SECRETS[name])
    return store


class EndpointsReceiveCase(Case):
    """``Receiver.receive`` to ``ENDPOINTS`` endpoints registered in the store, each
    request to one of them at random, signed with its secret: the cost of a registered
    endpoint against ``static``, the same receive to the receiver's own endpoint.

    ``warm``: before each batch (untimed) the batch's names get fresh answers (the
    registry's, cached 5 s per name; the answer log's, 1 s), as under steady traffic to
    each endpoint; a batch that had to read either again fails the run. Cold: every
    answer is dropped before the batch and each request goes to another endpoint, as
    when each endpoint's traffic is sparser than those answers' lifetimes (one request
    in 5 s or more): each request then reads the registry and clears the answer count.
    ``fresh_store``: each batch on a new store (untimed), as the static MemoryStore case.
    """

    def __init__(
        self,
        name: str,
        static: str,
        pool: Pool,
        store: Store,
        fresh_store: Callable[[], Store] | None = None,
        *,
        warm: bool = True,
    ) -> None:
        self.name, self.static, self.pool = name, static, pool
        self.fresh_store, self.warm = fresh_store, warm
        self.receiver = self._receiver(registered(store))
        self.rng = random.Random(5)
        self.batch: list[tuple[str, bytes, dict[str, str]]] = []

    def _receiver(self, store: Store) -> Receiver:
        return Receiver(router=Router(), store=store, runner=NullRunner(), endpoint_registry=True)

    def prepare(self, n: int) -> None:
        if self.fresh_store is not None:
            self.receiver = self._receiver(registered(self.fresh_store()))
        if self.warm:
            names = [self.rng.choice(ENDPOINT_NAMES) for _ in range(n)]
        else:  # each request to an endpoint not asked for in this batch yet
            names = self.rng.sample(ENDPOINT_NAMES, min(n, ENDPOINTS))
            names += [self.rng.choice(ENDPOINT_NAMES) for _ in range(n - len(names))]
        self.batch = [
            (name, d.body, {**d.headers, SIGNATURE_HEADER: sign(d.body, ENDPOINT_SECRETS[name])})
            for name, d in zip(names, self.pool.take(self.name, n), strict=True)
        ]
        directory, answer_log = self.receiver.directory, self.receiver.answer_log
        assert directory is not None
        directory.forget()
        answer_log.quiet.clear()
        if self.warm:
            for name in set(names):
                directory.checker(name)
                answer_log.note(name, True, OK)
        self.receiver.store.misses = 0  # type: ignore[attr-defined]

    def run(self, n: int) -> None:
        receive = self.receiver.receive
        for name, body, headers in self.batch:
            receive("POST", body, headers, name)
        misses = self.receiver.store.misses  # type: ignore[attr-defined]
        if self.warm and misses:
            raise AssertionError(f"{self.name}: {misses} answers went stale within a batch")

    def check(self) -> None:
        self.prepare(1)
        name, body, headers = self.batch[0]
        reply = self.receiver.receive("POST", body, headers, name)
        if reply.body != b'{"status":"accepted"}':
            raise AssertionError(f"{self.name}: unexpected reply {reply}")


class InsertFloorCase(Case):
    """The floor of a durable ack: one autocommitted ``INSERT`` of the raw body under a
    unique key into a WAL-mode SQLite file (``synchronous=NORMAL``), and nothing else:
    no verification, no parsing, no dedupe answer."""

    name = "receive floor (sqlite3 INSERT alone)"

    def __init__(self, pool: Pool, path: str) -> None:
        self.pool = pool
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE IF NOT EXISTS t (id TEXT NOT NULL UNIQUE, body BLOB)")
        self.batch: list[tuple[str, bytes]] = []

    def prepare(self, n: int) -> None:
        self.batch = [(parse_envelope(d.body).id, d.body) for d in self.pool.take(self.name, n)]

    def run(self, n: int) -> None:
        execute = self.conn.execute
        for row in self.batch:
            execute("INSERT INTO t (id, body) VALUES (?, ?)", row)

    def check(self) -> None:
        self.prepare(1)
        self.run(1)


class ProcessCase(Case):
    """``Processor.process`` of stored pending events with one no-op handler (recorded
    untimed before each batch)."""

    def __init__(self, name: str, pool: Pool, store: Store, *, newest_only: bool = False) -> None:
        self.name = name
        self.pool = pool
        self.store = store
        self.processor = Processor(store, noop_router(newest_only=newest_only))
        self.batch: list[str] = []

    def prepare(self, n: int) -> None:
        self.batch = []
        for d in self.pool.take(self.name, n):
            envelope = parse_envelope(d.body)
            self.store.record(envelope.id, envelope.type, envelope.created_at, d.body)
            self.batch.append(envelope.id)

    def run(self, n: int) -> None:
        process = self.processor.process
        for event_id in self.batch:
            process(event_id)

    def check(self) -> None:
        self.prepare(1)
        result = self.processor.process(self.batch[0])
        if result is not Result.DONE:
            raise AssertionError(f"{self.name}: process gave {result}")


# Peers, each with the headers its own scheme needs -------------------------------


def peer_cases(deliveries: Sequence[Delivery]) -> dict[str, Callable[[], Case]]:
    """svix, standardwebhooks and stripe verifying the same bodies, each signed its way.
    Factories, so an instruction count imports only the peer it measures."""
    raw = bytes(range(24))
    std_secret = "whsec_" + base64.b64encode(raw).decode()
    now = datetime.now(timezone.utc)

    def svix_case() -> Case:
        from svix.webhooks import Webhook

        svix = Webhook(std_secret)
        items = []
        for i, d in enumerate(deliveries):
            headers = {
                "svix-id": f"msg_{i}",
                "svix-timestamp": str(int(now.timestamp())),
                "svix-signature": svix.sign(f"msg_{i}", now, d.body.decode()),
            }
            items.append((d.body, headers))

        def op(item: tuple[bytes, dict[str, str]]) -> None:
            svix.verify(item[0], item[1])  # returns None: the JSON is parsed next
            json.loads(item[0])

        return FuncCase(SVIX, op, items)

    def standard_case() -> Case:
        from standardwebhooks.webhooks import Webhook

        std = Webhook(std_secret)
        items = []
        for i, d in enumerate(deliveries):
            headers = {
                "webhook-id": f"msg_{i}",
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": std.sign(f"msg_{i}", now, d.body.decode()),
            }
            items.append((d.body, headers))

        def op(item: tuple[bytes, dict[str, str]]) -> None:
            std.verify(item[0], item[1])  # parses the JSON itself

        return FuncCase("standardwebhooks verify", op, items)

    def stripe_case() -> Case:
        import stripe

        secret = "whsec_" + raw.hex()
        stamp = int(time.time())
        items = []
        for d in deliveries:
            mac = hmac.new(secret.encode(), f"{stamp}.".encode() + d.body, "sha256").hexdigest()
            items.append((d.body, f"t={stamp},v1={mac}"))

        def op(item: tuple[bytes, str]) -> None:
            stripe.Webhook.construct_event(item[0], item[1], secret)

        return FuncCase("stripe construct_event", op, items)

    factories: dict[str, Callable[[], Case]] = {}
    for name, module, factory in (
        (SVIX, "svix", svix_case),
        ("standardwebhooks verify", "standardwebhooks", standard_case),
        ("stripe construct_event", "stripe", stripe_case),
    ):
        if importlib.util.find_spec(module) is None:
            print(
                f"  {module} not installed: pip install -r benchmarks/requirements.txt",
                file=sys.stderr,
            )
        else:
            factories[name] = factory
    return factories


# Assembly -------------------------------------------------------------------------


def build_cases(workdir: str, n_events: int, only: str | None = None) -> list[Case]:
    """Every case (or only the one named), over ``n_events`` distinct signed events."""
    deliveries = make_deliveries(n_events)
    pool = Pool()
    verifier = Verifier([SECRET])

    def ours_verify(d: Delivery) -> None:
        verify(d.body, d.headers[SIGNATURE_HEADER], SECRET)

    def ours_verifier(d: Delivery) -> None:
        verifier.verify(d.body, d.headers[SIGNATURE_HEADER])

    def ours_parse(d: Delivery) -> None:
        parse_event(d.body)

    def ours_envelope(d: Delivery) -> None:
        parse_envelope(d.body)

    def sqlite(name: str) -> SQLiteStore:
        return SQLiteStore(os.path.join(workdir, name))

    factories: dict[str, Callable[[], Case]] = {
        name: (lambda name=name, op=op: FuncCase(name, op, deliveries))  # type: ignore[misc]
        for name, op in (
            (FLOOR, floor),
            (BASELINE, stdlib_baseline),
            ("verify()", ours_verify),
            ("Verifier.verify", ours_verifier),
            ("parse_envelope", ours_envelope),
            ("parse_event", ours_parse),
        )
    }
    factories["receive MemoryStore"] = lambda: ReceiveCase(
        "receive MemoryStore", pool, MemoryStore(), fresh_store=MemoryStore
    )
    factories["receive SQLiteStore"] = lambda: ReceiveCase(
        "receive SQLiteStore", pool, sqlite("receive.sqlite3")
    )
    for kind, cold in (("", False), (", cold", True)):
        memory_name = f"receive MemoryStore, {ENDPOINTS:,} endpoints{kind}"
        factories[memory_name] = lambda name=memory_name, cold=cold: EndpointsReceiveCase(  # type: ignore[misc]
            name,
            "receive MemoryStore",
            pool,
            CountedMemoryStore(),
            fresh_store=CountedMemoryStore,
            warm=not cold,
        )
        sqlite_name = f"receive SQLiteStore, {ENDPOINTS:,} endpoints{kind}"
        factories[sqlite_name] = lambda name=sqlite_name, cold=cold: EndpointsReceiveCase(  # type: ignore[misc]
            name,
            "receive SQLiteStore",
            pool,
            CountedSQLiteStore(os.path.join(workdir, f"endpoints{int(cold)}.sqlite3")),
            warm=not cold,
        )
    factories[InsertFloorCase.name] = lambda: InsertFloorCase(
        pool, os.path.join(workdir, "floor.sqlite3")
    )
    factories["process MemoryStore"] = lambda: ProcessCase(
        "process MemoryStore", pool, MemoryStore()
    )
    factories["process SQLiteStore"] = lambda: ProcessCase(
        "process SQLiteStore", pool, sqlite("process.sqlite3")
    )
    factories["process MemoryStore, newest-only"] = lambda: ProcessCase(
        "process MemoryStore, newest-only", pool, MemoryStore(), newest_only=True
    )
    factories["process SQLiteStore, newest-only"] = lambda: ProcessCase(
        "process SQLiteStore, newest-only", pool, sqlite("guarded.sqlite3"), newest_only=True
    )
    factories.update(peer_cases(deliveries))
    if only is not None:
        return [factories[only]()] if only in factories else []
    return [factory() for factory in factories.values()]


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    parser.add_argument("--events", type=int, default=3000, help="distinct signed events")
    args = parser.parse_args(argv)
    workdir = tempfile.mkdtemp(prefix="iverton-bench-")
    try:
        if args.ir_case:
            run_ir_case(
                build_cases(workdir, 300, args.ir_case), args.ir_case, args.ir_ops, args.ir_most
            )
            return 0
        n_events = 200 if args.quick else args.events
        rounds = 3 if args.quick else args.rounds
        every = build_cases(workdir, n_events)
        # A registered endpoints case runs beside the static receive it is compared with.
        statics = {
            case.static
            for case in every
            if isinstance(case, EndpointsReceiveCase) and args.only in case.name
        }
        cases = [
            case
            for case in every
            if args.only in case.name or case.name in (FLOOR, BASELINE, SVIX, *statics)
        ]
        print(f"# benchmarks.core: {machine()}")
        print(f"# {n_events} distinct events, {rounds} alternating rounds\n")
        results = alternate(
            cases,
            references=[FLOOR, BASELINE, SVIX, *sorted(statics)],
            rounds=rounds,
            batch_s=0.001 if args.quick else 0.004,
        )
        if not args.no_ir and not args.quick:
            for case in cases:
                print(f"  counting instructions: {case.name}", file=sys.stderr)
                # Under cachegrind a warm endpoints batch must end within the answer
                # log's 1 s (it fails if not): fewer operations, for its static pair too.
                short = isinstance(case, EndpointsReceiveCase) or case.name in statics
                ops = (30, 180) if short else (200, 1200)
                results[case.name].ir_per_op = ir_per_op("benchmarks.core", case.name, ops)
        print(report(results))
        endpoint_cases = [case for case in cases if isinstance(case, EndpointsReceiveCase)]
        if endpoint_cases:
            print()
            print(endpoints_report(results, endpoint_cases))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def report(results: dict[str, Any]) -> str:
    floor_ir = results[FLOOR].ir_per_op
    base_ir = results[BASELINE].ir_per_op
    rows = []
    for name, m in results.items():
        rows.append(
            (
                name,
                m.median_us,
                1e6 / m.median_us,
                m.ratio(FLOOR),
                m.ratio(BASELINE),
                m.ratio(SVIX) if SVIX in m.ratios else None,
                None if m.ir_per_op is None else round(m.ir_per_op),
                None if m.ir_per_op is None or not floor_ir else m.ir_per_op / floor_ir,
                None if m.ir_per_op is None or not base_ir else m.ir_per_op / base_ir,
            )
        )
    return table(
        (
            "case",
            "median µs/op",
            "ops/s",
            "x floor",
            "x stdlib",
            "x svix",
            "instr/op",
            "instr x floor",
            "instr x stdlib",
        ),
        rows,
    )


def endpoints_report(results: dict[str, Any], cases: Sequence[EndpointsReceiveCase]) -> str:
    """Each registered endpoints case beside its static receive: time as the median of
    the per-round ratios, instructions as the ratio of the counts."""
    rows = []
    for case in cases:
        ours, static = results[case.name], results[case.static]
        ir = None
        if ours.ir_per_op is not None and static.ir_per_op:
            ir = ours.ir_per_op / static.ir_per_op
        rows.append(
            (
                case.name,
                ours.median_us,
                static.median_us,
                ours.ratio(case.static),
                None if ours.ir_per_op is None else round(ours.ir_per_op),
                None if static.ir_per_op is None else round(static.ir_per_op),
                ir,
            )
        )
    return table(
        (
            "case",
            "µs/op",
            "static µs/op",
            "x static",
            "instr/op",
            "static instr/op",
            "instr x static",
        ),
        rows,
    )


if __name__ == "__main__":
    raise SystemExit(main())
