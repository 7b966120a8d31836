"""Server side of ``tests/test_endpoints_under_load.py``: a WSGI app that gunicorn serves
as ``tests.endpoints_load_app:create_app()``, receiving for the endpoints registered in
a shared PostgreSQL store.

``ENDPOINTS_LOAD_STORE`` is the store's URL (its ``table`` keeps the run apart from
others), ``ENDPOINTS_LOAD_EFFECTS`` the table the handler writes one row to per run:
the parent counts those rows, so a run in any process of either server is seen, and a
second run of the same event is counted, never guessed.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from iverton_webhooks import Event, Receiver, Router
from iverton_webhooks.wsgi import WebhookApp


def effects_connection(store_url: str) -> Any:
    """An autocommitting connection to the store's database (the URL minus its query)."""
    import psycopg

    return psycopg.connect(store_url.split("?", 1)[0], autocommit=True, connect_timeout=5)


def create_effects_table(store_url: str, table: str) -> None:
    from psycopg import sql

    with effects_connection(store_url) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} (endpoint text NOT NULL, event_id text NOT NULL, "
                "pid int NOT NULL)"
            ).format(sql.Identifier(table))
        )


def make_router(store_url: str, table: str) -> Router:
    from psycopg import sql

    router = Router()
    local = threading.local()
    insert = sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(sql.Identifier(table))

    @router.on("*")
    def record_run(event: Event[Any]) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = effects_connection(store_url)
        conn.execute(insert, (event.endpoint, event.id, os.getpid()))

    return router


def create_app() -> WebhookApp:
    store_url = os.environ["ENDPOINTS_LOAD_STORE"]
    router = make_router(store_url, os.environ["ENDPOINTS_LOAD_EFFECTS"])
    receiver = Receiver(store=store_url, endpoint_registry=True, runner="thread", router=router)
    return WebhookApp(receiver)
