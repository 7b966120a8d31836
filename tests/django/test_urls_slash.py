"""The documented include, ``path("webhooks/iverton", include(...))``, answers the
sender's URL form (no trailing slash) and the slash form alike, with DEBUG on and off;
a prefix ending in ``/`` draws system check W010 naming the fix."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import Client

from iverton_webhooks.samples import sample_body
from tests.django.dj_helpers import post

pytestmark = pytest.mark.django_db(transaction=True)

WITHOUT_SLASH, WITH_SLASH = "/webhooks/iverton", "/webhooks/iverton/"


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("url", [WITHOUT_SLASH, WITH_SLASH])
def test_the_documented_include_answers_both_forms(settings: Any, debug: bool, url: str) -> None:
    settings.DEBUG = debug
    settings.APPEND_SLASH = True
    client = Client(raise_request_exception=False)
    event_id = f"evt_slash_{debug}_{url.endswith('/')}"
    response = post(client, sample_body("deal.won", id=event_id), url=url)
    assert response.status_code == 200, response.content[:300]
    again = post(client, sample_body("deal.won", id=event_id), url=url)
    assert again.status_code == 200
    assert b"duplicate" in again.content


def test_the_check_is_quiet_for_the_documented_include() -> None:
    assert [m for m in run_checks(tags=["urls"]) if m.id == "iverton_webhooks.W010"] == []


def test_a_prefix_ending_in_a_slash_fails_the_sender_and_the_check_names_the_fix(
    settings: Any,
) -> None:
    settings.ROOT_URLCONF = "tests.django.slash_urls"
    settings.APPEND_SLASH = True
    body = sample_body("deal.won", id="evt_slash_prefix")

    # Why the check exists: the sender's form is redirected (DEBUG off) or a 500 (on).
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    assert post(client, body, url="/api/webhooks/iverton").status_code == 301
    settings.DEBUG = True
    assert post(client, body, url="/api/webhooks/iverton").status_code == 500
    assert post(client, body, url="/api/webhooks/iverton/").status_code == 200

    (message,) = [m for m in run_checks(tags=["urls"]) if m.id.startswith("iverton_webhooks")]
    assert message.id == "iverton_webhooks.W010"
    assert message.level == 30  # a Warning: the site still runs
    assert "'api/webhooks/iverton/'" in message.msg
    assert 'path("api/webhooks/iverton", include("iverton_webhooks.contrib.django.urls"))' in (
        message.hint or ""
    )


def test_a_regex_prefix_ending_in_a_slash_is_reported_too(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.django.slash_urls_regex"
    (message,) = [m for m in run_checks(tags=["urls"]) if m.id == "iverton_webhooks.W010"]
    assert 'path("hooks", include(' in (message.hint or "")
