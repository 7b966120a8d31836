"""A Django process on its own PostgreSQL server, whose one handler restarts that server
while it runs; run by test_django_pg_restart.py as ``python -m tests.django.pg_restart_app
DATA_DIR PORT RUNS_FILE``. Connections are persistent (``CONN_MAX_AGE=None``), as on a
production site, so nothing but a broken connection makes Django open a new one.

Prints one JSON line: the event's status and attempts, and the handler's runs (counted in
a file, so a second run is counted whatever process makes it)."""

from __future__ import annotations

import json
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import django
from django.conf import settings

from iverton_webhooks import Event, Router
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers
from tests.fault_app import PrivatePostgres

#: The lease: renewed every third of it while the handler runs; a write is retried for half.
LEASE = 4.0
#: How long the handler goes on once the server is back: two lease renewals or more.
AFTER_RESTART = 3.5


def main(directory: str, runs_file: str) -> dict[str, Any]:
    server = PrivatePostgres(directory)
    server.port = int(sys.argv[3])
    server.url = f"postgresql://postgres@127.0.0.1:{server.port}/postgres"
    settings.configure(
        DATABASES={
            "default": {
                "ENGINE": "django.db.backends.postgresql",
                "NAME": "postgres",
                "USER": "postgres",
                "HOST": "127.0.0.1",
                "PORT": str(server.port),
                "CONN_MAX_AGE": None,
                "OPTIONS": {"connect_timeout": 2},
            }
        },
        INSTALLED_APPS=[
            "django.contrib.contenttypes",
            "django.contrib.auth",
            "iverton_webhooks.contrib.django",
        ],
        USE_TZ=True,
        SECRET_KEY="pg-restart-test",
        IVERTON_WEBHOOKS={"SECRET": SECRET, "RUNNER": "inline"},
    )
    django.setup()
    from django.core.management import call_command
    from django.db import connection

    from iverton_webhooks._errors import StoreUnavailable
    from iverton_webhooks.contrib.django.endpoint import build_receiver
    from iverton_webhooks.contrib.django.models import WebhookEvent
    from iverton_webhooks.contrib.django.store import DjangoStore

    call_command("migrate", verbosity=0)
    router = Router()

    def restart_mid_handler(event: Event[Any]) -> None:
        with open(runs_file, "a") as runs:
            runs.write(event.id + "\n")
        server.stop()
        server.restart_after(0.3).join(30)
        time.sleep(AFTER_RESTART)

    router.add(restart_mid_handler, "deal.won", name="restart")
    receiver = build_receiver(router=router, lease=timedelta(seconds=LEASE))
    body = sample_body("deal.won", id="evt_restart")
    started = time.monotonic()
    reply = receiver.receive("POST", body, signed_headers(body, SECRET))
    processed_in = time.monotonic() - started
    # Past the lease: a run whose result was not recorded is due again, and recovery
    # would run its handler a second time.
    time.sleep(LEASE + 0.5)
    receiver.processor.recover()
    connection.close_if_unusable_or_obsolete()
    row = WebhookEvent.objects.get(event_id="evt_restart")
    receiver.close(5)
    # The store on its own, in this thread, with no fresh_connections around it: the
    # call that meets the dead connection fails, the next one works.
    store = DjangoStore()
    assert store.count() == 1
    server.stop()
    server.start()
    direct = []
    for _ in range(2):
        try:
            direct.append(store.count())
        except StoreUnavailable:
            direct.append(-1)
    return {
        "direct": direct,
        "reply": reply.status,
        "status": row.status,
        "attempts": row.attempts,
        "runs": Path(runs_file).read_text().split(),
        "processed_in": round(processed_in, 2),
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
