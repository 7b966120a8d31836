"""Every answer the view gives, through the Django test client, and the Django-side
guarantees around it (CSRF, login, ATOMIC_REQUESTS, a body read by middleware)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.db import connection, connections
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import resolve
from django.views.debug import SafeExceptionReporterFilter

from iverton_webhooks.contrib.django.models import WebhookEvent
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET
from tests.django.dj_helpers import SECOND_SECRET, URL, post
from tests.django.testapp import webhooks as handlers

pytestmark = pytest.mark.django_db(transaction=True)


def test_new_event_is_stored_processed_and_acknowledged(client: Client) -> None:
    body = sample_body("deal.won", id="evt_ok")
    response = post(client, body)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    assert response["Content-Type"] == "application/json"
    row = WebhookEvent.objects.get(event_id="evt_ok")
    assert (bytes(row.body), row.status, row.resource_id) == (body, "done", "deal_654mno")
    assert handlers.calls == [("audit", "evt_ok"), ("celebrate", "evt_ok")]


def test_oversized_is_413_by_content_length_and_by_actual_size(
    client: Client, settings: Any
) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "MAX_BODY_BYTES": 1000}
    big = sample_body("deal.won", data={"notes": "x" * 2000})
    assert post(client, big).status_code == 413
    # A body larger than Django's own DATA_UPLOAD_MAX_MEMORY_SIZE is 413 too, not 400.
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "MAX_BODY_BYTES": 10**9}
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    assert post(client, big).status_code == 413
    assert WebhookEvent.objects.count() == 0


@contextmanager
def failing_inserts(alias: str = "default") -> Iterator[None]:
    """The database refuses writes to the inbox table, as a full disk or a failover would."""
    from django.db import OperationalError

    def refuse(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT") and "iverton_webhooks" in sql:
            raise OperationalError("disk I/O error (injected)")
        return execute(sql, *args)

    with connections[alias].execute_wrapper(refuse):
        yield


def test_database_failure_is_503_so_the_sender_retries(client: Client) -> None:
    body = sample_body("deal.won", id="evt_503")
    with failing_inserts():
        response = post(client, body)
    assert response.status_code == 503
    assert handlers.calls == []
    # The sender's retry then gets through.
    assert post(client, body).status_code == 200
    assert WebhookEvent.objects.get(event_id="evt_503").status == "done"


def test_rotated_secrets_are_all_accepted(client: Client, settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {
        **settings.IVERTON_WEBHOOKS,
        "SECRET": None,
        "SECRETS": ["whsec_new_0123456789abcdef", SECRET],
    }
    for secret, status in (
        ("whsec_new_0123456789abcdef", 200),
        (SECRET, 200),
        ("whsec_retired_0000000000", 401),
    ):
        assert post(client, sample_body("deal.won"), secret=secret).status_code == status


def test_a_second_endpoint_has_its_own_secret_and_keeps_its_events_apart(client: Client) -> None:
    body = sample_body("deal.won", id="evt_second")
    assert post(client, body, url="/webhooks/second/").status_code == 401
    response = post(client, body, secret=SECOND_SECRET, url="/webhooks/second/")
    assert response.status_code == 200
    row = WebhookEvent.objects.get(event_id="evt_second")
    assert row.endpoint == "second"
    view = resolve("/webhooks/second").func
    assert view.endpoint.receiver.endpoint == "second"  # type: ignore[attr-defined]


@pytest.mark.parametrize("append_slash", [True, False])
@pytest.mark.parametrize("debug", [True, False])
@pytest.mark.parametrize("url", ["/webhooks/iverton", "/webhooks/iverton/"])
def test_both_url_forms_answer_whatever_append_slash_and_debug(
    client: Client, settings: Any, append_slash: bool, debug: bool, url: str
) -> None:
    settings.APPEND_SLASH = append_slash
    settings.DEBUG = debug
    event_id = f"evt_url_{append_slash}_{debug}_{url.endswith('/')}"
    response = post(client, sample_body("deal.won", id=event_id), url=url)
    assert (response.status_code, response.json()) == (200, {"status": "accepted"})
    assert WebhookEvent.objects.filter(event_id=event_id).exists()
    second = post(
        client, sample_body("deal.won", id=event_id + "_2"), SECOND_SECRET, url="/webhooks/second"
    )
    assert second.status_code == 200


def test_csrf_is_not_enforced_on_the_webhook() -> None:
    client = Client(enforce_csrf_checks=True)
    assert post(client, sample_body("deal.won")).status_code == 200
    assert client.post("/admin/login/", {}).status_code == 403  # CSRF is on elsewhere


def test_login_required_middleware_does_not_guard_the_webhook(
    client: Client, settings: Any
) -> None:
    middleware = "django.contrib.auth.middleware.LoginRequiredMiddleware"
    pytest.importorskip("django.contrib.auth.middleware").__dict__.get(
        "LoginRequiredMiddleware"
    ) or pytest.skip("LoginRequiredMiddleware is Django 5.1+")
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, middleware]
    assert post(client, sample_body("deal.won")).status_code == 200
    assert client.get("/admin/").status_code == 302  # the middleware is active


def test_not_run_inside_atomic_requests(client: Client) -> None:
    # Under ATOMIC_REQUESTS the insert would be a savepoint inside the request's
    # transaction, committed only after the 2xx: it must be a transaction of its own.
    savepoints_at_insert: list[int] = []

    def spy(execute: Callable[..., Any], sql: str, *args: Any) -> Any:
        if sql.lstrip().upper().startswith("INSERT") and "iverton_webhooks" in sql:
            savepoints_at_insert.append(len(connection.savepoint_ids))
        return execute(sql, *args)

    try:
        connection.settings_dict["ATOMIC_REQUESTS"] = True
        with connection.execute_wrapper(spy):
            assert post(client, sample_body("contact.created")).status_code == 200
    finally:
        connection.settings_dict["ATOMIC_REQUESTS"] = False
    assert savepoints_at_insert == [0]
    view = resolve(URL).func
    assert set(connections) <= view._non_atomic_requests  # type: ignore[attr-defined]


class ReadsBodyFirst:
    """A middleware that reads the body (and parses POST) before the view, as logging
    or request-inspection middleware do."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.body  # noqa: B018
        request.POST  # noqa: B018
        return self.get_response(request)


def test_verifies_when_a_middleware_read_the_body_first(client: Client, settings: Any) -> None:
    settings.MIDDLEWARE = [f"{__name__}.ReadsBodyFirst", *settings.MIDDLEWARE]
    assert post(client, sample_body("deal.won")).status_code == 200


class ReadsStream:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.read()
        return self.get_response(request)


def test_a_body_consumed_as_a_stream_is_400_not_500(client: Client, settings: Any) -> None:
    settings.MIDDLEWARE = [f"{__name__}.ReadsStream", *settings.MIDDLEWARE]
    response = post(client, sample_body("deal.won"))
    assert response.status_code == 400
    assert "consumed" in response.json()["detail"]


def test_secrets_are_masked_in_error_reports(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "SECRETS": ["whsec_other_1234567"]}
    safe = SafeExceptionReporterFilter().get_safe_settings()["IVERTON_WEBHOOKS"]
    assert SECRET not in repr(safe)
    assert "whsec_other_1234567" not in repr(safe)
    assert safe["RUNNER"] == "inline"
