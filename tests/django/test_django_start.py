"""Processing starts in a serving Django process once the app registry is ready: no query
runs while Django is still setting up (its "database access during app initialization"
warning), and recovery at start still needs no request."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECRET = "whsec_start_tests_0123456789abcdef"

SETTINGS = """
SECRET_KEY = "django-insecure-tests-only"
USE_TZ = True
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {db!r}}}}}
# Ours first: every other app's ready() still runs after it.
INSTALLED_APPS = [
    "iverton_webhooks.contrib.django",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
]
IVERTON_WEBHOOKS = {{"SECRET": {secret!r}, "RUNNER": "thread"}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "start_urls"
"""

URLS = """
from django.urls import include, path

urlpatterns = [path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls"))]
"""

# Left pending by an earlier run: recorded, never handed to a runner.
SEED = """
import django
django.setup()
from iverton_webhooks.contrib.django.endpoint import get_receiver
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.samples import sample_body
body = sample_body("deal.won", id="evt_at_start")
envelope = parse_envelope(body)
assert get_receiver().store.record(envelope.id, envelope.type, envelope.created_at, body)
"""

SERVE = """
import time, warnings
warnings.simplefilter("always")
import django
django.setup()
from iverton_webhooks.contrib.django.models import WebhookEvent
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    status = WebhookEvent.objects.get(event_id="evt_at_start").status
    if status not in ("pending", "processing"):
        break
    time.sleep(0.05)
print("STATUS", status)
"""


def run(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)]),
            "DJANGO_SETTINGS_MODULE": "start_settings",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow
def test_processing_starts_after_the_registry_is_ready_and_recovers(tmp_path: Path) -> None:
    db = tmp_path / "start.sqlite3"
    (tmp_path / "start_settings.py").write_text(
        textwrap.dedent(SETTINGS.format(db=str(db), secret=SECRET))
    )
    (tmp_path / "start_urls.py").write_text(URLS)
    migrate = "import django; django.setup(); from django.core.management import call_command; "
    migrate += "call_command('migrate', verbosity=0)"
    assert run(tmp_path, migrate, IVERTON_WEBHOOKS_PROCESSING="off").returncode == 0
    seeded = run(tmp_path, SEED, IVERTON_WEBHOOKS_PROCESSING="off")
    assert seeded.returncode == 0, seeded.stderr
    served = run(tmp_path, SERVE, IVERTON_WEBHOOKS_PROCESSING="on")
    assert served.returncode == 0, served.stderr
    # Recovered with no request (no handler is registered: it ends unhandled, not pending).
    assert "STATUS unhandled" in served.stdout, served.stdout + served.stderr
    assert "during app initialization" not in served.stderr


@pytest.mark.slow
def test_a_missing_migrate_is_one_line_with_the_fix_not_a_traceback_per_poll(
    tmp_path: Path,
) -> None:
    db = tmp_path / "unmigrated.sqlite3"
    (tmp_path / "start_settings.py").write_text(
        textwrap.dedent(SETTINGS.format(db=str(db), secret=SECRET))
    )
    (tmp_path / "start_urls.py").write_text(URLS)
    # A serving process on a database nobody migrated, for a few seconds.
    serve = textwrap.dedent(
        """
        import logging, time
        logging.basicConfig(level=logging.WARNING)
        import django
        django.setup()
        time.sleep(3)
        """
    )
    served = run(tmp_path, serve, IVERTON_WEBHOOKS_PROCESSING="on")
    assert served.returncode == 0, served.stderr
    said = [line for line in served.stderr.splitlines() if "recovery poll failed" in line]
    assert len(said) == 1, served.stderr
    assert "Traceback" not in served.stderr
