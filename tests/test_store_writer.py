"""``receive_async`` on SQLite (issue 15): one long-lived writer thread per store
instead of a thread-pool hop per request, and each 2xx still a committed insert."""

from __future__ import annotations

import asyncio
import contextvars
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from iverton_webhooks import Receiver, Router, SQLiteStore
from iverton_webhooks.inbox.base import DEFAULT_ENDPOINT
from iverton_webhooks.runners import InlineRunner
from iverton_webhooks.samples import sample_body
from iverton_webhooks.writer import StoreWriter, writer_for
from tests.conftest import SECRET, signed_headers


class NullRunner(InlineRunner):
    def submit(self, event_id: str) -> None:
        pass


class ThreadNoting(SQLiteStore):
    """Notes which thread made each insert."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.threads: set[str] = set()
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def insert_row(self, row: dict[str, object]) -> bool:
        self.threads.add(threading.current_thread().name)
        return super().insert_row(row)


def committed(path: Path, event_id: str) -> bool:
    """Read with a connection of its own: only committed rows are visible to it."""
    conn = sqlite3.connect(path)
    try:
        found = conn.execute(
            "SELECT 1 FROM iverton_events WHERE endpoint = ? AND id = ?",
            (DEFAULT_ENDPOINT, event_id),
        ).fetchone()
    finally:
        conn.close()
    return found is not None


def test_concurrent_receive_async_calls_are_each_committed_when_they_return(
    tmp_path: Path,
) -> None:
    path = tmp_path / "inbox.sqlite3"
    store = ThreadNoting(path)
    receiver = Receiver(SECRET, router=Router(), store=store, runner=NullRunner())
    ids = [f"evt_{n}" for n in range(40)]
    late: list[str] = []

    async def one(event_id: str) -> None:
        body = sample_body("deal.won", id=event_id)
        reply = await receiver.receive_async("POST", body, signed_headers(body))
        assert reply.status == 200
        if not committed(path, event_id):
            late.append(event_id)

    async def main() -> None:
        await asyncio.gather(*(one(event_id) for event_id in ids))

    asyncio.run(main())
    assert late == []
    # One long-lived thread made every insert: no thread-pool hop per request.
    assert store.threads == {"iverton-writer"}
    receiver.close()


def test_only_single_writer_stores_get_a_writer(tmp_path: Path) -> None:
    from iverton_webhooks import MemoryStore

    sqlite_store = SQLiteStore(tmp_path / "inbox.sqlite3")
    assert writer_for(sqlite_store) is writer_for(sqlite_store)
    assert writer_for(MemoryStore()) is None
    sqlite_store.close()


def test_the_writer_runs_in_the_callers_context_and_passes_errors_back() -> None:
    writer = StoreWriter(idle=0.2)
    name: contextvars.ContextVar[str] = contextvars.ContextVar("name", default="unset")

    def fail() -> None:
        raise sqlite3.OperationalError("database is locked")

    async def main() -> tuple[str, str]:
        name.set("request")
        seen = await writer.call(name.get)
        with pytest.raises(sqlite3.OperationalError):
            await writer.call(fail)
        return seen, threading.current_thread().name

    seen, _ = asyncio.run(main())
    assert seen == "request"
    # Idle, the thread goes; the next call starts another.
    deadline = time.monotonic() + 5
    while writer._thread is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer._thread is None
    assert asyncio.run(_call(writer, lambda: 7)) == 7


async def _call(writer: StoreWriter, func: object) -> object:
    return await writer.call(func)  # type: ignore[arg-type]


_CHILD = """
import asyncio, sys
from iverton_webhooks import Receiver, Router, SQLiteStore
from iverton_webhooks.runners import InlineRunner
from iverton_webhooks.samples import sample_body
from tests.conftest import signed_headers, SECRET

class NullRunner(InlineRunner):
    def submit(self, event_id):
        pass

receiver = Receiver(SECRET, router=Router(), store=SQLiteStore(sys.argv[1]), runner=NullRunner())

async def one(n):
    event_id = f"evt_{n}"
    body = sample_body("deal.won", id=event_id)
    reply = await receiver.receive_async("POST", body, signed_headers(body))
    if reply.status == 200:
        print(event_id, flush=True)  # acknowledged

async def main():
    n = 0
    while True:
        await asyncio.gather(*(one(n + k) for k in range(16)))
        n += 16

asyncio.run(main())
"""


@pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
def test_kill_9_right_after_acks_keeps_every_acknowledged_id(tmp_path: Path) -> None:
    path = tmp_path / "inbox.sqlite3"
    SQLiteStore(path).close()
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    acked: list[str] = []
    try:
        assert child.stdout is not None
        deadline = time.monotonic() + 60
        while len(acked) < 300 and time.monotonic() < deadline:
            line = child.stdout.readline()
            if not line:
                break
            acked.append(line.strip())
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait(10)
    assert len(acked) >= 300, "the child stopped acknowledging"
    missing = [event_id for event_id in acked if not committed(path, event_id)]
    assert missing == []
