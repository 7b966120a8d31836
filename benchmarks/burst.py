"""Bursts over HTTP: a campaign send's worth of deliveries at once, ours vs the bare app
on the same server, with processing included (our default SQLite store and thread
runner: acks compete with the workers for the database, as in production).

    python -m benchmarks.burst                         # flask and django, every shape
    python -m benchmarks.burst --framework flask --shape c128
    python -m benchmarks.burst --old /path/to/older/checkout   # also that code's "ours"
    python -m benchmarks.burst --bursts 3              # each app 3 times, in turn: medians
    python -m benchmarks.burst --ack-only              # also ours with processing off
    python -m benchmarks.burst --quick                 # smoke run

Shapes (gunicorn ``gthread`` workers x threads, clients in flight):

- ``c12``: 2 x 4, 12 concurrent: the sender's normal burst;
- ``p4t4``: 4 x 4, 16 concurrent: four processes of four threads;
- ``c128``: 4 x 32, 128 concurrent: a large campaign.

Each distinct event is delivered three times (shuffled), as a sender retrying or a
duplicate storm does. Latency is per request, from sending it to reading the answer,
measured by client processes (4, each with its share of the concurrent connections,
keep-alive). Per app: p50/p99/max ack, acks/s (2xx answers per second of the burst),
non-2xx answers, and p99 as a multiple of the peer's (``benchmarks.peer``: verify, one
autocommitted ``INSERT ... ON CONFLICT DO NOTHING``; the target is ours within 2x).
Apps run one after another on the same server settings; the machine's load moves the
absolute numbers, so compare ours with peer and bare within one run. One burst's p99 moves
by tens of percent from run to run: with ``--bursts N`` the apps take turns N times, each
on a fresh database, and the table gives the median of each figure (the counts: their
sums) and of each burst's p99 over the peer's.
"""

from __future__ import annotations

import http.client
import multiprocessing
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .apps import path_for
from .common import common_args, machine, make_deliveries, table
from .http.run import ROOT, free_port

SHAPES: dict[str, tuple[int, int, int]] = {  # workers, threads, concurrent clients
    "c12": (2, 4, 12),
    "p4t4": (4, 4, 16),
    "c128": (4, 32, 128),
}
CLIENT_PROCESSES = 4


def _target_case(framework: str, app: str) -> str:
    return f"{framework} {app}"


