"""Endpoints registered in the store, served at ``<path>/<name>`` by every Starlette and
FastAPI form: the middleware, ``webhook_route``, ``webhook_router`` and a path operation
of the user's own with the ``IvertonWebhook`` dependency. Each endpoint is checked
against its own secrets and kept under its name; every name that is not an enabled
endpoint gets the core's one 404, never a 500."""

# No "from __future__ import annotations": FastAPI resolves the path operations'
# annotations, and they name dependencies local to this module.

import http.client
import importlib.util
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest

pytest.importorskip("starlette.applications")

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.testclient import TestClient

from iverton_webhooks import (
    ConfigurationError,
    Event,
    MemoryStore,
    Receiver,
    Router,
    SQLiteStore,
    Status,
    sign,
)
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware, webhook_route
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, wait_for
from tests.starlette.helpers import PATH
from tests.stores import UnreadableRegistry

ACME = "whsec_acme_4f3e2d1c0b9a"
ACME_NEXT = "whsec_acme_next_8e7d6c5b"
GLOBEX = "whsec_globex_1a2b3c4d5e"
NOT_FOUND = b'{"error":"no such endpoint"}'
T0 = 1_800_000_000.0

needs_fastapi = pytest.mark.skipif(
    importlib.util.find_spec("fastapi") is None, reason="FastAPI is not installed"
)
#: The forms that route every path below theirs to the core.
FORMS = [
    "middleware",
    "route",
    pytest.param("fastapi-router", marks=needs_fastapi),
]
#: And a path operation of the user's own, declared at PATH and PATH/{endpoint}.
ALL_FORMS = [*FORMS, pytest.param("fastapi-own", marks=needs_fastapi)]


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Deliveries:
    """What handlers and the FastAPI dependency saw: (endpoint, event id) pairs."""

    def __init__(self) -> None:
        self.handled: list[tuple[str, str]] = []
        self.given: list[tuple[str, str]] = []


def serve(form: str, receiver: Receiver, seen: Deliveries) -> Starlette:
    """An app answering webhooks for ``receiver`` at PATH in the given form."""
    if form == "middleware":
        return Starlette(middleware=[Middleware(IvertonWebhookMiddleware, receiver=receiver)])
    if form == "route":
        return Starlette(routes=[webhook_route(PATH, receiver)])
    from fastapi import APIRouter, Depends, FastAPI
    from fastapi.responses import Response

    from iverton_webhooks.contrib.fastapi import (
        Delivery,
        IvertonWebhook,
        WebhookRoute,
        webhook_router,
    )

    app = FastAPI()
    if form == "fastapi-router":
        app.include_router(webhook_router(receiver))
        return app
    webhook = IvertonWebhook(receiver)
    api = APIRouter(route_class=WebhookRoute)

    @api.post(PATH)
    @api.post(PATH + "/{endpoint}")
    async def hooks(delivery: Annotated[Delivery, Depends(webhook)]) -> Response:
        if delivery.event is not None:
            seen.given.append((delivery.event.endpoint, delivery.event.id))
        return delivery.response()

    app.include_router(api)
    return app


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    store = MemoryStore(clock=clock)
    store.add_endpoint("acme", ACME)
    store.add_endpoint("globex", GLOBEX)
    return store


@pytest.fixture
def seen() -> Deliveries:
    return Deliveries()


@pytest.fixture
def make_receiver(store: MemoryStore, seen: Deliveries) -> Iterator[Callable[..., Receiver]]:
    made: list[Receiver] = []
    router = Router()

    @router.on("*")
    def record(event: Event) -> None:
        seen.handled.append((event.endpoint, event.id))

    def make(**options: Any) -> Receiver:
        options = {"secret": SECRET, "endpoint_registry": True, **options}
        receiver = Receiver(store=store, router=router, runner="inline", **options)
        made.append(receiver)
        return receiver

    yield make
    for receiver in made:
        receiver.close(timeout=5)


@pytest.fixture
def connect() -> Iterator[Callable[[Starlette], TestClient]]:
    clients: list[TestClient] = []

    def connect(app: Starlette) -> TestClient:
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return client

    yield connect
    for client in clients:
        client.__exit__(None, None, None)


def post(client: TestClient, path: str, secret: str, event_id: str = "evt_1") -> tuple[int, bytes]:
    body = sample_body("deal.won", id=event_id)
    headers = {"X-Iverton-Signature": sign(body, secret)}
    # The sender follows no redirect: neither may the test.
    reply = client.post(path, content=body, headers=headers, follow_redirects=False)
    return reply.status_code, reply.content


