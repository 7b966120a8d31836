"""A Starlette app that receives Iverton AI webhooks (see README.md to run it).

The webhook endpoint is the middleware at /webhooks/iverton; the handlers below keep a
small local "CRM" table in SQLite up to date. Configuration comes from the environment.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from iverton_webhooks import Event, Router
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
from iverton_webhooks.events import Contact, Deal

# The endpoint's signing secret from the Iverton dashboard. The default is for local tries only.
SECRET = os.environ.get("IVERTON_WEBHOOK_SECRET", "whsec_local_example")
INBOX = os.environ.get("IVERTON_INBOX", "sqlite:///webhooks.sqlite3")
CRM_DB = os.environ.get("EXAMPLE_CRM_DB", "crm.sqlite3")

router = Router()


@contextmanager
def crm() -> Iterator[sqlite3.Connection]:
    """A connection to the local CRM tables, committed and closed on exit."""
    conn = sqlite3.connect(CRM_DB, timeout=10)
    try:
        with conn:  # commits, or rolls back on error
            conn.execute(
                "CREATE TABLE IF NOT EXISTS contacts (id TEXT PRIMARY KEY, email TEXT, name TEXT)"
            )
            conn.execute(
                "CREATE TABLE IF NOT EXISTS won_deals"
                " (id TEXT PRIMARY KEY, value REAL, event_id TEXT)"
            )
            yield conn
    finally:
        conn.close()


@router.on("contact.created", "contact.updated")
def save_contact(event: Event[Contact]) -> None:
    """A sync handler: it runs in a worker thread, so blocking I/O is fine here."""
    contact = event.data
    name = " ".join(filter(None, [contact.first_name, contact.last_name]))
    with crm() as conn:
        conn.execute(
            "INSERT OR REPLACE INTO contacts (id, email, name) VALUES (?, ?, ?)",
            (contact.id, contact.email, name),
        )


@router.on("contact.deleted")
def delete_contact(event: Event[Contact]) -> None:
    with crm() as conn:
        conn.execute("DELETE FROM contacts WHERE id = ?", (event.data.id,))


@router.on("deal.won")
async def celebrate(event: Event[Deal]) -> None:
    """An async handler: it runs on the server's event loop."""
    value = getattr(event.data, "value", None)
    with crm() as conn:  # tiny local write; a real app would await an async client here
        conn.execute(
            "INSERT OR IGNORE INTO won_deals (id, value, event_id) VALUES (?, ?, ?)",
            (event.data.id, value, event.id),
        )


async def summary(request: Request) -> JSONResponse:
    with crm() as conn:
        contacts = conn.execute("SELECT count(*) FROM contacts").fetchone()[0]
        won = conn.execute("SELECT count(*) FROM won_deals").fetchone()[0]
    return JSONResponse({"contacts": contacts, "won_deals": won})


app = Starlette(
    routes=[Route("/", summary)],
    middleware=[
        Middleware(
            IvertonWebhookMiddleware,
            path="/webhooks/iverton",
            secret=SECRET,
            store=INBOX,
            router=router,
        )
    ],
)
