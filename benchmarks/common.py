"""Shared machinery for the benchmarks: realistic signed events, alternating rounds,
instruction counts under cachegrind, and plain-text tables.

Why alternating rounds: a core on these machines flips between two speeds about 1.8x
apart, every fraction of a second to several seconds. Timing case A for a minute and
then case B compares two different machines. Instead every round runs every case for a
few milliseconds, back to back, and each figure is the median over rounds of the ratio
to the reference measured *in the same round*, which cancels the speed state.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from iverton_webhooks import SIGNATURE_HEADER, sign
from iverton_webhooks.events import EVENT_TYPES
from iverton_webhooks.samples import sample_event

SECRET = "whsec_benchmark_7Qm2xLp9RtV4nZ8cWb3Ky6Hd"
VALGRIND = "/usr/bin/valgrind"


# Events ---------------------------------------------------------------------------


def realistic_body(rng: random.Random, event_type: str | None = None, **overrides: Any) -> bytes:
    """A sample event of a random type padded with custom fields to 300-700 bytes, the
    size range of real CRM events (the bare samples are 210-380 bytes)."""
    event_type = event_type or rng.choice(EVENT_TYPES)
    target = rng.randint(300, 700)
    event = sample_event(event_type, **overrides)
    fields: dict[str, str] = {}
    event["data"]["custom_fields"] = fields
    body = json.dumps(event, separators=(",", ":")).encode()
    n = 0
    while len(body) < target - 40:
        n += 1
        fields[f"cf_{n}"] = rng.choice(("Enterprise", "EMEA", "renewal-Q3", "partner", "inbound"))
        body = json.dumps(event, separators=(",", ":")).encode()
    if len(body) < target:
        fields["note"] = "x" * (target - len(body) - 10)
        body = json.dumps(event, separators=(",", ":")).encode()
    return body


@dataclass(frozen=True)
class Delivery:
    """One signed request as the sender makes it."""

    body: bytes
    headers: dict[str, str]

    @property
    def signature(self) -> str:
        return self.headers[SIGNATURE_HEADER]


def make_deliveries(n: int, *, seed: int = 7, secret: str = SECRET) -> list[Delivery]:
    """``n`` distinct signed events (unique ids), deterministic in size and type mix."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        body = realistic_body(rng)
        out.append(
            Delivery(
                body,
                {"Content-Type": "application/json", SIGNATURE_HEADER: sign(body, secret)},
            )
        )
    return out


class Pool:
    """Distinct deliveries handed out in order; each consumer gets the same sequence, so
    every compared case sees exactly the same events. Grows on demand (untimed)."""

    def __init__(self, *, seed: int = 11) -> None:
        self._items: list[Delivery] = []
        self._seed = seed
        self._cursors: dict[str, int] = {}

    def take(self, consumer: str, n: int) -> list[Delivery]:
        start = self._cursors.get(consumer, 0)
        while len(self._items) < start + n:
            self._seed += 1
            self._items.extend(make_deliveries(max(n, 1000), seed=self._seed))
        self._cursors[consumer] = start + n
        return self._items[start : start + n]


# Cases and rounds -----------------------------------------------------------------


class Case:
    """One thing being measured. ``prepare(n)`` runs untimed before each batch and fills
    ``batch`` with ``n`` items; ``run(n)`` is timed and performs one operation per item."""

    name: str = "case"
    batch: Sequence[Any] = ()

    def prepare(self, n: int) -> None:
        pass

    def run(self, n: int) -> None:
        raise NotImplementedError

    def check(self) -> None:
        """Run once before measuring: fail loudly if the case does not do what it claims."""
        self.prepare(1)
        self.run(1)


class FuncCase(Case):
    """A case over a fixed list of items, cycled: ``op(item)`` per operation."""

    def __init__(self, name: str, op: Callable[[Any], object], items: Sequence[Any]) -> None:
        self.name = name
        self.op = op
        self.items = items
        self._at = 0
        self.batch: Sequence[Any] = ()

    def prepare(self, n: int) -> None:
        items, start = self.items, self._at
        self.batch = [items[(start + i) % len(items)] for i in range(n)]
        self._at = (start + n) % len(items)

    def run(self, n: int) -> None:
        op = self.op
        for item in self.batch:
            op(item)


@dataclass
class Measured:
    name: str
    per_op_ns: list[float] = field(default_factory=list)
    ratios: dict[str, list[float]] = field(default_factory=dict)
    ir_per_op: float | None = None

    @property
    def median_us(self) -> float:
        return statistics.median(self.per_op_ns) / 1000

    def ratio(self, reference: str) -> float:
        return statistics.median(self.ratios[reference])