@pytest.mark.parametrize("form", ALL_FORMS)
def test_a_registered_endpoint_is_served_and_kept_under_its_name(
    form: str,
    connect: Callable[[Starlette], TestClient],
    make_receiver: Callable[..., Receiver],
    store: MemoryStore,
    seen: Deliveries,
) -> None:
    client = connect(serve(form, make_receiver(), seen))
    assert post(client, PATH + "/acme", ACME, "evt_a") == (200, b'{"status":"accepted"}')
    assert post(client, PATH + "/acme/", ACME, "evt_a") == (200, b'{"status":"duplicate"}')
    assert post(client, PATH + "/globex", GLOBEX, "evt_a")[0] == 200
    assert seen.handled == [("acme", "evt_a"), ("globex", "evt_a")]
    stored = store.get("evt_a", endpoint="acme")
    assert stored is not None
    assert (stored.endpoint, stored.status) == ("acme", Status.DONE)
    assert store.get("evt_a") is None  # nothing under the receiver's own endpoint
    # The receiver's own URL and secret keep working beside the registry.
    assert post(client, PATH, SECRET, "evt_own")[0] == 200
    assert store.get("evt_own") is not None
    if form == "fastapi-own":
        assert seen.given[0] == ("acme", "evt_a")  # the Delivery's event knows its endpoint
        assert seen.given[-1] == ("default", "evt_own")


@pytest.mark.parametrize("form", ALL_FORMS)
def test_unknown_disabled_and_removed_endpoints_get_one_404(
    form: str,
    connect: Callable[[Starlette], TestClient],
    make_receiver: Callable[..., Receiver],
    store: MemoryStore,
    seen: Deliveries,
) -> None:
    receiver = make_receiver()
    client = connect(serve(form, receiver, seen))
    store.add_endpoint("initech", ACME)
    assert post(client, PATH + "/initech", ACME)[0] == 200  # its answer is now cached
    store.set_endpoint_enabled("globex", False)
    store.remove_endpoint("initech")
    assert receiver.directory is not None
    receiver.directory.forget()
    answers = {
        name: post(client, f"{PATH}/{name}", secret, "evt_2")
        for name, secret in (("hooli", ACME), ("globex", GLOBEX), ("initech", ACME))
    }
    assert answers == dict.fromkeys(answers, (404, NOT_FOUND))
    assert [event.id for event in store.list(endpoint=None)] == ["evt_1"]


@pytest.mark.parametrize("form", ALL_FORMS)
def test_a_wrong_secret_is_401(
    form: str,
    connect: Callable[[Starlette], TestClient],
    make_receiver: Callable[..., Receiver],
    seen: Deliveries,
) -> None:
    client = connect(serve(form, make_receiver(), seen))
    for secret in (GLOBEX, SECRET, "whsec_made_up_000000"):
        assert post(client, PATH + "/acme", secret) == (401, b'{"error":"invalid signature"}')


@pytest.mark.parametrize("form", FORMS)
def test_a_rotated_secret_is_accepted_until_its_grace_ends(
    form: str,
    connect: Callable[[Starlette], TestClient],
    make_receiver: Callable[..., Receiver],
    store: MemoryStore,
    clock: Clock,
    seen: Deliveries,
) -> None:
    receiver = make_receiver()
    directory = receiver.directory
    assert directory is not None
    client = connect(serve(form, receiver, seen))
    assert post(client, PATH + "/acme", ACME, "evt_1")[0] == 200
    assert store.rotate_endpoint("acme", ACME_NEXT, 60)
    directory.forget()
    assert post(client, PATH + "/acme", ACME_NEXT, "evt_2")[0] == 200
    assert post(client, PATH + "/acme", ACME, "evt_3")[0] == 200  # within the grace
    clock.now += 61
    directory.forget()
    assert post(client, PATH + "/acme", ACME, "evt_4")[0] == 401
    assert post(client, PATH + "/acme", ACME_NEXT, "evt_5")[0] == 200


@pytest.mark.parametrize("form", ALL_FORMS)
def test_with_no_secret_only_registered_endpoints_are_served(
    form: str,
    connect: Callable[[Starlette], TestClient],
    make_receiver: Callable[..., Receiver],
    seen: Deliveries,
) -> None:
    client = connect(serve(form, make_receiver(secret=None), seen))
    assert post(client, PATH, SECRET) == (404, NOT_FOUND)
    assert post(client, PATH + "/", SECRET) == (404, NOT_FOUND)
    assert post(client, PATH + "/acme", ACME)[0] == 200


def test_the_middleware_builds_a_registry_receiver_without_a_secret(
    connect: Callable[[Starlette], TestClient], store: MemoryStore
) -> None:
    with pytest.raises(ConfigurationError, match="no webhook secret"):
        IvertonWebhookMiddleware(Starlette(), store=store).receiver  # noqa: B018
    app = Starlette(
        middleware=[Middleware(IvertonWebhookMiddleware, store=store, endpoint_registry=True)]
    )
    client = connect(app)
    assert post(client, PATH + "/acme", ACME, "evt_mw")[0] == 200
    assert store.get("evt_mw", endpoint="acme") is not None
    assert post(client, PATH, SECRET) == (404, NOT_FOUND)


