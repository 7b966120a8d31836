"""Any body the sender signs is stored and shown by the admin, on SQLite and PostgreSQL:
a lone surrogate as ``data.id`` (once a 503 on every delivery on PostgreSQL, and on
SQLite a resource id that made every change list holding it a 500), a lone surrogate
anywhere in the body (the change page was a 500), bidi characters (reached the page
raw) and a duplicated key (SQLite kept the first value, the pretty body dropped one)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.samples import sample_body
from tests.django.dj_helpers import ALIAS_PARAMS, ALIASES, inbox_on, post

CHANGELIST = "/admin/iverton_webhooks/webhookevent/"


@pytest.fixture(params=ALIAS_PARAMS)
def using(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    with inbox_on(request.param, settings, settings.IVERTON_WEBHOOKS) as alias:
        yield alias


@pytest.fixture
def staff(using: str) -> Client:
    user = User.objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client()
    client.force_login(user)
    return client


def _body(event_id: str, data_json: str) -> bytes:
    """A deal.won body whose ``data`` is exactly ``data_json`` (escapes kept as written)."""
    envelope = json.loads(sample_body("deal.won", id=event_id))
    envelope["data"] = "DATA"
    return json.dumps(envelope).replace('"DATA"', data_json).encode()


def _row(using: str, event_id: str) -> WebhookEvent:
    return WebhookEvent.objects.using(using).get(event_id=event_id)


def _page(client: Client, url: str, params: dict[str, str] | None = None) -> str:
    response = client.get(url, params or {})
    assert response.status_code == 200, response.status_code
    return response.content.decode()


pytestmark = pytest.mark.django_db(transaction=True, databases=ALIASES)


def test_a_lone_surrogate_as_data_id_is_acked_stored_listed_and_shown(
    using: str, staff: Client
) -> None:
    body = _body("evt_sur", '{"id": "\\ud83d", "name": "x"}')
    for _ in range(2):  # a retry too: never a 503 the sender counts
        response = post(Client(), body)
        assert response.status_code == 200, response.content
    row = _row(using, "evt_sur")
    assert row.status == "quarantined"  # the envelope parser refuses lone surrogates
    assert (row.resource_id, bytes(row.body), row.deliveries) == ("\\ud83d", body, 2)
    for params in ({}, {"status__exact": "quarantined"}, {"q": "\\ud83d"}):
        assert "evt_sur" in _page(staff, CHANGELIST, params), params
    page = _page(staff, f"{CHANGELIST}{row.pk}/change/")
    assert "\\ud83d" in page


def test_a_lone_surrogate_in_the_body_is_shown_escaped(using: str, staff: Client) -> None:
    body = _body("evt_sur_name", '{"id": "deal_1", "name": "a\\udc00b \\u202e"}')
    assert post(Client(), body).status_code == 200
    row = _row(using, "evt_sur_name")
    assert row.resource_id == "deal_1"
    page = _page(staff, f"{CHANGELIST}{row.pk}/change/")
    assert "a\\udc00b \\u202e" in page
    assert "\u202e" not in page


def test_bidi_characters_in_a_processed_body_never_reach_the_page_raw(
    using: str, staff: Client
) -> None:
    body = _body("evt_bidi", '{"id": "deal_\u202e1", "name": "\u2066x\u2069\\u0000"}')
    assert post(Client(), body).status_code == 200
    row = _row(using, "evt_bidi")
    assert row.status == "done"
    assert row.resource_id == "deal_\\u202e1"
    for page in (
        _page(staff, CHANGELIST),
        _page(staff, CHANGELIST, {"q": "deal_\\u202e1"}),
        _page(staff, f"{CHANGELIST}{row.pk}/change/"),
    ):
        assert "evt_bidi" in page
        for raw in ("\u202e", "\u2066", "\u2069", "\x00"):
            assert raw not in page
    assert "\\u2066x\\u2069\\u0000" in _page(staff, f"{CHANGELIST}{row.pk}/change/")


def test_a_duplicated_key_reads_as_the_parser_reads_it(using: str, staff: Client) -> None:
    body = _body("evt_dup", '{"id": "first", "id": "second"}')
    assert post(Client(), body).status_code == 200
    row = _row(using, "evt_dup")
    assert row.status == "done"
    assert row.resource_id == "second"  # the value handlers get, on every database
    assert "evt_dup" in _page(staff, CHANGELIST, {"q": "second"})
    assert "evt_dup" not in _page(staff, CHANGELIST, {"q": "first"})
    page = _page(staff, f"{CHANGELIST}{row.pk}/change/")
    assert "a key appears twice" in page
    assert "&quot;first&quot;" in page
    assert "&quot;second&quot;" in page


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a": "\\ud83d"}',
        b'{"a": "\\u0000\\u202e\\u2028"}',
        b'{"a": {"b": 1, "b": 2}}',
        b"\xff\xfe not json \x00 \xe2\x80\xae",
        b"[" * 100_000,
        b'{"n": 1' + b"0" * 5000 + b"}",
        b"",
    ],
)
def test_pretty_json_never_fails_and_escapes_everything(raw: bytes) -> None:
    from iverton_webhooks.contrib.django.admin import pretty_json

    text = pretty_json(raw)
    text.encode("utf-8")  # no lone surrogate left
    for char in ("\x00", "\u202e", "\u2028"):
        assert char not in text


def test_pretty_json_keeps_every_duplicated_value() -> None:
    from iverton_webhooks.contrib.django.admin import pretty_json

    text = pretty_json(b'{"data": {"id": "first", "id": "second"}}')
    assert "first" in text
    assert "second" in text
    assert text.startswith("(a key appears twice")


def test_resource_id_of_agrees_with_the_parser_and_is_storable() -> None:
    from iverton_webhooks.events import parse_envelope, parse_event, resource_id_of

    body = _body("evt_dup", '{"id": "first", "id": "second"}')
    assert resource_id_of(body) == parse_event(body).data.id == "second"
    for data, expected in [
        ('{"id": "a\\u0000b"}', "a\\x00b"),
        ('{"id": "deal_\\u202e1"}', "deal_\\u202e1"),
        ('{"id": "first", "id": "second"}', "second"),
        ('{"id": "' + "x" * 300 + '"}', "x" * 255),
    ]:
        body = _body("evt_1", data)
        value = resource_id_of(body)
        # The receiver passes the envelope's value: the two readers agree.
        assert value == parse_envelope(body).resource_id == expected
        value.encode("utf-8")
        assert "\x00" not in value
    for data, expected in [
        ('{"id": "\\ud83d"}', "\\ud83d"),
        ('{"id": 42}', "42"),
        ('{"id": null}', ""),
    ]:
        # Bodies the envelope refuses (quarantined): the store reads the body.
        assert resource_id_of(_body("evt_1", data)) == expected