def calibrate(case: Case, target_s: float, limit: int = 100_000) -> int:
    """Operations per batch so that one batch takes about ``target_s`` seconds."""
    n = 1
    while n < limit:
        case.prepare(n)
        start = time.perf_counter()
        case.run(n)
        elapsed = time.perf_counter() - start
        if elapsed >= target_s / 4:
            return max(1, min(limit, int(n * target_s / elapsed)))
        n *= 4
    return limit


def alternate(
    cases: Sequence[Case],
    *,
    references: Sequence[str],
    rounds: int,
    batch_s: float = 0.004,
    max_seconds: float = 120.0,
) -> dict[str, Measured]:
    """Run ``rounds`` rounds; in each, every case runs one batch, in an order that rotates
    from round to round (so no case always follows the same neighbour)."""
    for case in cases:
        case.check()
    sizes = {case.name: calibrate(case, batch_s) for case in cases}
    # Set-up garbage (event pools, stores) is moved out of the collector's view, so a
    # full collection triggered by one case's allocations does not scan the others'.
    gc.collect()
    gc.freeze()
    results = {case.name: Measured(case.name) for case in cases}
    deadline = time.monotonic() + max_seconds
    for r in range(rounds):
        if time.monotonic() > deadline:
            print(f"  (stopped after {r} rounds: time budget of {max_seconds:.0f} s)")
            break
        order = list(cases[r % len(cases) :]) + list(cases[: r % len(cases)])
        if r % 2:
            order.reverse()
        this_round: dict[str, float] = {}
        for case in order:
            n = sizes[case.name]
            case.prepare(n)
            start = time.perf_counter_ns()
            case.run(n)
            this_round[case.name] = (time.perf_counter_ns() - start) / n
        for name, ns in this_round.items():
            m = results[name]
            m.per_op_ns.append(ns)
            for ref in references:
                if ref in this_round:
                    m.ratios.setdefault(ref, []).append(ns / this_round[ref])
    return results


# Instructions under cachegrind ----------------------------------------------------

_IREFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def cachegrind_ir(argv: Sequence[str], env: dict[str, str] | None = None) -> int:
    """Total instructions executed by ``argv`` under cachegrind (deterministic)."""
    full_env = {**os.environ, "PYTHONHASHSEED": "0", **(env or {})}
    proc = subprocess.run(
        [
            VALGRIND,
            "--tool=cachegrind",
            "--cache-sim=no",
            "--cachegrind-out-file=/dev/null",
            *list(argv),
        ],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=900,
        check=False,
    )
    found = _IREFS.findall(proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"cachegrind failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return int(found[-1].replace(",", ""))


def ir_per_op(
    script_module: str, case: str, ops: tuple[int, int], extra: Sequence[str] = ()
) -> float:
    """Instructions per operation of one case: two runs that differ only in the number
    of measured operations, so interpreter start-up, imports and set-up cancel out."""
    low, high = ops
    counts = [
        cachegrind_ir(
            [
                *(sys.executable, "-m", script_module, "--ir-case", case),
                *("--ir-ops", str(n), "--ir-most", str(high), *extra),
            ]
        )
        for n in (low, high)
    ]
    return (counts[1] - counts[0]) / (high - low)


def run_ir_case(cases: Iterable[Case], name: str, ops: int, most: int, warmup: int = 100) -> None:
    """The child side of :func:`ir_per_op`: warm up, prepare ``most`` operations (the same
    set-up in both runs), then run the first ``ops`` of them."""
    for case in cases:
        if case.name == name:
            case.prepare(warmup)
            case.run(warmup)
            case.prepare(most)
            case.batch = case.batch[:ops]
            gc.collect()
            gc.freeze()  # as in the timed runs: collections scan new objects only
            case.run(ops)
            return
    raise SystemExit(f"unknown case {name!r}")


# Output ---------------------------------------------------------------------------


def common_args(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="tiny run: checks the script works")
    parser.add_argument("--rounds", type=int, default=200, help="alternating rounds")
    parser.add_argument("--no-ir", action="store_true", help="skip the cachegrind counts")
    parser.add_argument("--ir-ops", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--ir-case", default="", help=argparse.SUPPRESS)
    parser.add_argument("--ir-most", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--only", default="", help="measure only cases whose name contains this")
    return parser


def table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured Markdown table (readable in a terminal too)."""
    text_rows = [[_fmt(cell) for cell in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in text_rows)) for i, h in enumerate(headers)]
    lines = [
        "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |",
        "|" + "|".join("-" * (w + 2) for w in widths) + "|",
    ]
    lines += [
        "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
        for r in text_rows
    ]
    return "\n".join(lines)


def _fmt(cell: object) -> str:
    if cell is None:
        return "-"
    if isinstance(cell, float):
        return f"{cell:.2f}" if cell < 100 else f"{cell:,.0f}"
    if isinstance(cell, int):
        return f"{cell:,}"
    return str(cell)


def machine() -> str:
    """One line describing where the numbers were taken."""
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    import platform

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
