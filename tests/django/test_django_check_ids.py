"""Django system checks: one id per check (silencing one silences only it), no "run
migrate" warning while ``migrate`` runs, a blank SECRET reported as blank, and the
endpoint-at-risk hint in the words of the user's own settings."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import Client

from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET
from tests.django.dj_helpers import post
from tests.django.test_django_checks import sqlite_journal

ROOT = Path(__file__).resolve().parents[2]
CHECKS = ROOT / "iverton_webhooks" / "contrib" / "django" / "checks.py"


def test_each_warning_id_names_one_check() -> None:
    # E005 is every unusable setting's error; each warning is one check of its own.
    source = CHECKS.read_text()
    warnings = re.findall(r'id="(iverton_webhooks\.W\d+)"', source)
    assert len(warnings) == len(set(warnings)), sorted(warnings)
    assert {"iverton_webhooks.W008", "iverton_webhooks.W009"} <= set(warnings)


@pytest.mark.django_db(transaction=True, available_apps=["iverton_webhooks.contrib.django"])
def test_silencing_the_legacy_module_warning_keeps_the_sqlite_wal_warning(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**settings.IVERTON_WEBHOOKS, "DATABASE": "default"}
    settings.SILENCED_SYSTEM_CHECKS = ["iverton_webhooks.W008"]
    old = sqlite_journal("DELETE")
    try:
        found = list(run_checks(tags=["database"], databases=["default"]))
    finally:
        sqlite_journal(old)
    assert [m.id for m in found] == ["iverton_webhooks.W009"]
    assert "WAL" in found[0].msg


def test_a_blank_secret_is_reported_as_blank_not_missing(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {"SECRET": "", "RUNNER": "inline"}
    (message,) = run_checks(tags=["iverton_webhooks"])
    assert message.id == "iverton_webhooks.E001"
    assert "blank" in message.msg
    assert "has no SECRET" not in message.msg
    assert "environment variable" in message.msg


def test_a_missing_secret_is_still_reported_as_missing(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {"RUNNER": "inline"}
    (message,) = run_checks(tags=["iverton_webhooks"])
    assert message.id == "iverton_webhooks.E001"
    assert "has no SECRET" in message.msg
    assert "blank" not in message.msg


@pytest.mark.django_db(transaction=True)
def test_the_endpoint_at_risk_hint_names_the_django_setting(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="iverton_webhooks")
    client = Client()
    body = sample_body("deal.won", id="evt_hint")
    for _ in range(3):
        assert post(client, body, secret="whsec_rotated_on_the_sender_side").status_code == 401
    risk = [r.getMessage() for r in caplog.records if "non-2xx" in r.getMessage()]
    assert len(risk) == 1, caplog.text
    assert 'IVERTON_WEBHOOKS["SECRETS"] = [new, old]' in risk[0]
    assert "IVERTON_WEBHOOK_SECRETS" in risk[0]  # Flask's key, for a Flask reader
    assert post(client, body).status_code == 200  # resets the count for later tests


SETTINGS = """
SECRET_KEY = "django-insecure-tests-only"
USE_TZ = True
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
INSTALLED_APPS = ["django.contrib.contenttypes", "iverton_webhooks.contrib.django"]
IVERTON_WEBHOOKS = {{"SECRET": {secret!r}, "RUNNER": "inline"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
"""


def django_admin(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
        "DJANGO_SETTINGS_MODULE": "fresh_settings",
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_migrate_does_not_warn_to_run_migrate_but_check_does(tmp_path: Path) -> None:
    db = tmp_path / "fresh.sqlite3"
    (tmp_path / "fresh_settings.py").write_text(
        textwrap.dedent(SETTINGS.format(db=str(db), secret=SECRET))
    )
    before = django_admin(tmp_path, "check", "--database", "default")
    assert before.returncode == 0, before.stderr
    assert "iverton_webhooks.W007" in before.stderr + before.stdout  # the check still works

    migrated = django_admin(tmp_path, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert "W007" not in migrated.stderr + migrated.stdout
    assert "Applying iverton_webhooks" in migrated.stdout

    after = django_admin(tmp_path, "check", "--database", "default")
    assert "W007" not in after.stderr + after.stdout
