"""Child-process side of the durability tests (run as ``python -m tests.durability_app``).

Handlers record their side effects in a separate SQLite file, one row per successful run,
so the parent can count exactly how often each handler ran, whichever process ran it.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from iverton_webhooks import Event, Receiver, Router, SQLiteStore, ThreadRunner
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.samples import sample_body
from iverton_webhooks.wsgi import WebhookApp

SECRET = "whsec_durability"
HANDLERS = ("first", "second")


def effects_db(path: str | Path) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT, handler TEXT, pid INT)")
    conn.execute("CREATE TABLE IF NOT EXISTS starts (event_id TEXT)")
    return conn


def make_router(effects_path: str, slow: float = 0.0) -> Router:
    router = Router()
    local = threading.local()

    def connection() -> sqlite3.Connection:
        conn = getattr(local, "conn", None) or effects_db(effects_path)
        local.conn = conn
        return conn

    def effect(event: Event, name: str) -> None:
        connection().execute("INSERT INTO effects VALUES (?, ?, ?)", (event.id, name, os.getpid()))

    @router.on("*")
    def first(event: Event) -> None:
        if slow:
            # Lets the crash test kill the process while a handler is surely mid-work.
            connection().execute("INSERT INTO starts VALUES (?)", (event.id,))
            time.sleep(slow)
        effect(event, "first")

    @router.on("deal.*", "contact.*")
    def second(event: Event) -> None:
        effect(event, "second")

    return router


def record_and_process(inbox: str, effects: str, count: int) -> None:
    """Record the same ``count`` ids as every sibling process, then drain the inbox."""
    store = SQLiteStore(inbox, timeout=30)
    new = 0
    for n in range(count):
        body = sample_body("deal.won" if n % 2 else "contact.created", id=f"evt_mp_{n:05d}")
        envelope = parse_envelope(body)
        new += store.record(envelope.id, envelope.type, envelope.created_at, body)
    receiver = Receiver(SECRET, router=make_router(effects), store=store, runner="inline")
    while receiver.recover(limit=200):
        pass
    print(f"new={new}", flush=True)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(inbox: str, effects: str) -> None:
    """A real HTTP receiver with slow handlers; the parent kills it mid-processing."""
    receiver = Receiver(
        SECRET,
        router=make_router(effects, slow=0.3),
        store=SQLiteStore(inbox),
        runner=ThreadRunner(workers=1, poll_interval=60),
        lease=timedelta(seconds=1),
    )
    server = make_server("127.0.0.1", 0, WebhookApp(receiver), _Server, _Quiet)
    print(server.server_address[1], flush=True)
    server.serve_forever()


def recover(inbox: str, effects: str) -> None:
    receiver = Receiver(
        SECRET, router=make_router(effects), store=SQLiteStore(inbox), runner="inline"
    )
    counts = receiver.recover()
    print({result.value: n for result, n in counts.items()}, flush=True)


if __name__ == "__main__":
    command, *args = sys.argv[1:]
    if command == "record-and-process":
        record_and_process(args[0], args[1], int(args[2]))
    elif command == "serve":
        serve(args[0], args[1])
    elif command == "recover":
        recover(args[0], args[1])
    else:
        sys.exit(f"unknown command {command}")
