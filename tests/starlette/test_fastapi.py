"""FastAPI: add_middleware, and the endpoint on an APIRouter with the receiver's lifespan."""

from __future__ import annotations

from collections.abc import Callable

import pytest

pytest.importorskip("starlette.applications")
pytest.importorskip("fastapi")

from fastapi import APIRouter, FastAPI, Request
from fastapi.testclient import TestClient
from pydantic import BaseModel

from iverton_webhooks import Event, MemoryStore, Receiver, Router, Status
from iverton_webhooks.contrib.starlette import (
    IvertonWebhookMiddleware,
    WebhookEndpoint,
    receiver_lifespan,
)
from tests.conftest import signed, wait_for
from tests.starlette.helpers import PATH, status_of


class Item(BaseModel):
    name: str


def api_router() -> APIRouter:
    api = APIRouter(prefix="/api")

    @api.post("/items")
    async def create(item: Item, request: Request) -> dict[str, str]:
        return {"created": item.name}

    return api


def test_add_middleware(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    ran: list[str] = []

    @router.on("contact.updated")
    async def on_loop(event: Event) -> None:
        ran.append("async")

    @router.on("contact.updated")
    def in_thread(event: Event) -> None:
        ran.append("sync")

    app = FastAPI()
    app.include_router(api_router())
    app.add_middleware(IvertonWebhookMiddleware, path=PATH, receiver=make_receiver())
    body, headers = signed("contact.updated", id="evt_fastapi")
    with TestClient(app) as client:
        assert client.post(PATH, content=body, headers=headers).json() == {"status": "accepted"}
        assert client.post(PATH, content=body, headers=headers).json() == {"status": "duplicate"}
        assert client.post(PATH, content=body[:-1], headers=headers).status_code == 401
        assert client.get(PATH).status_code == 405
        # The app's own JSON API (which reads the body itself) is unaffected.
        assert client.post("/api/items", json={"name": "x"}).json() == {"created": "x"}
        assert client.post("/api/items", json={"nope": 1}).status_code == 422
        assert PATH not in client.get("/openapi.json").json()["paths"]
        assert wait_for(lambda: status_of(store, "evt_fastapi") == Status.DONE)
    assert sorted(ran) == ["async", "sync"]


def test_endpoint_on_an_api_router(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    ran: list[str] = []

    @router.on("email.opened")
    async def handle(event: Event) -> None:
        ran.append(event.id)

    receiver = make_receiver()
    hooks = APIRouter()
    hooks.add_route("/iverton", WebhookEndpoint(receiver))
    app = FastAPI(lifespan=receiver_lifespan(receiver))
    app.include_router(hooks, prefix="/webhooks")
    app.include_router(api_router())
    body, headers = signed("email.opened", id="evt_api_router")
    with TestClient(app) as client:
        assert client.post(PATH, content=body, headers=headers).status_code == 200
        assert client.put(PATH, content=body, headers=headers).status_code == 405
        assert client.post(PATH, content=b"{", headers=signed("email.opened")[1]).status_code == 401
        assert client.post("/api/items", json={"name": "y"}).json() == {"created": "y"}
        assert wait_for(lambda: ran == ["evt_api_router"])
    assert status_of(store, "evt_api_router") == Status.DONE
