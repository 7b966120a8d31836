"""Managing registered endpoints in the admin, on SQLite and PostgreSQL: add, rotate,
enable, disable and delete all go through the store's registry, and the request path
follows them; no page and no history message shows a secret whole."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connections
from django.test import AsyncClient, Client

from iverton_webhooks.contrib.django.endpoint import get_receiver
from iverton_webhooks.contrib.django.models import WebhookEndpoint
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers
from tests.django.dj_helpers import ALIAS_PARAMS, ALIASES, inbox_on, post

pytestmark = pytest.mark.django_db(transaction=True, databases=ALIASES)

ENDPOINTS = "/admin/iverton_webhooks/webhookendpoint/"
EVENTS = "/admin/iverton_webhooks/webhookevent/"
ACME = "whsec_acme_0123456789abcdef"
NEW = "whsec_acme_fedcba9876543210"
ACME_URL = "/webhooks/iverton/acme"


@pytest.fixture(params=ALIAS_PARAMS)
def using(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    registry_on = {**settings.IVERTON_WEBHOOKS, "ENDPOINT_REGISTRY": True}
    with inbox_on(request.param, settings, registry_on) as alias:
        yield alias


@pytest.fixture
def staff(using: str) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("boss", "boss@example.com", "pw"))
    return client


@pytest.fixture
def store(using: str) -> DjangoStore:
    return DjangoStore(using)


class Pages:
    """Every admin page fetched, to look for secrets in all of them at the end."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.seen: list[str] = []

    def get(self, url: str, **params: Any) -> str:
        response = self.client.get(url, params)
        assert response.status_code == 200, (url, response.status_code)
        self.seen.append(response.content.decode())
        return self.seen[-1]

    def post(self, url: str, data: dict[str, Any], status: int = 302) -> str:
        response = self.client.post(url, data)
        assert response.status_code == status, (url, response.status_code)
        self.seen.append(response.content.decode())
        return self.seen[-1]


def deliver(client: Client, event_id: str, secret: str) -> int:
    """The status of a delivery to acme, read after every process would see the registry."""
    get_receiver().directory.forget()  # type: ignore[union-attr]
    status: int = post(client, sample_body("deal.won", id=event_id), secret, ACME_URL).status_code
    return status


def deliver_async(event_id: str, secret: str) -> int:
    """`deliver` under ASGI: Django's async view, through AsyncClient."""
    get_receiver().directory.forget()  # type: ignore[union-attr]
    body = sample_body("deal.won", id=event_id)
    headers = {"X-Iverton-Signature": signed_headers(body, secret)["X-Iverton-Signature"]}

    async def send() -> int:
        try:
            response = await AsyncClient().post(
                ACME_URL, body, content_type="application/json", headers=headers
            )
            return int(response.status_code)
        finally:
            # Its ORM work ran in asgiref's long-lived thread: close that thread's
            # connections, or they stay open for the rest of the session.
            await sync_to_async(connections.close_all)()

    return asyncio.run(send())


def select(pages: Pages, action: str, row: WebhookEndpoint) -> None:
    pages.post(ENDPOINTS, {"action": action, "_selected_action": [str(row.pk)]})


def test_add_rotate_disable_enable_and_delete(
    staff: Client, client: Client, using: str, store: DjangoStore
) -> None:
    pages = Pages(staff)
    add = pages.get(f"{ENDPOINTS}add/")
    assert 'type="password" name="secret"' in add
    pages.post(f"{ENDPOINTS}add/", {"name": "acme", "secret": ACME})
    added = store.get_endpoint("acme")
    assert added is not None
    assert [s.secret for s in added.secrets] == [ACME]
    assert deliver(client, "evt_1", ACME) == 200
    row = WebhookEndpoint.objects.using(using).get()

    listing = pages.get(ENDPOINTS)
    assert "whsec_… current" in listing
    assert ACME_URL in listing
    change = pages.get(f"{ENDPOINTS}{row.pk}/change/")
    assert 'type="password" name="new_secret"' in change
    assert 'value="1 03:00:00"' in change  # the 27 h default grace

    pages.post(f"{ENDPOINTS}{row.pk}/change/", {"new_secret": NEW, "grace": "3"})
    rotated = store.get_endpoint("acme")
    assert rotated is not None
    assert [s.secret for s in rotated.secrets] == [NEW, ACME]
    assert deliver(client, "evt_2", NEW) == 200
    assert deliver(client, "evt_3", ACME) == 200  # within the grace
    assert deliver_async("evt_3a", ACME) == 200
    grace_ends = rotated.secrets[1].valid_until
    assert grace_ends is not None
    time.sleep(max(0.0, grace_ends - time.time()) + 0.1)
    assert deliver(client, "evt_4", ACME) == 401
    assert deliver_async("evt_4a", ACME) == 401
    assert deliver(client, "evt_5", NEW) == 200
    assert deliver_async("evt_5a", NEW) == 200

    select(pages, "disable", row)
    assert deliver(client, "evt_6", NEW) == 404
    select(pages, "enable", row)
    assert deliver(client, "evt_7", NEW) == 200

    pages.get(f"{ENDPOINTS}{row.pk}/history/")
    pages.get(f"{ENDPOINTS}{row.pk}/delete/")
    pages.post(f"{ENDPOINTS}{row.pk}/delete/", {"post": "yes"})
    assert store.get_endpoint("acme") is None
    assert deliver(client, "evt_8", NEW) == 404

    changes = list(LogEntry.objects.order_by("pk").values_list("change_message", flat=True))
    assert len(changes) == 5  # added, rotated, disabled, enabled, deleted
    assert "Rotated the signing secret" in changes[1]
    assert changes[2:4] == ["Disabled.", "Enabled."]
    for text in [*pages.seen, *changes]:
        for secret in (ACME, NEW):
            assert secret not in text
            assert secret[:7] not in text


