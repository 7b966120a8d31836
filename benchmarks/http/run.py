"""HTTP sanity check: floor, bare and our app per framework under a real server.

    python -m benchmarks.http.run                       # all frameworks, 5 rounds x 3 s
    python -m benchmarks.http.run --framework flask --rounds 3
    python -m benchmarks.http.run --quick               # smoke run

Django and Flask run under gunicorn (sync worker), Starlette under uvicorn: one worker,
the server pinned to CPU 0 and ``wrk`` (Debian package) to CPU 1. Every server of one
framework starts first; then rounds alternate between them, ``wrk`` cycling through
distinct pre-signed events (each run starts where the last one stopped, so a
deduplicating receiver sees new events). Per app: req/s, p50, p99 (median over rounds)
and the median per-round throughput ratio to the bare app. Over HTTP the server's own
cost hides most of a library's: the in-process figures of ``benchmarks.apps`` are the
headline, these are the sanity check.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from ..apps import FRAMEWORKS, build_cases, path_for
from ..common import common_args, machine, make_deliveries, table

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WRK = shutil.which("wrk") or "/usr/bin/wrk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pin(cpu: int) -> list[str]:
    """``taskset -c cpu`` when there are two CPUs or more to share out."""
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def server_command(framework: str, port: int) -> list[str]:
    target = "benchmarks.http.target:app"
    if framework == "starlette":
        return [
            *(sys.executable, "-m", "uvicorn", target, "--host", "127.0.0.1"),
            *("--port", str(port), "--workers", "1", "--log-level", "warning"),
            "--no-access-log",
        ]
    return [
        *(sys.executable, "-m", "gunicorn", target, "--workers", "1"),
        *("--bind", f"127.0.0.1:{port}", "--log-level", "warning"),
    ]


class Server:
    """One server process for one case, started and stopped by PID."""

    def __init__(self, framework: str, case: str, workdir: Path) -> None:
        self.case = case
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{path_for(case)}"
        home = workdir / case.replace(" ", "_").replace(",", "")
        home.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "IVERTON_BENCH_CASE": case,
            "IVERTON_BENCH_WORKDIR": str(home),
            "PYTHONPATH": str(ROOT),
        }
        self.log = open(home / "server.log", "w")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [*pin(0), *server_command(framework, self.port)],
            cwd=home,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.case}: server exited; see {self.log.name}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"{self.case}: server not listening after {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


def wrk(url: str, events: Path, offset: int, seconds: float, connections: int) -> dict[str, int]:
    out = subprocess.run(
        [
            *pin(1),
            *(WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "10s"),
            *("-s", str(HERE / "cycle.lua"), url, "--", str(events), str(offset)),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 30,
        check=True,
    ).stdout
    line = next(x for x in reversed(out.splitlines()) if x.startswith("{"))
    result: dict[str, int] = json.loads(line)
    return result


def write_events(path: Path, n: int) -> None:
    with path.open("w") as f:
        for d in make_deliveries(n, seed=21):
            f.write(f"{d.signature}\t{d.body.decode()}\n")


def measure(
    framework: str,
    workdir: Path,
    events: Path,
    n_events: int,
    rounds: int,
    seconds: float,
    connections: int,
) -> str:
    probe = workdir / f"probe-{framework}"
    probe.mkdir(exist_ok=True)
    names = [c.name for c in build_cases(framework, str(probe))]
    names = [n for n in names if "memory" not in n and "ack only" not in n]
    servers = [Server(framework, name, workdir) for name in names]
    per: dict[str, list[dict[str, int]]] = {name: [] for name in names}
    try:
        for server in servers:
            server.wait_ready()
        offset = 0
        for server in servers:  # warm-up: imports, connections, first-request caches
            offset += wrk(server.url, events, offset, 1, connections)["requests"]
        for r in range(rounds):
            order = servers[r % len(servers) :] + servers[: r % len(servers)]
            for server in order:
                result = wrk(server.url, events, offset % n_events, seconds, connections)
                offset += result["requests"]
                per[server.case].append(result)
    finally:
        for server in servers:
            server.stop()
    if offset > n_events:
        print(f"  note: {offset:,} requests cycled through {n_events:,} events (some repeats)")
    bare = names[1]
    rows = []
    for name in names:
        runs = per[name]
        rps = [r["requests"] / (r["duration_us"] / 1e6) for r in runs]
        bare_rps = [r["requests"] / (r["duration_us"] / 1e6) for r in per[bare]]
        errors = sum(r["status_errors"] + r["connect_errors"] + r["timeouts"] for r in runs)
        rows.append(
            (
                name,
                statistics.median(rps),
                statistics.median(r["p50_us"] for r in runs) / 1000,
                statistics.median(r["p99_us"] for r in runs) / 1000,
                statistics.median(b / o for b, o in zip(bare_rps, rps, strict=True)),
                errors,
            )
        )
    return table(
        ("app", "req/s", "p50 ms", "p99 ms", "time/req x bare", "errors"),
        rows,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = common_args(__doc__ or "")
    parser.add_argument("--framework", choices=FRAMEWORKS, action="append")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one wrk run")
    parser.add_argument("--connections", type=int, default=4)
    args = parser.parse_args(argv)
    if not os.path.exists(WRK):
        print("wrk not found: apt-get install -y wrk")
        return 1
    rounds = 1 if args.quick else min(args.rounds, 10)
    seconds = 1.0 if args.quick else args.seconds
    n_events = 2_000 if args.quick else 60_000
    workdir = Path(tempfile.mkdtemp(prefix="iverton-http-"))
    try:
        events = workdir / "events.tsv"
        write_events(events, n_events)
        print(f"# benchmarks.http.run: {machine()}")
        print(
            f"# {rounds} rounds x {seconds:g} s per app, wrk -t1 -c{args.connections}, "
            "server on CPU 0, wrk on CPU 1\n"
        )
        for framework in args.framework or FRAMEWORKS:
            try:
                result = measure(
                    framework, workdir, events, n_events, rounds, seconds, args.connections
                )
            except ImportError as exc:
                print(f"## {framework}: not installed ({exc})\n")
                continue
            server = "uvicorn" if framework == "starlette" else "gunicorn (sync)"
            print(f"## {framework}, {server}\n")
            print(result)
            print()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
