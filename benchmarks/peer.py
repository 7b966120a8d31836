"""The peer a careful user writes by hand: verify the signature, then record the event
with one autocommitted ``INSERT ... ON CONFLICT DO NOTHING`` of (id, type, body) through
one connection per thread, and answer 200. It dedupes and is durable like our default
store, so it is the fair yardstick for the request path.

Durability matches :class:`iverton_webhooks.SQLiteStore`'s defaults: ``journal_mode=WAL``,
``synchronous=NORMAL``, ``temp_store=MEMORY``, a busy timeout of 5 s.
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import threading
from typing import Any

from .common import SECRET

_KEY = SECRET.encode()
TABLE = "peer_events"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} "
    "(id TEXT PRIMARY KEY, type TEXT NOT NULL, body BLOB NOT NULL)"
)
INSERT = f"INSERT INTO {TABLE} (id, type, body) VALUES (?, ?, ?) ON CONFLICT DO NOTHING"
# Django's cursor takes the DB-API "format" style whatever the backend.
INSERT_FORMAT = INSERT.replace("?", "%s")


def verified(body: bytes, signature: str | None) -> dict[str, Any] | None:
    """The sender contract's check: ``sha256=`` + hex HMAC-SHA256 of the raw body,
    compared in constant time; then the JSON. ``None`` when the signature is wrong."""
    expected = "sha256=" + hmac.digest(_KEY, body, "sha256").hex()
    if signature is None or not hmac.compare_digest(expected, signature):
        return None
    payload = json.loads(body)
    return payload if isinstance(payload, dict) else None


class SQLitePeer:
    """One SQLite connection per thread, autocommit, our store's pragmas."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._local = threading.local()
        self._connection().execute(CREATE)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=5.0, isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA temp_store=MEMORY")
            self._local.conn = conn
        return conn

    def record(self, body: bytes, signature: str | None) -> int:
        """The whole view's work; the HTTP status to answer."""
        payload = verified(body, signature)
        if payload is None:
            return 401
        self._connection().execute(INSERT, (payload["id"], payload["type"], body))
        return 200