def test_the_forms_refuse_what_the_store_would_not_serve(
    staff: Client, using: str, store: DjangoStore
) -> None:
    pages = Pages(staff)
    assert store.add_endpoint("acme", ACME)
    refused = {
        "bad name": ({"name": "acme eu", "secret": NEW}, "cannot be used"),
        "taken": ({"name": "acme", "secret": NEW}, "already exists"),
        "own": ({"name": "default", "secret": NEW}, "the name of the endpoint in settings"),
        "placeholder": ({"name": "globex", "secret": "whsec_..."}, "placeholder"),
        "newline": ({"name": "globex", "secret": NEW + "\n"}, "whitespace"),
    }
    for data, says in refused.values():
        page = pages.post(f"{ENDPOINTS}add/", data, status=200)
        assert says in page
    row = WebhookEndpoint.objects.using(using).get()
    for data, says in (
        ({"new_secret": NEW, "grace": "-1"}, "cannot be negative"),
        ({"new_secret": "changeme", "grace": "60"}, "placeholder"),
        ({"new_secret": NEW, "grace": "soon"}, "Enter a valid duration"),
    ):
        assert says in pages.post(f"{ENDPOINTS}{row.pk}/change/", data, status=200)
    assert [e.name for e in store.list_endpoints()] == ["acme"]
    still = store.get_endpoint("acme")
    assert still is not None
    assert [s.secret for s in still.secrets] == [ACME]
    for text in pages.seen:
        assert NEW not in text
        assert ACME not in text


def test_bulk_delete_goes_through_the_store(
    staff: Client, using: str, store: DjangoStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("acme", "globex"):
        assert store.add_endpoint(name, ACME)
    removed: list[str] = []
    remove = DjangoStore.remove_endpoint

    def spy(self: DjangoStore, name: str) -> bool:
        removed.append(name)
        return remove(self, name)

    monkeypatch.setattr(DjangoStore, "remove_endpoint", spy)
    pks = [str(pk) for pk in WebhookEndpoint.objects.using(using).values_list("pk", flat=True)]
    response = staff.post(
        ENDPOINTS, {"action": "delete_selected", "_selected_action": pks, "post": "yes"}
    )
    assert response.status_code == 302
    assert sorted(removed) == ["acme", "globex"]
    assert store.list_endpoints() == []


def test_an_endpoint_with_unfinished_events_is_not_deleted(
    staff: Client, using: str, store: DjangoStore
) -> None:
    for name in ("acme", "globex"):
        assert store.add_endpoint(name, ACME)
    body = sample_body("deal.won", id="evt_owed")
    store.record("evt_owed", "deal.won", parse_envelope(body).created_at, body, endpoint="acme")
    row = WebhookEndpoint.objects.using(using).get(name="acme")
    page = staff.get(f"{ENDPOINTS}{row.pk}/delete/").content.decode()
    assert "acme: 1 unfinished event(s); disable it now" in page
    staff.post(f"{ENDPOINTS}{row.pk}/delete/", {"post": "yes"})
    pks = [str(pk) for pk in WebhookEndpoint.objects.using(using).values_list("pk", flat=True)]
    staff.post(ENDPOINTS, {"action": "delete_selected", "_selected_action": pks, "post": "yes"})
    # Neither form removed it (nor, in the bulk form, the endpoint beside it).
    assert [e.name for e in store.list_endpoints()] == ["acme", "globex"]


def test_a_viewer_sees_no_rotate_form(using: str, store: DjangoStore) -> None:
    assert store.add_endpoint("acme", ACME)
    viewer = User.objects.create_user("viewer", password="pw", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhookendpoint"))
    client = Client()
    client.force_login(viewer)
    row = WebhookEndpoint.objects.using(using).get()
    page = client.get(f"{ENDPOINTS}{row.pk}/change/").content.decode()
    assert "acme" in page
    assert "new_secret" not in page
    assert "Rotate" not in page
    assert client.get(f"{ENDPOINTS}add/").status_code == 403
    assert client.post(f"{ENDPOINTS}{row.pk}/change/", {"new_secret": SECRET}).status_code == 403


def test_the_events_admin_filters_by_registered_endpoint(
    staff: Client, client: Client, store: DjangoStore
) -> None:
    assert store.add_endpoint("acme", ACME)
    assert deliver(client, "evt_acme", ACME) == 200
    assert post(client, sample_body("deal.won", id="evt_own")).status_code == 200
    listing = staff.get(EVENTS).content.decode()
    assert "?endpoint=acme" in listing  # the endpoint filter's choice
    only_acme = staff.get(EVENTS, {"endpoint": "acme"}).content.decode()
    assert "evt_acme" in only_acme
    assert "evt_own" not in only_acme
    assert "endpoint acme: pending 0 · processing 0 · done 1" in only_acme
