"""Endpoints registered in the store, served by the Flask blueprint at ``<prefix>/<name>``:
each checked against its own secrets and kept under its name; every name that is not an
enabled endpoint gets the core's one 404. On SQLite and PostgreSQL, and once over a real
HTTP server."""

from __future__ import annotations

import http.client
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import make_server

from iverton_webhooks import Event, Router, Status, sign
from iverton_webhooks.contrib.flask import IvertonWebhooks
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET
from tests.flask.flask_helpers import PREFIX, close_all, receiver_of
from tests.stores import STORES, UnreadableRegistry

MakeApp = Callable[..., Flask]

ACME = "whsec_acme_4f3e2d1c0b9a"
ACME_NEXT = "whsec_acme_next_8e7d6c5b"
GLOBEX = "whsec_globex_1a2b3c4d5e"
NOT_FOUND = b'{"error":"no such endpoint"}'
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store(request: pytest.FixtureRequest, tmp_path: Path, clock: Clock) -> Iterator[Any]:
    with STORES[request.param](tmp_path, clock) as opened:
        opened.add_endpoint("acme", ACME)
        opened.add_endpoint("globex", GLOBEX)
        yield opened


@pytest.fixture
def handled() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def endpoints_router(handled: list[tuple[str, str]]) -> Router:
    router = Router()

    @router.on("*")
    def record(event: Event) -> None:
        handled.append((event.endpoint, event.id))

    return router


@pytest.fixture
def app(make_app: MakeApp, store: Any, endpoints_router: Router) -> Flask:
    """The blueprint with the registry on and a secret of its own."""
    return make_app(store=store, router=endpoints_router, endpoint_registry=True)


def post(app: Flask, path: str, secret: str, event_id: str = "evt_1") -> tuple[int, bytes]:
    body = sample_body("deal.won", id=event_id)
    response = app.test_client().post(
        path, data=body, headers={"X-Iverton-Signature": sign(body, secret)}
    )
    return response.status_code, response.data


def test_a_registered_endpoint_is_served_and_kept_under_its_name(
    app: Flask, store: Any, handled: list[tuple[str, str]]
) -> None:
    assert post(app, PREFIX + "/acme", ACME, "evt_a") == (200, b'{"status":"accepted"}')
    assert post(app, PREFIX + "/acme/", ACME, "evt_a") == (200, b'{"status":"duplicate"}')
    assert post(app, PREFIX + "/globex", GLOBEX, "evt_a")[0] == 200  # same id, other endpoint
    assert handled == [("acme", "evt_a"), ("globex", "evt_a")]
    stored = store.get("evt_a", endpoint="acme")
    assert stored is not None
    assert (stored.endpoint, stored.status) == ("acme", Status.DONE)
    assert store.get("evt_a") is None  # nothing under the blueprint's own endpoint
    # The blueprint's own URL and secret keep working beside the registry.
    assert post(app, PREFIX, SECRET, "evt_own")[0] == 200
    assert store.get("evt_own") is not None


def test_unknown_disabled_and_removed_endpoints_get_one_404(app: Flask, store: Any) -> None:
    store.add_endpoint("initech", ACME)
    assert post(app, PREFIX + "/initech", ACME)[0] == 200  # its answer is now cached
    store.set_endpoint_enabled("globex", False)
    store.remove_endpoint("initech")
    directory = receiver_of(app).directory
    assert directory is not None
    directory.forget()
    answers = {
        name: post(app, f"{PREFIX}/{name}", secret)
        for name, secret in (("hooli", ACME), ("globex", GLOBEX), ("initech", ACME))
    }
    assert answers == dict.fromkeys(answers, (404, NOT_FOUND))
    assert store.count(endpoint=None) == 1  # the one initech sent while it existed


def test_a_wrong_secret_is_401(app: Flask) -> None:
    for secret in (GLOBEX, SECRET, "whsec_made_up_000000"):
        assert post(app, PREFIX + "/acme", secret) == (401, b'{"error":"invalid signature"}')


def test_a_rotated_secret_is_accepted_until_its_grace_ends(
    app: Flask, store: Any, clock: Clock
) -> None:
    directory = receiver_of(app).directory
    assert directory is not None
    assert post(app, PREFIX + "/acme", ACME, "evt_1")[0] == 200
    assert store.rotate_endpoint("acme", ACME_NEXT, 60)
    directory.forget()
    assert post(app, PREFIX + "/acme", ACME_NEXT, "evt_2")[0] == 200
    assert post(app, PREFIX + "/acme", ACME, "evt_3")[0] == 200  # within the grace
    clock.now += 61
    directory.forget()
    assert post(app, PREFIX + "/acme", ACME, "evt_4")[0] == 401
    assert post(app, PREFIX + "/acme", ACME_NEXT, "evt_5")[0] == 200


