"""The middleware's own behaviour, through Starlette's TestClient and through httpx's ASGI
transport (no lifespan: the runner starts on the first request): pass-through, mounts,
options. The answers every adapter shares are in tests/adapters."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest

pytest.importorskip("starlette.applications")

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.testclient import TestClient

from iverton_webhooks import ConfigurationError, MemoryStore, Receiver
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed, signed_headers
from tests.starlette.helpers import PATH


class Client(Protocol):
    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes = ...,
        headers: Any = ...,
    ) -> httpx.Response: ...


class TransportClient:
    """A synchronous face on httpx.AsyncClient + ASGITransport (one loop per request)."""

    def __init__(self, app: Starlette) -> None:
        self.app = app

    def request(
        self,
        method: str,
        url: str,
        *,
        content: bytes = b"",
        headers: Any = None,
    ) -> httpx.Response:
        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                return await client.request(method, url, content=content, headers=headers)

        return asyncio.run(go())


async def other(request: Request) -> PlainTextResponse:
    return PlainTextResponse("other")


def make_app(receiver: Receiver) -> Starlette:
    return Starlette(
        routes=[Route("/other", other)],
        middleware=[Middleware(IvertonWebhookMiddleware, path=PATH, receiver=receiver)],
    )


@pytest.fixture(params=["testclient", "httpx-asgi"])
def connect(request: pytest.FixtureRequest) -> Iterator[Callable[[Starlette], Client]]:
    clients: list[TestClient] = []

    def connect(app: Starlette) -> Client:
        if request.param == "httpx-asgi":
            return TransportClient(app)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(
    connect: Callable[[Starlette], Client], make_receiver: Callable[..., Receiver]
) -> Client:
    return connect(make_app(make_receiver()))


def test_new_event_is_accepted_then_duplicate(client: Client, store: MemoryStore) -> None:
    body, headers = signed(id="evt_new")
    first = client.request("POST", PATH, content=body, headers=headers)
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert first.headers["content-type"] == "application/json"
    assert first.headers["content-length"] == str(len(first.content))
    again = client.request("POST", PATH, content=body, headers=headers)
    assert (again.status_code, again.json()) == (200, {"status": "duplicate"})
    stored = store.get("evt_new")
    assert stored is not None
    assert stored.body == body  # the exact bytes, never re-serialised
    assert stored.deliveries == 2


class BrokenStore(MemoryStore):
    def record(self, *args: object, **kwargs: object) -> bool:
        raise OSError("disk full")


def test_store_down_is_503(
    connect: Callable[[Starlette], Client], make_receiver: Callable[..., Receiver]
) -> None:
    client = connect(make_app(make_receiver(store=BrokenStore())))
    body, headers = signed(id="evt_503")
    reply = client.request("POST", PATH, content=body, headers=headers)
    assert reply.status_code == 503
    assert "retry" in reply.json()["error"]


def test_other_paths_pass_through(client: Client) -> None:
    assert client.request("GET", "/other").text == "other"
    assert client.request("POST", PATH + "x", content=b"x").status_code == 404


def test_inside_a_mounted_sub_app_the_path_is_relative_to_it(
    connect: Callable[[Starlette], Client], make_receiver: Callable[..., Receiver]
) -> None:
    inner = make_app(make_receiver())
    client = connect(Starlette(routes=[Mount("/sub", app=inner), Route("/other", other)]))
    body, headers = signed(id="evt_mounted")
    assert client.request("POST", "/sub" + PATH, content=body, headers=headers).status_code == 200
    assert client.request("POST", PATH, content=body, headers=headers).status_code == 404
    assert client.request("GET", "/sub/other").text == "other"


def test_rotation_accepts_every_configured_secret(connect: Callable[[Starlette], Client]) -> None:
    app = Starlette(
        middleware=[
            Middleware(
                IvertonWebhookMiddleware,
                path=PATH,
                secrets=["whsec_new", SECRET],
                store="memory://",
            )
        ]
    )
    client = connect(app)
    for event_id, secret in (("evt_old", SECRET), ("evt_rotated", "whsec_new")):
        body = sample_body("deal.won", id=event_id)
        reply = client.request("POST", PATH, content=body, headers=signed_headers(body, secret))
        assert reply.status_code == 200, secret
    body = sample_body("deal.won", id="evt_third")
    reply = client.request("POST", PATH, content=body, headers=signed_headers(body, "whsec_x"))
    assert reply.status_code == 401


def test_configuration_errors(make_receiver: Callable[..., Receiver]) -> None:
    app = Starlette()
    with pytest.raises(ConfigurationError, match="no webhook secret"):
        IvertonWebhookMiddleware(app, store="memory://").receiver  # noqa: B018
    with pytest.raises(ConfigurationError, match="either receiver"):
        IvertonWebhookMiddleware(app, receiver=make_receiver(), secret=SECRET).receiver  # noqa: B018
    middleware = IvertonWebhookMiddleware(app, secret=SECRET, store="memory://", endpoint="eu")
    assert type(middleware.receiver.runner).__name__ == "AsyncioRunner"
    assert middleware.receiver.endpoint == "eu"


def test_a_middleware_endpoint_keeps_its_events_apart(
    connect: Callable[[Starlette], Client],
) -> None:
    store = MemoryStore()
    app = Starlette(
        middleware=[
            Middleware(
                IvertonWebhookMiddleware, path=PATH, secret=SECRET, store=store, endpoint="eu"
            )
        ]
    )
    body, headers = signed(id="evt_eu")
    assert connect(app).request("POST", PATH, content=body, headers=headers).status_code == 200
    assert store.get("evt_eu", endpoint="eu") is not None
    assert store.get("evt_eu") is None
