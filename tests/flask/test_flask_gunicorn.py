"""End to end under a real gunicorn: several worker processes share one SQLite inbox and
receive concurrent duplicates; every handler runs once per event."""

from __future__ import annotations

import http.client
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from iverton_webhooks import SQLiteStore, Status, sign
from iverton_webhooks.samples import sample_body

pytest.importorskip("gunicorn")

from tests.flask.flask_gunicorn_app import SECRET, effects_db

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
PATH = "/webhooks/iverton"
WORKERS = 3


def request(
    port: int, method: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        connection.request(method, PATH, body, headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def post(port: int, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
    headers = {"X-Iverton-Signature": sign(body, SECRET), "Content-Type": content_type}
    return request(port, "POST", body, headers)


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A gunicorn master with WORKERS sync workers on 127.0.0.1 (port chosen by the OS)."""
    inbox, effects, log = tmp_path / "inbox.db", tmp_path / "effects.db", tmp_path / "gunicorn.log"
    SQLiteStore(inbox).close()  # schema and WAL mode once, before the workers race for it
    effects_db(str(effects)).close()
    env = {
        **os.environ,
        "IVERTON_TEST_INBOX": str(inbox),
        "IVERTON_TEST_EFFECTS": str(effects),
        "IVERTON_TEST_INSTANCE": str(tmp_path / "instance"),
    }
    command = [
        sys.executable, "-m", "gunicorn",
        "--workers", str(WORKERS),
        "--bind", "127.0.0.1:0",
        "--chdir", str(HERE),
        "--graceful-timeout", "5",
        "--timeout", "30",
        "flask_gunicorn_app:create_app()",
    ]  # fmt: skip
    with log.open("wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        port = wait_for_port(process, log)
        yield port, inbox, effects
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def wait_for_port(process: subprocess.Popen[bytes], log: Path) -> int:
    """The port from gunicorn's log, once it listens and answers (bounded)."""
    deadline = time.monotonic() + 30
    port = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"gunicorn exited with {process.returncode}:\n{log.read_text()}")
        if port is None:
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", log.read_text())
            port = int(found.group(1)) if found else None
        if port is not None:
            try:
                if request(port, "GET")[0] == 405:  # the core's answer: the app is loaded
                    return port
            except OSError:
                pass
        time.sleep(0.1)
    pytest.fail(f"gunicorn did not answer within 30 s:\n{log.read_text()}")


def effect_counts(path: Path) -> Counter[tuple[str, str]]:
    conn = effects_db(str(path))
    try:
        rows = conn.execute("SELECT event_id, handler FROM effects").fetchall()
    finally:
        conn.close()
    return Counter((event_id, handler) for event_id, handler in rows)


def test_concurrent_duplicates_across_gunicorn_workers_run_each_handler_once(
    gunicorn: tuple[int, Path, Path],
) -> None:
    port, inbox, effects = gunicorn
    ids = [f"evt_gu_{n:03d}" for n in range(40)]
    bodies = [
        sample_body("deal.won" if n % 2 else "contact.created", id=event_id)
        for n, event_id in enumerate(ids)
    ]
    content_types = ["application/json", "application/x-www-form-urlencoded", "text/plain"]
    copies = 4  # every event is delivered by 4 client threads at about the same time

    def deliver(seed: int) -> list[tuple[int, bytes]]:
        order = list(range(len(bodies)))
        random.Random(seed).shuffle(order)
        return [post(port, bodies[n], content_types[(n + seed) % 3]) for n in order]

    with ThreadPoolExecutor(max_workers=copies * 2) as pool:
        replies = [r for batch in pool.map(deliver, range(copies * 2)) for r in batch]
    assert {status for status, _ in replies} == {200}
    accepted = [body for _, body in replies if body == b'{"status":"accepted"}']
    assert len(accepted) == len(ids)  # one "accepted" per id, every other copy a duplicate

    deadline = time.monotonic() + 30
    while sum(effect_counts(effects).values()) < 2 * len(ids) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # room for a second run to show up, if there were one
    counts = effect_counts(effects)
    assert len(counts) == 2 * len(ids)  # both handlers match every event
    assert set(counts.values()) == {1}  # and each ran exactly once, across all processes
    conn = effects_db(str(effects))
    pids = {pid for (pid,) in conn.execute("SELECT DISTINCT pid FROM effects")}
    conn.close()
    assert len(pids) >= 2, "expected handlers to run in several gunicorn workers"

    store = SQLiteStore(inbox)
    events = store.list(limit=1000)
    assert {e.status for e in events} == {Status.DONE}
    assert sum(e.deliveries for e in events) == len(replies)
    store.close()


def test_real_server_statuses_including_chunked_bodies(gunicorn: tuple[int, Path, Path]) -> None:
    port, inbox, _ = gunicorn
    body = sample_body("deal.won", id="evt_chunk_ok")
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        headers = {"X-Iverton-Signature": sign(body, SECRET)}
        connection.request("POST", PATH, iter([body[:50], body[50:]]), headers, encode_chunked=True)
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    big = sample_body("deal.won", data={"notes": "x" * 8000})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    try:
        headers = {"X-Iverton-Signature": sign(big, SECRET)}
        connection.request("POST", PATH, iter([big]), headers, encode_chunked=True)
        response = connection.getresponse()
        assert (response.status, response.read()) == (413, b'{"error":"body too large"}')
    finally:
        connection.close()
    assert post(port, big)[0] == 413
    assert post(port, b"{}")[0] == 200  # signed but unreadable: quarantined, acknowledged
    assert request(port, "POST", body, {"X-Iverton-Signature": "sha256=00"})[0] == 401
    assert request(port, "GET")[0] == 405
    store = SQLiteStore(inbox)
    assert store.get("evt_chunk_ok") is not None
    assert store.count() == 2  # and the quarantined "{}"
    store.close()
