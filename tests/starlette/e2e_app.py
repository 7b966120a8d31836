"""The app that test_starlette_uvicorn.py runs under a real uvicorn.

Both handlers record a row in a SQLite table per run (not in memory), so the test can count
side effects across concurrent requests and across a restart of the server.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3

from starlette.applications import Starlette
from starlette.middleware import Middleware

from iverton_webhooks import Event, Router
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware

EFFECTS = os.environ["E2E_EFFECTS_DB"]
SLOW_SECONDS = float(os.environ.get("E2E_SLOW_SECONDS", "0"))

router = Router()


def record_effect(event_id: str, handler: str) -> None:
    conn = sqlite3.connect(EFFECTS, timeout=30)
    try:
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT, handler TEXT)")
            conn.execute("INSERT INTO effects VALUES (?, ?)", (event_id, handler))
    finally:
        conn.close()


@router.on("*")
def quick_sync(event: Event) -> None:
    record_effect(event.id, "sync")


@router.on("*")
async def slow_async(event: Event) -> None:
    await asyncio.sleep(SLOW_SECONDS)
    await asyncio.to_thread(record_effect, event.id, "async")


app = Starlette(
    middleware=[
        Middleware(
            IvertonWebhookMiddleware,
            path="/hooks",
            secret=os.environ["E2E_SECRET"],
            store=os.environ["E2E_INBOX"],
            router=router,
            drain_timeout=float(os.environ.get("E2E_DRAIN_SECONDS", "5")),
        )
    ]
)
