"""The example's own data: a tiny SQLite "CRM" that the webhook handlers update."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

SCHEMA = """
CREATE TABLE IF NOT EXISTS won_deals (
    deal_id TEXT PRIMARY KEY, name TEXT, value REAL, currency TEXT, event_id TEXT
);
CREATE TABLE IF NOT EXISTS suppressed (address TEXT PRIMARY KEY, reason TEXT, event_id TEXT);
"""


@contextmanager
def connect(path: str) -> Iterator[sqlite3.Connection]:
    """A connection in a transaction: committed on success, always closed."""
    db = sqlite3.connect(path, timeout=10)
    db.row_factory = sqlite3.Row
    try:
        with db:
            db.executescript(SCHEMA)
            yield db
    finally:
        db.close()
