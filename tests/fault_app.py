"""Server side of the fault tests and the fault campaign (``tests/test_faults.py``,
``benchmarks/faults.py``): a WSGI app that gunicorn serves as ``tests.fault_app:create_app()``.

Settings come from the environment (``FAULT_*``, see :func:`create_app`). Handlers write
one row per successful run into a separate SQLite file, so the parent process can count
how often each handler ran, whichever process ran it. An event whose id starts with
``evt_hang`` makes the first handler block for ever.

Also holds the helpers both sides share: the private Redis server, the HTTP load, and
the inspection of the effects file and the inbox.
"""

from __future__ import annotations

import faulthandler
import http.client
import inspect
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from iverton_webhooks import Event, Receiver, RetryPolicy, Router, ThreadRunner, sign
from iverton_webhooks.samples import sample_body
from iverton_webhooks.wsgi import WebhookApp

SECRET = "whsec_faults_0123456789"
HANG_PREFIX = "evt_hang"
ROOT = Path(__file__).resolve().parent.parent

# Which handlers an event type gets (mirrors make_router).
FIRST_ONLY_TYPES = ("email.delivered", "client.created")
BOTH_TYPES = ("deal.won", "contact.created")


def handlers_for(event_type: str) -> tuple[str, ...]:
    return ("first", "second") if event_type.startswith(("deal.", "contact.")) else ("first",)


# The effects file -------------------------------------------------------------------


def effects_db(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT, handler TEXT, pid INT)")
    return conn


def effect_counts(path: str | Path) -> Counter[tuple[str, str]]:
    """How many times each (event id, handler) ran."""
    if not Path(path).exists():
        return Counter()
    conn = effects_db(path)
    try:
        return Counter(conn.execute("SELECT event_id, handler FROM effects").fetchall())
    finally:
        conn.close()


def make_router(effects_path: str | Path, sleep: float = 0.0) -> Router:
    router = Router()
    local = threading.local()

    def effect(event: Event[Any], name: str) -> None:
        conn = getattr(local, "conn", None) or effects_db(effects_path)
        local.conn = conn
        conn.execute("INSERT INTO effects VALUES (?, ?, ?)", (event.id, name, os.getpid()))

    @router.on("*")
    def first(event: Event[Any]) -> None:
        if event.id.startswith(HANG_PREFIX):
            threading.Event().wait()  # a handler that never returns
        if sleep:
            time.sleep(sleep)
        effect(event, "first")

    @router.on("deal.*", "contact.*")
    def second(event: Event[Any]) -> None:
        effect(event, "second")

    return router


# The app ------------------------------------------------------------------------------


def receiver_options(**options: Any) -> dict[str, Any]:
    """``options`` minus those this version's Receiver does not take, so the same app
    runs on the wave-1 code (commit 1b12079) to show the fault tests failing there."""
    accepted = inspect.signature(Receiver).parameters
    return {name: value for name, value in options.items() if name in accepted}


def create_app() -> WebhookApp:
    """The core WSGI app, every path a webhook (settings: :func:`receiver_from_env`)."""
    return WebhookApp(receiver_from_env())


FLASK_PATH = "/webhooks/iverton"


def create_flask_app() -> Any:
    """A Flask app with the webhook blueprint at :data:`FLASK_PATH`."""
    from flask import Flask

    from iverton_webhooks.contrib.flask import webhooks_blueprint

    app = Flask(__name__)
    app.register_blueprint(webhooks_blueprint(receiver=receiver_from_env()), url_prefix=FLASK_PATH)
    return app


