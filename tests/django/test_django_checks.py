"""Mistakes in the Django set-up fail loudly, with the fix in the message (issue 13):
secrets given in a form that would refuse every authentic request (item 1), and an
inbox table that ``migrate`` has not created (item 5)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connections
from django.test import RequestFactory
from django.urls import resolve

from iverton_webhooks import ConfigurationError
from iverton_webhooks._errors import StoreUnavailable
from iverton_webhooks.contrib.django.endpoint import get_receiver
from iverton_webhooks.contrib.django.store import DjangoStore
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers
from tests.django.dj_helpers import URL
from tests.django.test_django_store import CREATED, DATABASE_PARAMS

BASE = {"RUNNER": "inline", "ROUTER": "tests.django.testapp.webhooks.router"}


def messages(settings: Any, value: dict[str, Any]) -> list[Any]:
    settings.IVERTON_WEBHOOKS = {**BASE, **value}
    return list(run_checks(tags=["iverton_webhooks"]))


# Issue 13 item 1: secrets ---------------------------------------------------------------


def test_secrets_as_one_string_is_an_error_showing_the_list_form(settings: Any) -> None:
    (message,) = messages(settings, {"SECRETS": SECRET})
    assert message.id == "iverton_webhooks.E002"
    assert message.is_serious()
    assert "one string" in message.msg
    assert '"SECRETS": [' in message.msg
    assert '"SECRETS": [os.environ' in (message.hint or "")
    assert SECRET not in message.msg + (message.hint or "")  # never echo a secret


@pytest.mark.parametrize(
    "value",
    [
        pytest.param({"SECRETS": SECRET}, id="secrets-string"),
        pytest.param({"SECRETS": SECRET.encode()}, id="secrets-bytes"),
        pytest.param({"SECRETS": {"a": SECRET}}, id="secrets-dict"),
        pytest.param({"SECRET": SECRET + "\n"}, id="trailing-newline"),
        pytest.param({"SECRET": " " + SECRET}, id="leading-space"),
        pytest.param({"SECRET": "   "}, id="blank"),
        pytest.param({"SECRETS": [SECRET, ""]}, id="blank-in-list"),
        pytest.param({"SECRET": "whsec_..."}, id="readme-placeholder"),
        pytest.param({"SECRET": "whsec_xxxxxxxxxxxxx"}, id="sender-docs-placeholder"),
        pytest.param({"SECRET": "changeme"}, id="changeme"),
        pytest.param({"SECRETS": [SECRET, "your_secret_here"]}, id="your-secret"),
        pytest.param({"SECRET": 12345}, id="not-text"),
    ],
)
def test_unusable_secrets_are_refused_by_the_check_and_the_receiver(
    settings: Any, value: dict[str, Any]
) -> None:
    ids = [m.id for m in messages(settings, value)]
    assert ids == ["iverton_webhooks.E002"]
    with pytest.raises(ConfigurationError, match="IVERTON_WEBHOOKS"):
        get_receiver()


@pytest.mark.parametrize(
    "value",
    [
        {"SECRET": SECRET},
        {"SECRETS": [SECRET]},
        {"SECRETS": (SECRET, "whsec_" + "k" * 32)},
        {"SECRET": "", "SECRETS": [SECRET]},
    ],
)
def test_good_secrets_pass(settings: Any, value: dict[str, Any]) -> None:
    assert messages(settings, value) == []
    assert get_receiver() is not None


# Issue 13 item 5: migrate not run ---------------------------------------------------


@pytest.fixture(params=DATABASE_PARAMS)
def unmigrated(request: pytest.FixtureRequest, settings: Any) -> Iterator[str]:
    """The inbox table of one database migrated to ``zero`` (back again afterwards)."""
    alias: str = request.param
    if alias not in connections:
        pytest.skip("no PostgreSQL configured for this run")
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "DATABASE": alias}
    call_command("migrate", "iverton_webhooks", "zero", database=alias, verbosity=0)
    try:
        yield alias
    finally:
        call_command("migrate", "iverton_webhooks", database=alias, verbosity=0)


def database_messages(alias: str) -> list[Any]:
    return list(run_checks(tags=["database"], databases=[alias]))


def test_database_check_reports_a_missing_table_with_the_fix(unmigrated: str) -> None:
    (message,) = database_messages(unmigrated)
    assert message.id == "iverton_webhooks.W007"
    assert "does not exist" in message.msg
    assert "manage.py migrate" in (message.hint or "")
    if unmigrated != "default":
        assert f"--database {unmigrated}" in (message.hint or "")


def test_database_check_reports_a_table_missing_columns(unmigrated: str) -> None:
    call_command("migrate", "iverton_webhooks", "0001", database=unmigrated, verbosity=0)
    (message,) = database_messages(unmigrated)
    assert "lacks the column(s) endpoint" in message.msg
    assert "manage.py migrate" in (message.hint or "")


def test_the_store_says_run_migrate(unmigrated: str) -> None:
    store = DjangoStore(unmigrated)
    with pytest.raises(StoreUnavailable, match=r"manage\.py migrate"):
        store.record("evt_1", "deal.won", CREATED, b"{}")
    with pytest.raises(StoreUnavailable, match=r"manage\.py migrate"):
        store.due()


def test_the_webhook_log_says_run_migrate(
    unmigrated: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="iverton_webhooks")
    body = sample_body("deal.won", id="evt_unmigrated")
    request = RequestFactory().post(
        URL, body, content_type="application/json", headers=signed_headers(body, SECRET)
    )
    response = resolve(URL).func(request)  # the view alone: no auth middleware needed
    assert response.status_code == 503
    assert "manage.py migrate" in caplog.text


@pytest.fixture(params=DATABASE_PARAMS)
def migrated(request: pytest.FixtureRequest) -> str:
    alias: str = request.param
    if alias not in connections:
        pytest.skip("no PostgreSQL configured for this run")
    return alias


def test_database_check_is_quiet_when_migrated(migrated: str) -> None:
    alias = migrated
    assert [m for m in database_messages(alias) if m.id.startswith("iverton_webhooks")] == []


# Issue 15: SQLite without WAL ---------------------------------------------------------


def sqlite_journal(mode: str) -> str:
    """Switch the default (SQLite) database's journal mode; returns the old mode."""
    connection = connections["default"]
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        old = str(cursor.fetchone()[0])
        cursor.execute(f"PRAGMA journal_mode={mode}")
        assert str(cursor.fetchone()[0]).lower() == mode.lower()
    return old