def test_with_no_secret_only_registered_endpoints_are_served(
    make_app: MakeApp, store: Any, endpoints_router: Router
) -> None:
    app = make_app(secret=None, store=store, router=endpoints_router, endpoint_registry=True)
    assert post(app, PREFIX, SECRET) == (404, NOT_FOUND)
    assert post(app, PREFIX + "/", SECRET) == (404, NOT_FOUND)
    assert post(app, PREFIX + "/acme", ACME)[0] == 200


def test_the_extension_reads_the_registry_key_and_needs_no_secret(
    tmp_path: Path, store: Any, endpoints_router: Router
) -> None:
    app = Flask("ext", instance_path=str(tmp_path / "instance"))
    app.config.update(
        TESTING=True, IVERTON_WEBHOOK_RUNNER="inline", IVERTON_WEBHOOK_ENDPOINT_REGISTRY=True
    )
    webhooks = IvertonWebhooks(app, router=endpoints_router, store=store)
    try:
        assert webhooks.receiver(app).directory is not None
        assert post(app, PREFIX + "/acme", ACME, "evt_ext")[0] == 200
        assert store.get("evt_ext", endpoint="acme") is not None
        assert post(app, PREFIX, ACME) == (404, NOT_FOUND)
    finally:
        close_all(app)


ODD_NAMES = [
    "a%2Fb",  # a percent-encoded slash
    "acme/extra",
    "%C3%A9cole",  # unicode
    "%E2%80%AEacme",  # a bidi control
    "acme%00",
    "..",
    ".hidden",
    "ac%20me",
    "a" * 101,
    "a" * 5000,
]


@pytest.mark.parametrize("name", ODD_NAMES, ids=lambda name: name[:20])
def test_odd_names_get_the_same_404(app: Flask, name: str) -> None:
    assert post(app, f"{PREFIX}/{name}", ACME) == (404, NOT_FOUND)


def test_other_methods_get_the_cores_405_at_a_name(app: Flask) -> None:
    response = app.test_client().get(PREFIX + "/acme")
    assert (response.status_code, response.headers["Allow"]) == (405, "POST")


def test_without_the_registry_names_stay_unrouted(make_app: MakeApp) -> None:
    app = make_app()
    status, body = post(app, PREFIX + "/acme", SECRET)
    assert status == 404
    assert body != NOT_FOUND  # Flask's own page: the blueprint routes no such URL
    rules = [rule.rule for rule in app.url_map.iter_rules() if rule.rule.startswith(PREFIX)]
    assert rules == [PREFIX, PREFIX + "/"]


def test_a_registry_that_cannot_be_read_is_503(make_app: MakeApp, store: Any) -> None:
    app = make_app(store=store, endpoint_registry=True)
    receiver = receiver_of(app)
    assert receiver.directory is not None
    receiver.directory.registry = UnreadableRegistry(store)  # type: ignore[assignment]
    status, body = post(app, PREFIX + "/acme", ACME)
    assert status == 503
    assert b"retry" in body


def test_under_a_real_http_server(app: Flask, store: Any) -> None:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def send(path: str, secret: str, event_id: str) -> tuple[int, bytes]:
        body = sample_body("deal.won", id=event_id)
        connection = http.client.HTTPConnection("127.0.0.1", server.server_port, timeout=10)
        try:
            connection.request("POST", path, body, {"X-Iverton-Signature": sign(body, secret)})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    try:
        assert send(PREFIX + "/acme", ACME, "evt_http")[0] == 200
        assert send(PREFIX + "/acme/", ACME, "evt_http") == (200, b'{"status":"duplicate"}')
        assert send(PREFIX + "/acme", GLOBEX, "evt_x")[0] == 401
        for name in ("hooli", "a%2Fb", "%C3%A9", "x" * 3000):
            assert send(f"{PREFIX}/{name}", ACME, "evt_x") == (404, NOT_FOUND), name
    finally:
        server.shutdown()
        thread.join(10)
    stored = store.get("evt_http", endpoint="acme")
    assert stored is not None
    assert stored.deliveries == 2