def receiver_from_env() -> Receiver:
    """The receiver from ``FAULT_STORE`` (store URL), ``FAULT_EFFECTS`` (effects file),
    ``FAULT_SLEEP`` (s per first-handler run), ``FAULT_THREADS`` (runner threads),
    ``FAULT_POLL`` (poll interval, s), ``FAULT_LEASE`` and ``FAULT_TIMEOUT`` (s),
    ``FAULT_MAX_ATTEMPTS`` and ``FAULT_BASE_DELAY`` (retry policy)."""
    env = os.environ
    # `kill -URG` (a signal gunicorn leaves alone) prints every thread's stack to the
    # server log: to see what a stuck server is doing.
    faulthandler.register(signal.SIGURG, all_threads=True)
    return Receiver(
        SECRET,
        router=make_router(env["FAULT_EFFECTS"], float(env.get("FAULT_SLEEP", "0"))),
        store=env["FAULT_STORE"],
        runner=ThreadRunner(
            workers=int(env.get("FAULT_THREADS", "4")),
            poll_interval=float(env.get("FAULT_POLL", "1")),
        ),
        retry=RetryPolicy(
            max_attempts=int(env.get("FAULT_MAX_ATTEMPTS", "8")),
            base_delay=float(env.get("FAULT_BASE_DELAY", "1")),
            jitter=0,
        ),
        **receiver_options(
            lease=timedelta(seconds=float(env.get("FAULT_LEASE", "5"))),
            handler_timeout=timedelta(seconds=float(env.get("FAULT_TIMEOUT", "30"))),
        ),
    )


# Processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def kill_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
    """Signal the process group of a server started with ``start_new_session`` (its
    workers and their threads die with it), then reap it."""
    if proc.poll() is None:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


class Gunicorn:
    """``gunicorn tests.fault_app:create_app()`` on a free port, in its own session."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 2,
        preload: bool = False,
        flask: bool = False,
    ) -> None:
        self.env = {**os.environ, **env, "PYTHONPATH": _pythonpath()}
        self.workers, self.preload = workers, preload
        self.app = "tests.fault_app:create_flask_app()" if flask else "tests.fault_app:create_app()"
        self.path = FLASK_PATH if flask else "/"
        self.port = free_port()
        self.log = Path(env["FAULT_EFFECTS"]).with_suffix(".log")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> None:
        gunicorn = Path(sys.executable).with_name("gunicorn")
        args = [
            str(gunicorn),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(self.workers),
            "--graceful-timeout",
            "1",
            *(["--preload"] if self.preload else []),
            self.app,
        ]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, cwd=ROOT, env=self.env, stdout=out, stderr=out, start_new_session=True
            )
        if not wait_port(self.port, timeout):
            self.kill()
            raise RuntimeError(f"gunicorn did not start; see {self.log}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None:
            kill_group(self.proc, sig)
            self.proc = None

    def dump_stacks(self) -> None:
        """Every thread's stack of every process of the server, into its log."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGURG)
            time.sleep(0.5)

    def __enter__(self) -> Gunicorn:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


def _pythonpath() -> str:
    # The fault app is imported from this checkout (a subprocess's cwd is not enough when
    # an old checkout is being tested with its own PYTHONPATH).
    existing = os.environ.get("PYTHONPATH", "")
    return os.pathsep.join(p for p in (existing, str(ROOT)) if p)


