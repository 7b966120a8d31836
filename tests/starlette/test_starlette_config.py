"""Issue 13 item 3: a Starlette/FastAPI app whose webhook middleware is misconfigured
refuses to start with the ConfigurationError (uvicorn exits and prints it); it does not
start and answer 500 on every route."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("starlette.applications")

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from iverton_webhooks import ConfigurationError, Receiver
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
from tests.adapters.servers import ROOT, environment, free_port
from tests.conftest import SECRET
from tests.starlette.helpers import PATH


async def other(request: object) -> PlainTextResponse:
    return PlainTextResponse("other")


def app_with(**options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/other", other)],
        middleware=[Middleware(IvertonWebhookMiddleware, path=PATH, **options)],
    )


async def lifespan_startup(app: Starlette) -> dict[str, Any]:
    """Run the ASGI lifespan startup as a server would; the message the app answers."""
    sent: list[dict[str, Any]] = []
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await queue.put({"type": "lifespan.startup"})

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        await queue.put({"type": "lifespan.shutdown"})

    await asyncio.wait_for(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, queue.get, send), 10
    )
    return sent[0]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"store": "memory://"}, id="no-secret"),
        pytest.param({"secrets": "whsec_abcdef0123456789", "store": "memory://"}, id="secrets-str"),
        pytest.param({"secret": SECRET, "receiver": "x", "store": "memory://"}, id="both"),
    ],
)
def test_a_misconfigured_middleware_fails_the_lifespan_startup(options: dict[str, Any]) -> None:
    if options.get("receiver") == "x":
        options["receiver"] = Receiver(SECRET, store="memory://")
    message = asyncio.run(lifespan_startup(app_with(**options)))
    assert message["type"] == "lifespan.startup.failed"
    assert "IvertonWebhookMiddleware" in message["message"]


def test_the_startup_failure_says_where_the_secret_goes() -> None:
    message = asyncio.run(lifespan_startup(app_with(store="memory://")))
    assert "no webhook secret configured" in message["message"]
    assert "secret='whsec_...'" in message["message"]


def test_built_directly_it_refuses_the_webhook_and_leaves_other_routes_alone() -> None:
    app = app_with(store="memory://")

    async def go() -> tuple[int, int]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            other_route = await client.get("/other")
            webhook = await client.post(PATH, content=b"{}")
            return other_route.status_code, webhook.status_code

    assert asyncio.run(go()) == (200, 500)
    with pytest.raises(ConfigurationError, match="no webhook secret"):
        IvertonWebhookMiddleware(other, store="memory://").receiver  # noqa: B018


@pytest.mark.slow
def test_uvicorn_refuses_to_start_an_app_without_a_secret(tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    port = free_port()
    done = subprocess.run(
        [
            *(sys.executable, "-m", "uvicorn", "--factory"),
            "tests.adapters.apps:starlette_app_without_secret",
            *("--host", "127.0.0.1", "--port", str(port)),  # lifespan "auto", the default
        ],
        cwd=ROOT,
        env=environment(tmp_path / "inbox.sqlite3"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "no webhook secret configured" in done.stderr
    assert "Application startup failed" in done.stderr
