"""End to end under a real uvicorn on 127.0.0.1: concurrent duplicate deliveries over HTTP,
then a shutdown (SIGTERM) while handlers are mid-event and a restart that finishes them."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

pytest.importorskip("starlette.applications")
pytest.importorskip("uvicorn")

import httpx

from iverton_webhooks import SQLiteStore, Status
from iverton_webhooks.samples import sample_body, send_sample
from tests.conftest import SECRET, signed_headers

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
EXAMPLES = HERE.parent.parent / "example_projects"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One uvicorn process serving ``app`` from ``app_dir`` on a free 127.0.0.1 port."""

    def __init__(self, app: str, app_dir: Path, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.log = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--app-dir", str(app_dir),
             "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "info"],
            cwd=app_dir, env={**os.environ, **env}, stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.stop()
                raise AssertionError("uvicorn exited at startup:\n" + log.read_text())
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError("uvicorn did not start within 30 s:\n" + log.read_text())

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def terminate(self, timeout: float = 20) -> bool:
        """SIGTERM by PID; True if uvicorn shut down gracefully (lifespan shutdown done)."""
        before = self.log.stat().st_size
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout)
        finally:
            self.stop()
        # uvicorn re-raises the SIGTERM it handled once it is done, so -15 is a clean exit too.
        with self.log.open("rb") as log:
            log.seek(before)
            tail = log.read().decode(errors="replace")
        return code in (0, -signal.SIGTERM) and "Application shutdown complete" in tail

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self._log.close()


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.stop()


def post(url: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body, method="POST", headers=signed_headers(body))
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())


def effects(db: Path) -> dict[tuple[str, str], int]:
    if not db.exists():
        return {}
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(
            "SELECT event_id, handler, count(*) FROM effects GROUP BY event_id, handler"
        ).fetchall()
    except sqlite3.OperationalError:  # table not created yet
        return {}
    finally:
        conn.close()
    return {(event_id, handler): count for event_id, handler, count in rows}


def wait_until(condition: object, timeout: float = 30) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return bool(condition())  # type: ignore[operator]


def statuses(inbox: Path) -> dict[str, Status]:
    store = SQLiteStore(str(inbox))
    try:
        return {event.id: event.status for event in store.list(limit=1000)}
    finally:
        store.close()


def test_concurrent_duplicates_then_shutdown_mid_processing_and_restart(
    tmp_path: Path, servers: list[Server]
) -> None:
    inbox, db, log = tmp_path / "inbox.sqlite3", tmp_path / "effects.sqlite3", tmp_path / "log"
    env = {"E2E_INBOX": f"sqlite:///{inbox}", "E2E_EFFECTS_DB": str(db), "E2E_SECRET": SECRET}

    # 1. Concurrent duplicates: 12 events, each posted 6 times at once.
    servers.append(Server("e2e_app:app", HERE, env, log))
    url = servers[-1].url("/hooks")
    ids = [f"evt_dup_{n}" for n in range(12)]
    bodies = [sample_body("deal.updated", id=event_id) for event_id in ids for _ in range(6)]
    with ThreadPoolExecutor(max_workers=24) as pool:
        replies = list(pool.map(lambda body: post(url, body), bodies))
    assert {status for status, _ in replies} == {200}
    answers = [json.loads(text)["status"] for _, text in replies]
    assert answers.count("accepted") == len(ids)
    assert answers.count("duplicate") == len(bodies) - len(ids)
    # Over real HTTP too: too large (declared, then chunked) gets 413 without the server
    # reading it all (httpx, unlike urllib, reads an early answer after a broken pipe).
    too_large = b"x" * (2 * 1024 * 1024)
    assert httpx.post(url, content=too_large, timeout=10).status_code == 413
    chunked = (too_large[i : i + 65536] for i in range(0, len(too_large), 65536))
    assert httpx.post(url, content=chunked, timeout=10).status_code == 413
    forged = urllib.request.Request(url, data=bodies[0], method="POST")
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(forged, timeout=10)
    expected = {(event_id, handler): 1 for event_id in ids for handler in ("sync", "async")}
    assert wait_until(lambda: len(effects(db)) == len(expected)), effects(db)
    assert servers[-1].terminate()
    assert effects(db) == expected  # every handler ran exactly once per event
    assert set(statuses(inbox).values()) == {Status.DONE}

    # 2. Shutdown while the async handler of each new event is mid-sleep.
    slow_env = {**env, "E2E_SLOW_SECONDS": "60", "E2E_DRAIN_SECONDS": "0.5"}
    servers.append(Server("e2e_app:app", HERE, slow_env, log))
    url = servers[-1].url("/hooks")
    slow_ids = [f"evt_slow_{n}" for n in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        codes = list(pool.map(lambda i: post(url, sample_body("deal.won", id=i))[0], slow_ids))
    assert codes == [200] * len(slow_ids)
    assert wait_until(lambda: all((i, "sync") in effects(db) for i in slow_ids))
    began = time.monotonic()
    assert servers[-1].terminate(), log.read_text()  # a clean exit
    assert time.monotonic() - began < 15  # the drain gave up after its timeout
    left = statuses(inbox)
    assert {left[i] for i in slow_ids} <= {Status.PENDING, Status.FAILED}
    assert not any((i, "async") in effects(db) for i in slow_ids)

    # 3. A new server on the same inbox finishes what was pending: nothing lost, nothing twice.
    servers.append(Server("e2e_app:app", HERE, env, log))
    assert wait_until(lambda: set(statuses(inbox).values()) == {Status.DONE})
    assert servers[-1].terminate()
    expected.update({(i, handler): 1 for i in slow_ids for handler in ("sync", "async")})
    assert effects(db) == expected


def test_starlette_example_under_uvicorn(tmp_path: Path, servers: list[Server]) -> None:
    """The README's server command (uvicorn app:app in the example's folder) with samples."""
    secret = "whsec_e2e_example"
    env = {
        "IVERTON_WEBHOOK_SECRET": secret,
        "IVERTON_INBOX": f"sqlite:///{tmp_path / 'webhooks.sqlite3'}",
        "EXAMPLE_CRM_DB": str(tmp_path / "crm.sqlite3"),
    }
    servers.append(Server("app:app", EXAMPLES / "starlette_app", env, tmp_path / "log"))
    url = servers[-1].url("/webhooks/iverton")
    assert send_sample(url, "contact.created", secret)[0] == 200
    assert send_sample(url, "deal.won", secret)[0] == 200
    assert send_sample(url, "deal.won", "whsec_wrong")[0] == 401

    def summary() -> dict[str, int]:
        with urllib.request.urlopen(servers[-1].url("/"), timeout=10) as response:
            return dict(json.loads(response.read()))

    assert wait_until(lambda: summary() == {"contacts": 1, "won_deals": 1})
    assert servers[-1].terminate()
