"""Registered endpoints through the included URLs: ``/webhooks/iverton/<name>`` under
WSGI and ASGI, on SQLite and PostgreSQL; one 404 for every name that is not served;
a project with no secret of its own; the checks that go with ``ENDPOINT_REGISTRY``."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import iscoroutinefunction, sync_to_async
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connections
from django.test import AsyncClient, Client, RequestFactory
from django.urls import resolve, reverse

from iverton_webhooks import ConfigurationError, Event, Router
from iverton_webhooks.contrib.django.endpoint import get_receiver
from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.contrib.django.urls import webhook_path
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers
from tests.django.dj_helpers import ALIAS_PARAMS, ALIASES, SECOND_SECRET, inbox_on, post

pytestmark = pytest.mark.django_db(transaction=True, databases=ALIASES)

ACME = "whsec_acme_0123456789abcdef"
NOT_SERVED = {"error": "no such endpoint"}

router = Router()
#: (event.endpoint, event.id) of every event a handler saw
seen: list[tuple[str, str]] = []


@router.on("*")
def note(event: Event) -> None:
    seen.append((event.endpoint, event.id))


def registry_settings(**more: Any) -> dict[str, Any]:
    return {"RUNNER": "inline", "ROUTER": router, "ENDPOINT_REGISTRY": True, **more}


@pytest.fixture(params=ALIAS_PARAMS)
def using(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    seen.clear()
    with inbox_on(request.param, settings, registry_settings(SECRET=SECRET)) as alias:
        yield alias


@pytest.fixture
def store(using: str) -> DjangoStore:
    registry = get_receiver().store
    assert isinstance(registry, DjangoStore)
    assert registry.using == using
    return registry


def stored(using: str, event_id: str) -> WebhookEvent:
    return WebhookEvent.objects.using(using).get(event_id=event_id)


@pytest.mark.parametrize("url", ["/webhooks/iverton/acme", "/webhooks/iverton/acme/"])
def test_a_registered_endpoint_is_served_at_its_name(
    using: str, store: DjangoStore, url: str
) -> None:
    client = Client(enforce_csrf_checks=True)  # the sender sends no CSRF token
    assert store.add_endpoint("acme", ACME)
    response = post(client, sample_body("deal.won", id="evt_acme"), secret=ACME, url=url)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    row = stored(using, "evt_acme")
    assert (row.endpoint, row.status) == ("acme", "done")
    assert seen == [("acme", "evt_acme")]
    # The settings' own endpoint still answers at the included URL itself.
    assert post(client, sample_body("deal.won", id="evt_own")).status_code == 200
    assert stored(using, "evt_own").endpoint == "default"
    assert reverse("iverton_webhooks:receive", kwargs={"name": "acme"}) == url.rstrip("/")


def test_the_login_required_middleware_does_not_guard_a_name(
    client: Client, settings: Any, store: DjangoStore
) -> None:
    middleware = "django.contrib.auth.middleware.LoginRequiredMiddleware"
    pytest.importorskip("django.contrib.auth.middleware").__dict__.get(
        "LoginRequiredMiddleware"
    ) or pytest.skip("LoginRequiredMiddleware is Django 5.1+")
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, middleware]
    assert store.add_endpoint("acme", ACME)
    body = sample_body("deal.won", id="evt_no_login")
    assert post(client, body, secret=ACME, url="/webhooks/iverton/acme").status_code == 200
    assert client.get("/admin/").status_code == 302  # the middleware is active


def test_every_name_not_served_gets_the_same_404(
    client: Client, using: str, store: DjangoStore
) -> None:
    for name in ("acme", "idle", "gone"):
        assert store.add_endpoint(name, ACME)
    assert store.set_endpoint_enabled("idle", False)
    assert store.remove_endpoint("gone")
    get_receiver().directory.forget()  # type: ignore[union-attr]
    body = sample_body("deal.won", id="evt_nowhere")
    answers = [
        post(client, body, secret=ACME, url=f"/webhooks/iverton/{name}")
        for name in ("globex", "idle", "gone", "-no-such-name", "a%20b")
    ]
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert {a.content for a in answers} == {b'{"error":"no such endpoint"}'}
    assert answers[0].json() == NOT_SERVED
    assert not WebhookEvent.objects.using(using).exists()
    assert seen == []


def test_a_wrong_secret_is_401_and_endpoints_stay_apart(
    client: Client, using: str, store: DjangoStore
) -> None:
    assert store.add_endpoint("acme", ACME)
    body = sample_body("deal.won", id="evt_crossed")
    assert post(client, body, secret=SECRET, url="/webhooks/iverton/acme").status_code == 401
    assert post(client, body, secret="whsec_wrong_0123456789").status_code == 401
    assert post(client, body, secret=ACME).status_code == 401  # acme's secret, own URL
    assert not WebhookEvent.objects.using(using).exists()


def test_under_asgi_the_async_view_serves_a_name(using: str, store: DjangoStore) -> None:
    assert store.add_endpoint("acme", ACME)
    body = sample_body("deal.won", id="evt_async_acme")
    headers = {"X-Iverton-Signature": signed_headers(body, ACME)["X-Iverton-Signature"]}

    async def deliver() -> tuple[Any, Any, Any]:
        view = resolve("/webhooks/iverton/acme").func
        client = AsyncClient()
        try:
            return (
                view,
                await client.post(
                    "/webhooks/iverton/acme", body, content_type="application/json", headers=headers
                ),
                await client.post(
                    "/webhooks/iverton/globex",
                    body,
                    content_type="application/json",
                    headers=headers,
                ),
            )
        finally:
            # AsyncClient's ORM work runs in asgiref's one long-lived thread: close its
            # connections there, or they stay open for the rest of the session.
            await sync_to_async(connections.close_all)()

    view, accepted, unknown = asyncio.run(deliver())
    assert iscoroutinefunction(view)
    assert accepted.status_code == 200
    assert (unknown.status_code, unknown.json()) == (404, NOT_SERVED)
    assert stored(using, "evt_async_acme").endpoint == "acme"
    assert seen == [("acme", "evt_async_acme")]


# Without the registry, a project with no secret, and the checks ------------------------


def test_without_the_registry_names_are_not_matched(client: Client, settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**registry_settings(SECRET=SECRET), "ENDPOINT_REGISTRY": False}
    response = post(client, sample_body("deal.won", id="evt_off"), url="/webhooks/iverton/acme")
    assert response.status_code == 404
    assert response.get("Content-Type", "").startswith("text/html")  # Django's, not ours
    # So a pattern listed after the include keeps its URL below the prefix.
    settings.ROOT_URLCONF = "tests.django.registry_urls"
    body = sample_body("deal.won", id="evt_second")
    answer = post(client, body, secret=SECOND_SECRET, url="/webhooks/iverton/second")
    assert answer.status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_second").endpoint == "second"


def test_a_project_with_only_registered_endpoints(client: Client, settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = registry_settings()
    assert list(run_checks(tags=["iverton_webhooks", "urls"])) == []
    receiver = get_receiver()
    assert receiver.verifier is None
    assert receiver.store.add_endpoint("acme", ACME)  # type: ignore[attr-defined]
    body = sample_body("deal.won", id="evt_only")
    for url in ("/webhooks/iverton", "/webhooks/iverton/"):
        response = post(client, body, url=url)
        assert (response.status_code, response.json()) == (404, NOT_SERVED)
    assert post(client, body, secret=ACME, url="/webhooks/iverton/acme").status_code == 200
    assert WebhookEvent.objects.get().endpoint == "acme"


def test_no_secret_and_no_registry_names_both_fixes(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {"RUNNER": "inline"}
    (message,) = run_checks(tags=["iverton_webhooks"])
    assert message.id == "iverton_webhooks.E001"
    assert '"ENDPOINT_REGISTRY": True' in (message.hint or "")
    with pytest.raises(ConfigurationError, match="'ENDPOINT_REGISTRY': True"):
        get_receiver()


def test_a_bad_registry_value_is_the_settings_error(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = registry_settings(ENDPOINT_REGISTRY="yes")
    (message,) = run_checks(tags=["iverton_webhooks"])
    assert message.id == "iverton_webhooks.E005"
    assert "['ENDPOINT_REGISTRY']" in message.msg


def test_the_database_check_reports_a_missing_endpoints_table(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = registry_settings(DATABASE="default")
    call_command("migrate", "iverton_webhooks", "0005", database="default", verbosity=0)
    try:
        (message,) = run_checks(tags=["database"], databases=["default"])
        settings.IVERTON_WEBHOOKS = {**registry_settings(SECRET=SECRET), "ENDPOINT_REGISTRY": False}
        unused = run_checks(tags=["database"], databases=["default"])
    finally:
        call_command("migrate", "iverton_webhooks", database="default", verbosity=0)
    assert message.id == "iverton_webhooks.W007"
    assert "endpoints table 'iverton_webhooks_webhookendpoint' does not exist" in message.msg
    assert "registered endpoint" in message.msg
    assert "manage.py migrate" in (message.hint or "")
    assert unused == []  # without the registry the table is not needed


def test_a_webhook_path_listed_after_the_registry_route_is_reported(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = registry_settings(SECRET=SECRET)
    settings.ROOT_URLCONF = "tests.django.registry_urls"
    (message,) = [m for m in run_checks(tags=["urls"]) if m.id.startswith("iverton_webhooks")]
    assert message.id == "iverton_webhooks.W012"
    assert "/webhooks/iverton/second" in message.msg
    assert "'second'" in message.msg
    assert "before the include" in (message.hint or "")

    settings.ROOT_URLCONF = "tests.django.registry_urls_first"
    assert [m for m in run_checks(tags=["urls"]) if m.id.startswith("iverton_webhooks")] == []


def test_listed_first_a_webhook_path_keeps_its_url(client: Client, settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = registry_settings(SECRET=SECRET)
    settings.ROOT_URLCONF = "tests.django.registry_urls_first"
    body = sample_body("deal.won", id="evt_kept")
    answer = post(client, body, secret=SECOND_SECRET, url="/webhooks/iverton/second")
    assert answer.status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_kept").endpoint == "second"


def test_a_webhook_path_with_the_registry_serves_names_below_its_route(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**registry_settings(SECRET=SECRET), "ENDPOINT_REGISTRY": False}
    pattern = webhook_path("hooks/eu", endpoint="eu", secret=SECOND_SECRET, endpoint_registry=True)
    plain = webhook_path("hooks/us", endpoint="us", secret=SECOND_SECRET)
    assert plain.resolve("hooks/us/acme") is None  # no registry: the name is not matched
    match = pattern.resolve("hooks/eu/acme/")
    assert match is not None
    assert match.kwargs == {"name": "acme"}
    assert match.func.endpoint.receiver.store.add_endpoint("acme", ACME)
    body = sample_body("deal.won", id="evt_eu_acme")
    request = RequestFactory().post(
        "/hooks/eu/acme", body, content_type="application/json", headers=signed_headers(body, ACME)
    )
    assert match.func(request, **match.kwargs).status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_eu_acme").endpoint == "acme"
