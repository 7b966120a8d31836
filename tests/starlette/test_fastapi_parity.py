"""The FastAPI dependency answers as the middleware does: the same status, body and
Allow header for the same request, whichever slash form and method (no 307 to the other
form, no FastAPI 405 body)."""

# No "from __future__ import annotations": FastAPI resolves the path operation's annotations.

from typing import Annotated

import pytest

pytest.importorskip("fastapi")

from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from fastapi.testclient import TestClient
from starlette.applications import Starlette

from iverton_webhooks import Receiver
from iverton_webhooks.contrib.fastapi import Delivery, IvertonWebhook, WebhookRoute
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers

PATH = "/webhooks/iverton"


def receiver() -> Receiver:
    return Receiver(secret=SECRET, store="memory://", runner="inline")


def middleware_app() -> Starlette:
    app = Starlette()
    app.add_middleware(IvertonWebhookMiddleware, path=PATH, receiver=receiver())
    return app


def dependency_app(path: str) -> FastAPI:
    """The documented form: the user's own POST path operation under WebhookRoute."""
    webhook = IvertonWebhook(receiver())
    api = APIRouter(route_class=WebhookRoute)

    @api.post(path)
    async def hooks(delivery: Annotated[Delivery, Depends(webhook)]) -> Response:
        return delivery.response()

    app = FastAPI()
    app.include_router(api)
    return app


def answer(app: object, method: str, path: str, body: bytes, signed: bool) -> tuple[object, ...]:
    headers = signed_headers(body) if signed else {}
    with TestClient(app, follow_redirects=False) as client:  # type: ignore[arg-type]
        response = client.request(method, path, content=body or None, headers=headers)
    return (
        response.status_code,
        response.content,
        response.headers.get("allow"),
        response.headers.get("location"),
    )


@pytest.mark.parametrize("route_path", [PATH, PATH + "/"])
@pytest.mark.parametrize("path", [PATH, PATH + "/"])
@pytest.mark.parametrize(
    ("method", "signed"),
    [
        ("POST", True),
        ("POST", False),
        ("GET", False),
        ("PUT", True),
        ("DELETE", False),
        ("PATCH", False),
        ("OPTIONS", False),
        ("HEAD", False),
    ],
)
def test_same_answer_as_the_middleware(
    route_path: str, path: str, method: str, signed: bool
) -> None:
    body = sample_body("deal.won", id="evt_parity")
    expected = answer(middleware_app(), method, path, body, signed)
    got = answer(dependency_app(route_path), method, path, body, signed)
    assert got == expected
    assert expected[0] in (200, 401, 405)


def test_other_routes_keep_fastapis_own_answers() -> None:
    app = dependency_app(PATH)

    @app.get("/items/")
    async def items() -> dict[str, str]:
        return {"ok": "yes"}

    with TestClient(app, follow_redirects=False) as client:
        assert client.get("/items").status_code == 307  # FastAPI's redirect, not ours
        assert client.post("/items/").status_code == 405
        assert client.post("/items/").json() == {"detail": "Method Not Allowed"}
