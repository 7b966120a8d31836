"""Crash and concurrency guarantees, with real OS processes and a real HTTP server."""

from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from iverton_webhooks import SQLiteStore, Status, sign
from iverton_webhooks.samples import sample_body
from tests.durability_app import SECRET, effects_db

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def run_child(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.durability_app", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def effect_counts(path: Path) -> Counter[tuple[str, str]]:
    rows = effects_db(path).execute("SELECT event_id, handler FROM effects").fetchall()
    return Counter((event_id, handler) for event_id, handler in rows)


def test_four_processes_record_and_process_the_same_2000_ids(tmp_path: Path) -> None:
    inbox, effects = tmp_path / "inbox.db", tmp_path / "effects.db"
    SQLiteStore(inbox).close()
    effects_db(effects).close()
    children = [run_child("record-and-process", str(inbox), str(effects), "2000") for _ in range(4)]
    outputs = [child.communicate(timeout=180) for child in children]
    for child, (_out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
    assert sum(int(out.strip().split("=")[1]) for out, _ in outputs) == 2000

    store = SQLiteStore(inbox)
    assert store.count() == 2000
    assert {e.status for e in store.list(limit=5000)} == {Status.DONE}
    assert {e.deliveries for e in store.list(limit=5000)} == {4}
    counts = effect_counts(effects)
    assert len(counts) == 2 * 2000  # both handlers match every event
    assert set(counts.values()) == {1}  # and each ran exactly once, across all processes


def mid_handler_after(path: Path, done: int) -> bool:
    """At least ``done`` effects written, and the one worker asleep inside a handler.

    Killing then, rather than at a random instant, keeps the test away from the one
    window no receiver can close (a handler finished, its success not yet recorded)."""
    conn = effects_db(path)
    effects = conn.execute("SELECT count(*) FROM effects").fetchone()[0]
    sleeping = conn.execute(
        "SELECT count(*) FROM starts s WHERE NOT EXISTS "
        "(SELECT 1 FROM effects e WHERE e.event_id = s.event_id AND e.handler = 'first')"
    ).fetchone()[0]
    conn.close()
    return bool(effects >= done and sleeping)


def post(port: int, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/", body, {"X-Iverton-Signature": sign(body, SECRET)})
        return connection.getresponse().status
    finally:
        connection.close()


def test_sigkill_after_ack_loses_nothing_and_runs_nothing_twice(tmp_path: Path) -> None:
    inbox, effects = tmp_path / "inbox.db", tmp_path / "effects.db"
    effects_db(effects).close()
    server = run_child("serve", str(inbox), str(effects))
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        ids = [f"evt_kill_{n:03d}" for n in range(30)]
        statuses = [post(port, sample_body("deal.won", id=event_id)) for event_id in ids]
        assert statuses == [200] * len(ids)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not mid_handler_after(effects, 6):
            time.sleep(0.01)
    finally:
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
    before = effect_counts(effects)
    assert 0 < len(before) < 2 * len(ids), "the kill must land mid-processing"

    time.sleep(1.2)  # the dead server's leases (1 s) run out
    recovery = run_child("recover", str(inbox), str(effects))
    _out, err = recovery.communicate(timeout=60)
    assert recovery.returncode == 0, err

    store = SQLiteStore(inbox)
    assert {e.id for e in store.list(limit=100) if e.status is Status.DONE} == set(ids)
    counts = effect_counts(effects)
    assert set(counts) == {(i, h) for i in ids for h in ("first", "second")}  # 0 lost
    assert set(counts.values()) == {1}  # 0 run twice to success
