"""Scenario (a), slow handlers: every handler takes 1 s; requests arrive at a fixed 500/s.

    python -m benchmarks.slow_handlers           # 2 x 10 s per runner (~45 s)
    python -m benchmarks.slow_handlers --quick   # smoke run

The promise under test: the ack does not wait for handlers, so its latency must not
follow handler time. Each run sends deliveries on an open-loop schedule (one every
2 ms, whatever happened to the previous one) through the library defaults (SQLiteStore
and the thread runner; then the asyncio runner with ``receive_async``), once with no-op
handlers and once with handlers that take 1 s. Latency is measured from each request's
*scheduled* time, so a stall that delays the requests behind it is counted in full.

Targets: slow-handler ack p99 <= 1.5x the fast-handler p99, and no ack over 100 ms.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence

from iverton_webhooks import AsyncioRunner, Receiver, Router, SQLiteStore, ThreadRunner

from .common import SECRET, Pool, common_args, machine, table

RATE = 500.0
HANDLER_SECONDS = 1.0


def make_router(slow: bool, stop: threading.Event, is_async: bool) -> Router:
    router = Router()
    if is_async:

        @router.on("*")
        async def handler_async(event: object) -> None:
            if slow:
                await asyncio.sleep(HANDLER_SECONDS)

    else:

        @router.on("*")
        def handler(event: object) -> None:
            # Waits on the stop flag, not sleep(): after the measured window the
            # backlog drains at once instead of keeping the process busy for minutes.
            if slow:
                stop.wait(HANDLER_SECONDS)

    return router


def percentiles(latencies: list[float]) -> dict[str, float]:
    ordered = sorted(latencies)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {
        "p50": at(0.50),
        "p99": at(0.99),
        "max": ordered[-1] * 1000,
        "mean": statistics.fmean(ordered) * 1000,
        "over_100ms": float(sum(1 for x in ordered if x > 0.1)),
    }


def run_threaded(
    workdir: str, slow: bool, seconds: float, pool: Pool, tag: str
) -> dict[str, float]:
    stop = threading.Event()
    runner = ThreadRunner()
    receiver = Receiver(
        SECRET,
        router=make_router(slow, stop, is_async=False),
        store=SQLiteStore(os.path.join(workdir, f"{tag}.db")),
        runner=runner,
    )
    deliveries = pool.take(tag, int(seconds * RATE))
    receiver.receive("POST", deliveries[0].body, deliveries[0].headers)  # connect, start threads
    latencies = []
    start = time.perf_counter() + 0.05
    for i, d in enumerate(deliveries[1:]):
        due = start + i / RATE
        pause = due - time.perf_counter()
        if pause > 0:
            time.sleep(pause)
        status = receiver.receive("POST", d.body, d.headers).status
        latencies.append(time.perf_counter() - due)
        if status != 200:
            raise AssertionError(f"ack {status}")
    stop.set()
    runner.join(timeout=30)
    receiver.close(timeout=1)
    return percentiles(latencies)


def run_asyncio(workdir: str, slow: bool, seconds: float, pool: Pool, tag: str) -> dict[str, float]:
    stop = threading.Event()
    runner = AsyncioRunner(max_concurrency=10_000)
    receiver = Receiver(
        SECRET,
        router=make_router(slow, stop, is_async=True),
        store=SQLiteStore(os.path.join(workdir, f"{tag}.db")),
        runner=runner,
    )
    deliveries = pool.take(tag, int(seconds * RATE))

    async def one(due: float, body: bytes, headers: dict[str, str], out: list[float]) -> None:
        reply = await receiver.receive_async("POST", body, headers)
        out.append(time.perf_counter() - due)
        if reply.status != 200:
            raise AssertionError(f"ack {reply.status}")

    async def drive() -> list[float]:
        await runner.startup()
        latencies: list[float] = []
        first = deliveries[0]
        await receiver.receive_async("POST", first.body, first.headers)
        start = time.perf_counter() + 0.05
        requests = []
        for i, d in enumerate(deliveries[1:]):
            due = start + i / RATE
            pause = due - time.perf_counter()
            if pause > 0:
                await asyncio.sleep(pause)
            # Each request is its own task, as an ASGI server would run it.
            requests.append(asyncio.ensure_future(one(due, d.body, d.headers, latencies)))
        await asyncio.gather(*requests)
        await runner.drain(timeout=HANDLER_SECONDS + 5)
        return latencies

    latencies = asyncio.run(drive())
    receiver.close(timeout=1)
    return percentiles(latencies)


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run")
    args = parser.parse_args(argv)
    seconds = 0.4 if args.quick else args.seconds
    workdir = tempfile.mkdtemp(prefix="iverton-slow-")
    rows = []
    verdicts = []
    try:
        pool = Pool()
        print(f"# benchmarks.slow_handlers: {machine()}")
        print(
            f"# {RATE:.0f} req/s open loop, {seconds:g} s per run, handlers {HANDLER_SECONDS} s\n"
        )
        for label, run in (("thread runner", run_threaded), ("asyncio runner", run_asyncio)):
            fast = run(workdir, False, seconds, pool, f"{label}-fast")
            slow = run(workdir, True, seconds, pool, f"{label}-slow")
            for kind, r in (("no-op handlers", fast), ("1 s handlers", slow)):
                rows.append((label, kind, r["p50"], r["p99"], r["max"], int(r["over_100ms"])))
            ratio = slow["p99"] / fast["p99"]
            over = int(slow["over_100ms"])
            verdicts.append(
                f"- {label}: slow/fast ack p99 = {ratio:.2f}x (target <= 1.5x: "
                f"{'met' if ratio <= 1.5 else 'MISSED'}); acks over 100 ms: "
                f"{over} (target 0: {'met' if not over else 'MISSED'})"
            )
        print(
            table(
                ("runner", "handlers", "ack p50 ms", "ack p99 ms", "ack max ms", "acks > 100 ms"),
                rows,
            )
        )
        print()
        print("\n".join(verdicts))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
