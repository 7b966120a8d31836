"""The app that gunicorn serves in test_flask_gunicorn.py (``flask_gunicorn_app:create_app()``).

Paths come from the environment. Handlers write one row per successful run into a separate
SQLite file, so the test can count how often each handler ran, whichever process ran it.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time

from flask import Flask, current_app

from iverton_webhooks import Event, Router
from iverton_webhooks.contrib.flask import IvertonWebhooks

SECRET = "whsec_gunicorn_e2e"


def effects_db(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS effects (event_id TEXT, handler TEXT, pid INT)")
    return conn


def make_router() -> Router:
    router = Router()
    local = threading.local()

    def effect(event: Event, name: str) -> None:
        # current_app works only inside the app context the adapter pushes.
        path = current_app.config["EFFECTS_PATH"]
        conn = getattr(local, "conn", None) or effects_db(path)
        local.conn = conn
        conn.execute("INSERT INTO effects VALUES (?, ?, ?)", (event.id, name, os.getpid()))

    @router.on("*")
    def first(event: Event) -> None:
        time.sleep(0.02)  # slow enough for duplicates to arrive mid-processing
        effect(event, "first")

    @router.on("deal.*", "contact.*")
    def second(event: Event) -> None:
        effect(event, "second")

    return router


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ["IVERTON_TEST_INSTANCE"])
    app.config.update(
        IVERTON_WEBHOOK_SECRET=SECRET,
        IVERTON_WEBHOOK_STORE="sqlite:///" + os.environ["IVERTON_TEST_INBOX"],
        IVERTON_WEBHOOK_MAX_BODY_BYTES=4096,
        EFFECTS_PATH=os.environ["IVERTON_TEST_EFFECTS"],
    )
    IvertonWebhooks(app, router=make_router())
    return app
