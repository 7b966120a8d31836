"""Real servers for the adapter contract suite: gunicorn (WSGI, Flask, Django) and uvicorn
(Starlette) as subprocesses on free 127.0.0.1 ports, with bounded waits, stopped by PID."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from iverton_webhooks.inbox import open_store

ROOT = Path(__file__).resolve().parents[2]
ADAPTERS = ("wsgi", "flask", "django", "starlette")
DJANGO_SETTINGS = "tests.adapters.django_settings"
DJANGO_TABLE = "iverton_webhooks_webhookevent"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(db: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        IVERTON_TEST_DB=str(db),
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
        **extra,
    )
    if "DJANGO_SETTINGS_MODULE" in extra:
        env["DJANGO_SETTINGS_MODULE"] = extra["DJANGO_SETTINGS_MODULE"]
    return env


def django_manage(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m django ...`` on the suite's Django settings (never a serving process)."""
    return subprocess.run(
        [sys.executable, "-m", "django", *args, f"--settings={DJANGO_SETTINGS}"],
        cwd=ROOT,
        env=environment(db),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def prepare(adapter: str, db: Path) -> None:
    """Create the inbox before a server (or a seeding step) uses it."""
    if adapter == "django":
        done = django_manage(db, "migrate", "--noinput")
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        open_store(f"sqlite:///{db}").close()


def command(adapter: str, port: int, *, workers: int, preload: bool) -> list[str]:
    if adapter == "starlette":
        return [
            *(sys.executable, "-m", "uvicorn", "--factory", "tests.adapters.apps:starlette_app"),
            *("--host", "127.0.0.1", "--port", str(port), "--lifespan", "on"),
            *("--workers", str(workers), "--log-level", "warning"),
        ]
    return [
        *(sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}"),
        *("--graceful-timeout", "3", "--timeout", "60"),
        *(["--preload"] if preload else []),
        f"tests.adapters.apps:{adapter}_app()",
    ]


@dataclass
class Server:
    """One running server: its base URL, process and log."""

    adapter: str
    db: Path
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    inbox: Inbox = field(init=False)

    def __post_init__(self) -> None:
        self.inbox = Inbox(self.adapter, self.db)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


def start(
    adapter: str,
    db: Path,
    log: Path,
    *,
    workers: int = 2,
    preload: bool = False,
    runs: Path | None = None,
) -> Server:
    """Start ``adapter``'s real server on a free port; returns once it accepts connections
    (bounded: 60 s), or fails with its log. ``runs``: a file where the apps' handler logs
    the pid and event id of each run."""
    port = free_port()
    extra = {} if runs is None else {"IVERTON_TEST_RUNS": str(runs)}
    with log.open("wb") as out:
        process = subprocess.Popen(
            command(adapter, port, workers=workers, preload=preload),
            cwd=ROOT,
            env=environment(db, **extra),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server(adapter, db, port, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"{adapter} server exited {process.returncode}:\n{server.log_text()}"
            )
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    server.stop()
    raise AssertionError(f"{adapter} server did not start in 60 s:\n{server.log_text()}")


@dataclass(frozen=True)
class Row:
    key: str
    status: str
    body: bytes


class Inbox:
    """Reads an adapter's inbox from outside its server: the core SQLite store, or the
    Django table with plain SQL (this process has no Django configured for it)."""

    def __init__(self, adapter: str, db: Path) -> None:
        self.adapter = adapter
        self.db = db

    def rows(self) -> list[Row]:
        if self.adapter == "django":
            with sqlite3.connect(self.db, timeout=20) as conn:
                found = conn.execute(f"SELECT event_id, status, body FROM {DJANGO_TABLE}")
                return [Row(k, s, bytes(b)) for k, s, b in found.fetchall()]
        store = open_store(f"sqlite:///{self.db}")
        try:
            events = store.list(limit=1_000_000, endpoint=None)
            return [Row(e.id, str(e.status.value), e.body) for e in events]
        finally:
            store.close()

    def by_key(self) -> dict[str, Row]:
        return {row.key: row for row in self.rows()}