@pytest.mark.django_db(transaction=True, available_apps=["iverton_webhooks.contrib.django"])
def test_database_check_warns_when_sqlite_is_not_in_wal_mode(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "DATABASE": "default"}
    assert [m.id for m in database_messages("default")] == []  # the tests run in WAL
    old = sqlite_journal("DELETE")
    try:
        (message,) = database_messages("default")
    finally:
        sqlite_journal(old)
    assert message.id == "iverton_webhooks.W009"
    assert "journal_mode='delete'" in message.msg
    assert "journal_mode=WAL" in (message.hint or "")


def test_handler_timeout_is_a_setting_like_the_lease(settings: Any) -> None:
    from datetime import timedelta

    value = {"SECRET": SECRET, "HANDLER_TIMEOUT": timedelta(minutes=5), "LEASE": 90}
    assert not [m for m in messages(settings, value) if m.id == "iverton_webhooks.W006"]
    processor = get_receiver().processor
    assert processor.handler_timeout_seconds == 300
    assert processor.lease_seconds == 90
    settings.IVERTON_WEBHOOKS = {**BASE, "SECRET": SECRET, "HANDLER_TIMEOUT": "5 minutes"}
    with pytest.raises(ConfigurationError, match="HANDLER_TIMEOUT"):
        get_receiver()
