"""FastAPI: the ``IvertonWebhook`` dependency in a path operation of the user's own, the
``webhook_router`` factory, refusals answered exactly as the core says (never 422/500),
the OpenAPI option; and one run under a real uvicorn."""

# No "from __future__ import annotations": FastAPI resolves the path operations' annotations,
# and they name dependencies local to each test.

import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("starlette.applications")
pytest.importorskip("fastapi")

import httpx
from fastapi import APIRouter, Depends, FastAPI
from fastapi.responses import Response
from fastapi.testclient import TestClient

from iverton_webhooks import Event, MemoryStore, Receiver, Router, Status
from iverton_webhooks._catalogue import Deal
from iverton_webhooks.contrib.fastapi import (
    Delivery,
    IvertonWebhook,
    WebhookRefused,
    WebhookRoute,
    answer_refused,
    webhook_router,
)
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers, wait_for
from tests.starlette.helpers import PATH, status_of

seen: list[Delivery] = []


def own_app(receiver: Receiver, *, route_class: type | None = WebhookRoute) -> FastAPI:
    """A path operation written by the user, taking the dependency's Delivery."""
    webhook = IvertonWebhook(receiver)
    api = APIRouter(route_class=route_class) if route_class else APIRouter()

    @api.api_route(PATH, methods=["POST", "GET", "PUT"])
    async def hooks(delivery: Annotated[Delivery, Depends(webhook)]) -> Response:
        seen.append(delivery)
        return delivery.response()

    app = FastAPI()
    app.include_router(api)
    return app


@pytest.fixture(autouse=True)
def _forget() -> Iterator[None]:
    seen.clear()
    yield
    seen.clear()


def post(client: TestClient, body: bytes, **headers: str) -> httpx.Response:
    return client.post(PATH, content=body, headers={**signed_headers(body), **headers})