class Server:
    """gunicorn (gthread) serving one case of ``benchmarks.apps``, stopped by PID."""

    def __init__(
        self, framework: str, app: str, shape: tuple[int, int, int], home: Path, code: Path
    ) -> None:
        workers, threads, _ = shape
        self.port = free_port()
        base = "ours" if app == "ours (old)" else app
        self.path = path_for(_target_case(framework, base))
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "IVERTON_BENCH_CASE": _target_case(framework, base),
            "IVERTON_BENCH_WORKDIR": str(home),
            "PYTHONPATH": f"{code}{os.pathsep}{ROOT}",
        }
        self.log = open(home / "server.log", "w")  # noqa: SIM115 (closed in stop())
        # Build the app once first: Django migrates its database at build, and workers
        # booting together would race to create the tables.
        subprocess.run(
            [sys.executable, "-c", "import benchmarks.http.target"],
            cwd=home,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            check=True,
            timeout=120,
        )
        self.proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "benchmarks.http.target:app"),
                *("-k", "gthread", "--workers", str(workers), "--threads", str(threads)),
                *("--bind", f"127.0.0.1:{self.port}", "--log-level", "warning"),
                *("--backlog", "2048", "--keep-alive", "30"),
            ],
            cwd=home,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited; see {self.log.name}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", self.path)
                conn.getresponse().read()
                conn.close()
                return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"server not answering after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def _client(
    args: tuple[int, str, list[tuple[bytes, dict[str, str]]], int, float],
) -> tuple[list[tuple[float, int]], float]:
    """One client process: ``connections`` threads, each sending its share in turn."""
    import threading

    port, path, work, connections, start_at = args
    results: list[tuple[float, int]] = []
    lock = threading.Lock()
    shares = [work[i::connections] for i in range(connections)]

    def run(share: list[tuple[bytes, dict[str, str]]]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine = []
        for body, headers in share:
            started = time.perf_counter()
            try:
                conn.request("POST", path, body, headers)
                response = conn.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                status = 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            mine.append((time.perf_counter() - started, status))
        conn.close()
        with lock:
            results.extend(mine)

    while time.time() < start_at:  # every client process starts the burst together
        time.sleep(0.001)
    threads = [threading.Thread(target=run, args=(share,)) for share in shares if share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, time.time()


def _when() -> str:
    """The UTC time and the 1-minute load average: other work on the machine moves the
    figures, so each table says what it shared the cores with."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{time.strftime('%H:%M:%S', time.gmtime())} UTC (load {load:.2f})"


def burst(server: Server, deliveries: list[Any], concurrent: int) -> dict[str, Any]:
    work = [(d.body, d.headers) for d in deliveries]
    processes = min(CLIENT_PROCESSES, concurrent)
    per = [concurrent // processes + (i < concurrent % processes) for i in range(processes)]
    start_at = time.time() + 1.0
    jobs = [
        (server.port, server.path, work[i::processes], per[i], start_at) for i in range(processes)
    ]
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        parts = pool.map(_client, jobs)
    elapsed = max(ended for _, ended in parts) - start_at
    results = [r for part, _ in parts for r in part]
    latencies = sorted(seconds for seconds, _ in results)
    ok = sum(1 for _, status in results if 200 <= status < 300)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "max": latencies[-1] * 1000,
        "acks_s": ok / max(elapsed, 1e-9),
        "non2xx": len(results) - ok,
        "over_1s": sum(1 for s in latencies if s > 1.0),
    }


def _ratios(mine: list[dict[str, Any]], peer: list[dict[str, Any]]) -> str:
    return ", ".join(f"{m['p99'] / p['p99']:.2f}" for m, p in zip(mine, peer, strict=True))


def _row(name: str, mine: list[dict[str, Any]], peer: list[dict[str, Any]]) -> tuple[Any, ...]:
    """One app's line: the median of each figure over the bursts (the counts of non-2xx
    answers and of acks over 1 s: their sums), and the median of its p99 over the peer's
    p99 of the same turn."""

    def median(key: str) -> float:
        return statistics.median(r[key] for r in mine)

    ratio = statistics.median(m["p99"] / p["p99"] for m, p in zip(mine, peer, strict=True))
    return (
        name,
        median("p50"),
        median("p99"),
        median("max"),
        median("acks_s"),
        sum(r["non2xx"] for r in mine),
        sum(r["over_1s"] for r in mine),
        ratio,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    parser.add_argument("--framework", choices=("flask", "django"), action="append")
    parser.add_argument("--shape", choices=tuple(SHAPES), action="append")
    parser.add_argument("--events", type=int, default=0, help="distinct events per burst")
    parser.add_argument("--old", type=Path, help="an older checkout: its 'ours' runs too")
    parser.add_argument(
        "--ack-only", action="store_true", help="also ours with processing off (NullRunner)"
    )
    parser.add_argument(
        "--bursts", type=int, default=1, help="bursts per app, in turn; the table gives medians"
    )
    args = parser.parse_args(argv)
    frameworks = args.framework or ["flask", "django"]
    shapes = args.shape or (["c12"] if args.quick else list(SHAPES))
    apps = ["bare", "peer", "ours"] + (["ours (old)"] if args.old else [])
    apps += ["ours, ack only"] if args.ack_only else []
    print(f"# benchmarks.burst: {machine()}")
    workdir = Path(tempfile.mkdtemp(prefix="iverton-burst-"))
    try:
        for shape_name in shapes:
            shape = SHAPES[shape_name]
            distinct = args.events or (20 if args.quick else (2800 if shape[2] > 100 else 330))
            deliveries = make_deliveries(distinct, seed=len(shape_name)) * 3
            random.Random(5).shuffle(deliveries)
            for framework in frameworks:
                began = _when()
                # Burst after burst, the apps in turn: each burst's p99 is compared with
                # the peer's of the same turn, so a slow minute moves both.
                runs: dict[str, list[dict[str, Any]]] = {app: [] for app in apps}
                for _ in range(args.bursts):
                    for app in apps:
                        code = args.old.resolve() if app == "ours (old)" else ROOT
                        home = workdir / f"{shape_name}-{framework}-{app.replace(' ', '')}"
                        shutil.rmtree(home, ignore_errors=True)
                        server = Server(framework, app, shape, home, code)
                        try:
                            server.wait_ready()
                            runs[app].append(burst(server, deliveries, shape[2]))
                        finally:
                            server.stop()
                rows = [_row(f"{framework} {app}", runs[app], runs["peer"]) for app in apps]
                w, t, c = shape
                print(
                    f"\n## {shape_name}: {framework}, gunicorn gthread {w} x {t}, {c} concurrent, "
                    f"{len(deliveries)} deliveries ({distinct} events x 3)\n"
                )
                print(
                    table(
                        (
                            "app",
                            "p50 ms",
                            "p99 ms",
                            "max ms",
                            "acks/s",
                            "non-2xx",
                            "> 1 s",
                            "p99 x peer",
                        ),
                        rows,
                    )
                )
                if args.bursts > 1:
                    print()
                    for app in apps:
                        ratios = _ratios(runs[app], runs["peer"])
                        print(f"{framework} {app}, p99 x peer by burst: {ratios}")
                print(f"\n{began} to {_when()}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
