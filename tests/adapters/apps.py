"""The apps the adapter contract suite serves with real servers, one factory per adapter.

Configured from the environment (the suite starts each server as a subprocess):
``IVERTON_TEST_DB`` is the SQLite inbox (for Django, its database). Every adapter gets the
same secret, the same ``max_age`` (so "too old" answers ``expired``) and the same router,
whose catch-all handler accepts everything (so a processed event ends ``done``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from iverton_webhooks import Receiver, Router

SECRET = "whsec_test_secret_0123456789"
PATH = "/webhooks/iverton"
MAX_AGE = timedelta(days=3)

router = Router()


@router.on("*")
def accept(event: Any) -> None:
    """Every event is handled: authentic events end ``done``. With ``IVERTON_TEST_RUNS``
    set, each run appends the pid that ran it and the event id to that file."""
    runs = os.environ.get("IVERTON_TEST_RUNS")
    if runs:
        with open(runs, "a") as out:  # one short write per line: appends do not interleave
            out.write(f"{os.getpid()} {event.id}\n")


def _db() -> str:
    return os.environ["IVERTON_TEST_DB"]


def receiver_options() -> dict[str, Any]:
    return {"secret": SECRET, "store": f"sqlite:///{_db()}", "router": router, "max_age": MAX_AGE}


def wsgi_app() -> Any:
    """``gunicorn 'tests.adapters.apps:wsgi_app()'``"""
    from iverton_webhooks.wsgi import WebhookApp

    return WebhookApp(Receiver(**receiver_options()))


def flask_app() -> Any:
    """``gunicorn 'tests.adapters.apps:flask_app()'``: the extension, configured the
    documented way (config keys), mounted at its default prefix."""
    from flask import Flask

    from iverton_webhooks.contrib.flask import IvertonWebhooks

    app = Flask(__name__)
    app.config.update(IVERTON_WEBHOOK_SECRET=SECRET, IVERTON_WEBHOOK_STORE=f"sqlite:///{_db()}")
    IvertonWebhooks(app, router=router, max_age=MAX_AGE)
    return app


def starlette_app() -> Any:
    """``uvicorn --factory tests.adapters.apps:starlette_app``: the middleware in front of
    an app with a route of its own."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware

    async def other(request: object) -> PlainTextResponse:
        return PlainTextResponse("other")

    return Starlette(
        routes=[Route("/other", other)],
        middleware=[Middleware(IvertonWebhookMiddleware, path=PATH, **receiver_options())],
    )


def django_app() -> Any:
    """``gunicorn 'tests.adapters.apps:django_app()'``, on ``tests.adapters.django_settings``."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.adapters.django_settings")
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()


def starlette_app_without_secret() -> Any:
    """The mistake of issue 13 item 3: the middleware added with no secret."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware

    async def other(request: object) -> PlainTextResponse:
        return PlainTextResponse("other")

    app = Starlette(routes=[Route("/other", other)])
    app.add_middleware(IvertonWebhookMiddleware, store=f"sqlite:///{_db()}")
    return app
