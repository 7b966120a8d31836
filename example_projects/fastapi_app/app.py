"""A FastAPI app that receives Iverton AI webhooks (see README.md to run it).

``app.add_middleware(IvertonWebhookMiddleware, ...)`` answers at /webhooks/iverton; the
app's own API lives on an ``APIRouter`` and is untouched by it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, FastAPI

from iverton_webhooks import Event, Router
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
from iverton_webhooks.events import Contact

# The endpoint's signing secret from the Iverton dashboard. The default is for local tries only.
SECRET = os.environ.get("IVERTON_WEBHOOK_SECRET", "whsec_local_example")
INBOX = os.environ.get("IVERTON_INBOX", "sqlite:///webhooks.sqlite3")
CRM_DB = os.environ.get("EXAMPLE_CRM_DB", "crm.sqlite3")

webhooks = Router()


@contextmanager
def crm() -> Iterator[sqlite3.Connection]:
    """A connection to the local CRM tables, committed and closed on exit."""
    conn = sqlite3.connect(CRM_DB, timeout=10)
    try:
        with conn:  # commits, or rolls back on error
            conn.execute(
                "CREATE TABLE IF NOT EXISTS contacts"
                " (id TEXT PRIMARY KEY, email TEXT, subscribed INT)"
            )
            yield conn
    finally:
        conn.close()


@webhooks.on("contact.created", "contact.updated")
def save_contact(event: Event[Contact]) -> None:
    """Sync handler: runs in a worker thread."""
    with crm() as conn:
        conn.execute(
            "INSERT INTO contacts (id, email, subscribed) VALUES (?, ?, 0) "
            "ON CONFLICT (id) DO UPDATE SET email = excluded.email",
            (event.data.id, event.data.email),
        )


@webhooks.on("contact.subscribed", "contact.unsubscribed")
async def subscription(event: Event[Contact]) -> None:
    """Async handler: runs on the server's event loop."""
    subscribed = int(event.type == "contact.subscribed")
    with crm() as conn:
        conn.execute(
            "INSERT INTO contacts (id, email, subscribed) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET subscribed = excluded.subscribed",
            (event.data.id, event.data.email, subscribed),
        )


api = APIRouter(prefix="/api")


@api.get("/contacts")
def list_contacts() -> list[dict[str, object]]:
    with crm() as conn:
        rows = conn.execute("SELECT id, email, subscribed FROM contacts ORDER BY id").fetchall()
    return [{"id": i, "email": e, "subscribed": bool(s)} for i, e, s in rows]


app = FastAPI(title="Iverton webhooks example")
app.include_router(api)
app.add_middleware(
    IvertonWebhookMiddleware,
    path="/webhooks/iverton",
    secret=SECRET,
    store=INBOX,
    router=webhooks,
)