ODD_NAMES = [
    "a%2Fb",  # a percent-encoded slash
    "acme/extra",
    "%C3%A9cole",  # unicode
    "%E2%80%AEacme",  # a bidi control
    "acme%00",
    "...",  # (httpx resolves "..", as every client does)
    ".hidden",
    "ac%20me",
    "a" * 101,
    "a" * 5000,
]


@pytest.mark.parametrize("form", FORMS)
def test_odd_names_get_the_same_404(
    form: str,
    connect: Callable[[Starlette], TestClient],
    make_receiver: Callable[..., Receiver],
    seen: Deliveries,
) -> None:
    client = connect(serve(form, make_receiver(), seen))
    for name in ODD_NAMES:
        assert post(client, f"{PATH}/{name}", ACME) == (404, NOT_FOUND), name[:20]
    reply = client.get(PATH + "/acme")
    assert (reply.status_code, reply.headers["allow"]) == (405, "POST")


@pytest.mark.parametrize("form", FORMS)
def test_without_the_registry_names_below_the_path_are_not_ours(
    form: str,
    connect: Callable[[Starlette], TestClient],
    make_receiver: Callable[..., Receiver],
    seen: Deliveries,
) -> None:
    client = connect(serve(form, make_receiver(endpoint_registry=False), seen))
    status, body = post(client, PATH + "/acme", ACME)
    assert status == 404
    assert body != NOT_FOUND  # the app's own 404: the request never reached the receiver
    assert post(client, PATH + "/", SECRET)[0] == 200  # no redirect to the bare path


@pytest.mark.parametrize("form", ALL_FORMS)
def test_a_registry_that_cannot_be_read_is_503(
    form: str,
    connect: Callable[[Starlette], TestClient],
    make_receiver: Callable[..., Receiver],
    store: MemoryStore,
    seen: Deliveries,
) -> None:
    receiver = make_receiver()
    assert receiver.directory is not None
    receiver.directory.registry = UnreadableRegistry(store)  # type: ignore[assignment]
    status, body = post(connect(serve(form, receiver, seen)), PATH + "/acme", ACME)
    assert status == 503
    assert b"retry" in body


def effects(db: Path) -> list[tuple[str, str]]:
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    try:
        return [tuple(row) for row in conn.execute("SELECT endpoint, event_id FROM effects")]
    except sqlite3.OperationalError:  # no table yet
        return []
    finally:
        conn.close()


def raw_post(port: int, path: str, secret: str, event_id: str) -> tuple[int, bytes]:
    """POST with ``path`` sent exactly as written (percent escapes and all)."""
    body = sample_body("deal.won", id=event_id)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", path, body, {"X-Iverton-Signature": sign(body, secret)})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("form", ["starlette", pytest.param("fastapi", marks=needs_fastapi)])
def test_under_a_real_uvicorn(form: str, tmp_path: Path) -> None:
    pytest.importorskip("uvicorn")
    from tests.starlette.test_starlette_uvicorn import Server

    inbox, db, log = tmp_path / "inbox.sqlite3", tmp_path / "effects.sqlite3", tmp_path / "log"
    registry = SQLiteStore(inbox)
    registry.add_endpoint("acme", ACME)
    env = {
        "E2E_FORM": form,
        "E2E_STORE": f"sqlite:///{inbox}",
        "E2E_EFFECTS_DB": str(db),
        "PYTHONPATH": os.getcwd(),
    }
    server = Server("tests.starlette.endpoints_app:app", Path.cwd(), env, log)
    try:
        port = server.port
        assert raw_post(port, "/hooks/acme", ACME, "evt_real")[0] == 200
        assert raw_post(port, "/hooks/acme/", ACME, "evt_real") == (200, b'{"status":"duplicate"}')
        assert raw_post(port, "/hooks/acme", GLOBEX, "evt_x")[0] == 401
        for path in (
            "/hooks",
            "/hooks/hooli",
            "/hooks/a%2Fb",
            "/hooks/%C3%A9",
            "/hooks/" + "x" * 3000,
        ):
            assert raw_post(port, path, ACME, "evt_x") == (404, NOT_FOUND), path[:30]
        # Added while the server runs: served at once, with no restart.
        registry.add_endpoint("globex", GLOBEX)
        assert raw_post(port, "/hooks/globex", GLOBEX, "evt_live")[0] == 200
        expected = [("acme", "evt_real"), ("globex", "evt_live")]
        assert wait_for(lambda: sorted(effects(db)) == expected, timeout=15), effects(db)
    finally:
        assert server.terminate(), log.read_text()
        registry.close()
    stored = SQLiteStore(inbox)
    try:
        assert {(e.endpoint, e.id, e.status) for e in stored.list(endpoint=None)} == {
            ("acme", "evt_real", Status.DONE),
            ("globex", "evt_live", Status.DONE),
        }
    finally:
        stored.close()