class PrivateRedis:
    """A redis-server of our own (AOF on) on a free port: ours to kill -9 and restart,
    never the shared one."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    @staticmethod
    def available() -> bool:
        return shutil.which("redis-server") is not None

    def start(self, timeout: float = 10.0) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            str(self.dir),
        ]
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if not wait_port(self.port, timeout):
            self.kill()
            raise RuntimeError("private redis-server did not start")
        # Loading the AOF: the port answers before the data is back.
        import redis

        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if client.ping():
                    break
            except redis.exceptions.BusyLoadingError:
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        """kill -9: no shutdown, no last save."""
        if self.proc is not None:
            kill_group(self.proc)
            self.proc = None

    def restart_after(self, delay: float) -> threading.Thread:
        """Start again ``delay`` s from now, in a thread (returned, to join)."""

        def later() -> None:
            time.sleep(delay)
            self.start()

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        return thread

    def __enter__(self) -> PrivateRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb on a temp dir, a free port), run as the
    ``postgres`` user when we are root: ours to stop abruptly and start again."""

    def __init__(self, directory: str | Path) -> None:
        self.dir = Path(directory)
        self.data = self.dir / "data"
        self.port = free_port()
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @staticmethod
    def bindir() -> Path | None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
        return found[-1].parent if found else None

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        bindir = self.bindir()
        assert bindir is not None
        command = [str(bindir / args[0]), *args[1:]]
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            command = ["runuser", "-u", "postgres", "--", *command]
        # The server's output goes to a log file: a server started here would hold a
        # captured pipe open for ever.
        with (self.dir / "server.log").open("ab") as log:
            subprocess.run(command, check=True, stdout=log, stderr=log, timeout=timeout)

    def init(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            (self.dir / "server.log").touch()
            shutil.chown(self.dir / "server.log", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-w", "-t", "30", "start")

    def stop(self) -> None:
        """Stop at once, as a crash would: no checkpoint, clients cut off."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def restart_after(self, delay: float) -> threading.Thread:
        def later() -> None:
            time.sleep(delay)
            self.start()

        thread = threading.Thread(target=later, daemon=True)
        thread.start()
        return thread

    def __enter__(self) -> PrivatePostgres:
        self.init()
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        with suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            self.stop()


@contextmanager
def temporary_directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="iverton-faults-") as name:
        yield Path(name)


# The load ---------------------------------------------------------------------------


@dataclass
class Load:
    """What a load run sent and which deliveries were acknowledged (2xx)."""

    sent: list[tuple[str, str]] = field(default_factory=list)  # (id, type)
    acked: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def acked_ids(self) -> dict[str, str]:
        return dict(self.acked)


def post(port: int, body: bytes, timeout: float = 10.0, path: str = "/") -> int:
    """POST one signed delivery; its status, or 0 when the connection failed."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(
            "POST",
            path,
            body,
            {"X-Iverton-Signature": sign(body, SECRET), "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        conn.close()


def delivery(n: int, prefix: str) -> tuple[str, str, bytes]:
    types = (*BOTH_TYPES, *FIRST_ONLY_TYPES)
    event_type = types[n % len(types)]
    event_id = f"{prefix}_{n:06d}"
    return event_id, event_type, sample_body(event_type, id=event_id)


def send(
    port: int,
    ids: Iterable[int],
    prefix: str,
    load: Load,
    *,
    threads: int = 4,
    stop: threading.Event | None = None,
    path: str = "/",
) -> Load:
    """Send the deliveries numbered ``ids`` from ``threads`` client threads."""
    numbers = iter(list(ids))
    numbers_lock = threading.Lock()

    def client() -> None:
        while stop is None or not stop.is_set():
            with numbers_lock:
                n = next(numbers, None)
            if n is None:
                return
            event_id, event_type, body = delivery(n, prefix)
            with load.lock:
                load.sent.append((event_id, event_type))
            if 200 <= post(port, body, path=path) < 300:
                with load.lock:
                    load.acked.append((event_id, event_type))
            else:
                time.sleep(0.05)  # as a sender would, do not hammer a failing server

    workers = [threading.Thread(target=client, daemon=True) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
    return load


def send_until_killed(
    port: int,
    prefix: str,
    kill: Callable[[], None],
    *,
    kill_after_acks: int,
    limit: int,
    path: str = "/",
) -> Load:
    """Send under load; call ``kill`` once ``kill_after_acks`` deliveries were acked."""
    load = Load()
    stop = threading.Event()
    sender = threading.Thread(
        target=send,
        args=(port, range(limit), prefix, load),
        kwargs={"stop": stop, "path": path},
        daemon=True,
    )
    sender.start()
    deadline = time.monotonic() + 60
    while len(load.acked) < kill_after_acks and sender.is_alive():
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)
    kill()
    stop.set()
    sender.join(timeout=30)
    return load


# Inspection -------------------------------------------------------------------------


def missing_effects(acked: dict[str, str], counts: Counter[tuple[str, str]]) -> list[str]:
    """Acked events some handler of which has not run yet."""
    return [
        event_id
        for event_id, event_type in acked.items()
        if any(counts[(event_id, name)] == 0 for name in handlers_for(event_type))
    ]


def double_runs(counts: Counter[tuple[str, str]]) -> int:
    """Handler runs beyond the first, over all events."""
    return sum(n - 1 for n in counts.values() if n > 1)


def statuses(store: Any) -> dict[str, str]:
    """Every event's status by id (works with the wave-1 store API too)."""
    return {event.id: str(event.status.value) for event in store.list(limit=10**6)}


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()
