"""The app test_starlette_endpoints.py runs under a real uvicorn: registered endpoints
served at /hooks/<name> by the middleware (E2E_FORM=starlette) or by ``webhook_router``
(E2E_FORM=fastapi), with no secret of its own. The handler writes each event's endpoint
and id to a SQLite file, for the test to read from outside the server."""

from __future__ import annotations

import os
import sqlite3

from starlette.applications import Starlette
from starlette.middleware import Middleware

from iverton_webhooks import Event, Receiver, Router
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware, receiver_lifespan

router = Router()


@router.on("*")
def record(event: Event) -> None:
    conn = sqlite3.connect(os.environ["E2E_EFFECTS_DB"], timeout=30)
    try:
        with conn:
            conn.execute("CREATE TABLE IF NOT EXISTS effects (endpoint TEXT, event_id TEXT)")
            conn.execute("INSERT INTO effects VALUES (?, ?)", (event.endpoint, event.id))
    finally:
        conn.close()


app: Starlette
if os.environ.get("E2E_FORM") == "fastapi":
    from fastapi import FastAPI

    from iverton_webhooks.contrib.fastapi import webhook_router

    receiver = Receiver(
        store=os.environ["E2E_STORE"], router=router, runner="asyncio", endpoint_registry=True
    )
    app = FastAPI(lifespan=receiver_lifespan(receiver))
    app.include_router(webhook_router(receiver, "/hooks"))
else:
    app = Starlette(
        middleware=[
            Middleware(
                IvertonWebhookMiddleware,
                path="/hooks",
                store=os.environ["E2E_STORE"],
                router=router,
                endpoint_registry=True,
            )
        ]
    )