def test_own_path_operation_gets_a_typed_recorded_event(
    router: Router, store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    handled: list[str] = []
    router.on("deal.won")(lambda event: handled.append(event.id))
    body = sample_body("deal.won", id="evt_dep_1")
    with TestClient(own_app(make_receiver())) as client:
        first, again = post(client, body), post(client, body)
    assert (first.status_code, first.json()) == (200, {"status": "accepted"})
    assert again.json() == {"status": "duplicate"}
    new, duplicate = seen
    assert (new.answer, new.is_new, new.duplicate) == ("accepted", True, False)
    assert isinstance(new.event, Event)
    assert isinstance(new.event.data, Deal)
    assert new.event_id == "evt_dep_1"
    assert new.body == body
    assert (duplicate.answer, duplicate.duplicate, duplicate.is_new) == ("duplicate", True, False)
    # Recorded before the path operation ran, and processed once, off the request path.
    assert wait_for(lambda: status_of(store, "evt_dep_1") is Status.DONE)
    assert handled == ["evt_dep_1"]


def test_a_signed_unreadable_body_is_quarantined_not_422(
    store: MemoryStore, make_receiver: Callable[..., Receiver]
) -> None:
    with TestClient(own_app(make_receiver())) as client:
        response = post(client, b'{"id": "evt_bad", "type": 7}')
    assert (response.status_code, response.json()) == (200, {"status": "quarantined"})
    (delivery,) = seen
    assert delivery.quarantined
    assert delivery.event is None
    assert status_of(store, "evt_bad") is Status.QUARANTINED


class DownStore(MemoryStore):
    def record(self, *args: Any, **kwargs: Any) -> bool:
        raise ConnectionError("database is down")


def refusals(client: TestClient) -> dict[str, httpx.Response]:
    body = sample_body("deal.won", id="evt_refused")
    return {
        "forged": client.post(PATH, content=body, headers={"X-Iverton-Signature": "sha256=00"}),
        "unsigned garbage": client.post(PATH, content=b"not json"),
        "declared too large": post(client, b"x" * 3000),
        "streamed too large": client.post(
            PATH, content=iter([b"x" * 1500, b"y" * 1500]), headers=signed_headers(b"z")
        ),
        "get": client.get(PATH),
        "put": client.put(PATH, content=body),
    }


EXPECTED = {
    "forged": (401, b'{"error":"invalid signature"}'),
    "unsigned garbage": (401, b'{"error":"invalid signature"}'),
    "declared too large": (413, b'{"error":"body too large"}'),
    "streamed too large": (413, b'{"error":"body too large"}'),
    "get": (405, b'{"error":"method not allowed"}'),
    "put": (405, b'{"error":"method not allowed"}'),
}


def test_refusals_are_the_core_replies_exactly_under_webhook_route(
    make_receiver: Callable[..., Receiver],
) -> None:
    with TestClient(own_app(make_receiver(max_body_bytes=2048))) as client:
        answers = refusals(client)
    assert {k: (r.status_code, r.content) for k, r in answers.items()} == EXPECTED
    assert answers["get"].headers["allow"] == "POST"
    assert seen == []  # the path operation never ran


def test_refusals_keep_their_status_and_headers_under_a_plain_route(
    make_receiver: Callable[..., Receiver],
) -> None:
    with TestClient(own_app(make_receiver(max_body_bytes=2048), route_class=None)) as client:
        answers = refusals(client)
    assert {k: r.status_code for k, r in answers.items()} == {
        k: status for k, (status, _) in EXPECTED.items()
    }
    assert answers["forged"].json() == {"detail": {"error": "invalid signature"}}
    assert answers["get"].headers["allow"] == "POST"


def test_an_app_wide_handler_answers_refusals_exactly(
    make_receiver: Callable[..., Receiver],
) -> None:
    app = own_app(make_receiver(), route_class=None)
    app.add_exception_handler(WebhookRefused, answer_refused)
    with TestClient(app) as client:
        response = client.post(PATH, content=b"{}", headers={"X-Iverton-Signature": "sha256=0"})
    assert (response.status_code, response.content) == (401, b'{"error":"invalid signature"}')


def test_store_down_is_503_not_500(make_receiver: Callable[..., Receiver]) -> None:
    with TestClient(own_app(make_receiver(store=DownStore())), raise_server_exceptions=False) as c:
        response = post(c, sample_body("deal.won"))
    assert response.status_code == 503
    assert response.json()["error"].startswith("temporarily unable")


def test_webhook_router_factory(store: MemoryStore, make_receiver: Callable[..., Receiver]) -> None:
    calls: list[str] = []

    async def on_delivery(delivery: Delivery) -> None:
        calls.append(delivery.answer)

    app = FastAPI()
    app.include_router(webhook_router(make_receiver(), on_delivery=on_delivery))
    body = sample_body("contact.created", id="evt_router")
    with TestClient(app) as client:
        for url in (PATH, PATH + "/"):
            response = client.post(url, content=body, headers=signed_headers(body))
            assert response.status_code == 200
        get = client.get(PATH)
    assert calls == ["accepted", "duplicate"]
    assert (get.status_code, get.content) == (405, b'{"error":"method not allowed"}')
    assert PATH not in app.openapi()["paths"]  # hidden by default


def test_include_in_schema_documents_the_route(make_receiver: Callable[..., Receiver]) -> None:
    app = FastAPI()
    app.include_router(webhook_router(make_receiver(), include_in_schema=True))
    paths = app.openapi()["paths"]
    assert list(paths) == [PATH]  # one entry: not the slash form, not the 405 catch-all
    post_op = paths[PATH]["post"]
    schema = post_op["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["id", "type", "created_at", "data"]
    assert [p["name"] for p in post_op["parameters"]] == ["X-Iverton-Signature"]
    assert set(post_op["responses"]) >= {"200", "401", "413", "503"}
    # An own path operation: the option is the dependency's route_options().
    webhook = IvertonWebhook(make_receiver())
    own = FastAPI()

    @own.post("/mine", **webhook.route_options(include_in_schema=True))
    async def mine(delivery: Annotated[Delivery, Depends(webhook)]) -> Response:
        return delivery.response()

    @own.post("/hidden", **webhook.route_options())
    async def hidden(delivery: Annotated[Delivery, Depends(webhook)]) -> Response:
        return delivery.response()

    assert list(own.openapi()["paths"]) == ["/mine"]


@pytest.mark.slow
def test_under_a_real_uvicorn(tmp_path: Path) -> None:
    from tests.starlette.test_starlette_uvicorn import Server

    inbox = tmp_path / "inbox.sqlite3"
    env = {"E2E_SECRET": SECRET, "E2E_STORE": f"sqlite:///{inbox}", "PYTHONPATH": os.getcwd()}
    server = Server("tests.starlette.fastapi_dep_app:app", Path.cwd(), env, tmp_path / "log")
    try:
        body = sample_body("deal.won", id="evt_uvicorn_dep")
        with httpx.Client(timeout=10) as client:
            first = client.post(server.url("/hooks"), content=body, headers=signed_headers(body))
            again = client.post(server.url("/hooks"), content=body, headers=signed_headers(body))
            forged = client.post(server.url("/hooks"), content=body)
            big = client.post(
                server.url("/hooks"), content=b"x" * (2 << 20), headers=signed_headers(b"x")
            )
            schema = client.get(server.url("/openapi.json")).json()
        assert (first.status_code, first.json()) == (200, {"status": "accepted"})
        assert (first.headers["x-answer"], first.headers["x-event-type"]) == (
            "accepted",
            "deal.won",
        )
        assert again.headers["x-answer"] == "duplicate"
        assert (forged.status_code, forged.content) == (401, b'{"error":"invalid signature"}')
        assert big.status_code == 413
        assert "requestBody" in schema["paths"]["/hooks"]["post"]

        def done() -> bool:
            with sqlite3.connect(inbox) as db:
                row = db.execute("SELECT status FROM iverton_events").fetchone()
            return row is not None and row[0] == "done"

        assert wait_for(done, timeout=15), (tmp_path / "log").read_text()
    finally:
        assert server.terminate(), (tmp_path / "log").read_text()
