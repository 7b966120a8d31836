"""Processing runs where it should, and nowhere else (issue 23, items 1 and 2), with real
command lines as subprocesses:

- read-only commands (``events``, ``stats``) of the three CLIs claim nothing: an inbox
  holding a due event keeps it ``pending`` with ``attempts == 0`` and no lease;
- ``flask iverton worker --once`` and ``iverton-webhooks worker --once --app app`` drain the
  Flask example's own inbox, each handler once;
- a pytest session that imports a Flask app, a Starlette app and a Django project never
  touches their development inboxes.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import Status
from iverton_webhooks.inbox import open_store
from iverton_webhooks.inbox.sqlite import SQLiteStore
from iverton_webhooks.samples import sample_body
from tests.adapters.servers import DJANGO_TABLE, django_manage, environment, prepare

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
EXAMPLE = ROOT / "example_projects" / "flask_app"
SECRET = "whsec_placement_0123456789"


def run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    base["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(cwd)])
    base.pop("IVERTON_WEBHOOKS_PROCESSING", None)
    return subprocess.run(
        args,
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def seed(path: Path, *ids: str, event_type: str = "deal.won") -> None:
    """Due events, as a previous run that acknowledged them and died left them; each with
    its own resource (a deal id, an address), so each handler run leaves its own row."""
    store = open_store(f"sqlite:///{path}")
    created = datetime(2099, 1, 1, tzinfo=timezone.utc)
    for event_id in ids:
        data = {"id": f"res_{event_id}", "to": f"{event_id}@example.com"}
        body = sample_body(event_type, id=event_id, data=data)
        store.record(event_id, event_type, created, body)
    store.close()


def untouched(path: Path, event_id: str) -> tuple[str, int, object]:
    found = SQLiteStore(path).get(event_id)
    assert found is not None
    return (found.status.value, found.attempts, found.lease_until)


FLASK_APP = f"""
from flask import Flask
from iverton_webhooks import Router
from iverton_webhooks.contrib.flask import IvertonWebhooks

router = Router()

@router.on("deal.won")
def won(event):
    with open("ran.txt", "a") as out:
        out.write(event.id + "\\n")

app = Flask(__name__)
app.config.update(
    IVERTON_WEBHOOK_SECRET={SECRET!r}, IVERTON_WEBHOOK_STORE="sqlite:///{{}}/inbox.db"
)
app.config["IVERTON_WEBHOOK_STORE"] = app.config["IVERTON_WEBHOOK_STORE"].format(
    __import__("os").path.dirname(__file__)
)
IvertonWebhooks(app, router=router, lease=__import__("datetime").timedelta(seconds=60))
"""


# Read-only commands claim nothing -------------------------------------------------------


@pytest.mark.slow
def test_read_only_flask_and_core_commands_claim_nothing(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text(FLASK_APP)
    inbox = tmp_path / "inbox.db"
    seed(inbox, "evt_due")
    commands = [
        [str(BIN / "flask"), "--app", "app", "iverton", "stats"],
        [str(BIN / "flask"), "--app", "app", "iverton", "events"],
        [str(BIN / "flask"), "--app", "app", "iverton", "events", "--json"],
        [str(BIN / "iverton-webhooks"), "stats", "--app", "app"],
        [str(BIN / "iverton-webhooks"), "events", "--app", "app"],
        [str(BIN / "iverton-webhooks"), "stats", "--store", f"sqlite:///{inbox}"],
        [str(BIN / "iverton-webhooks"), "events", "--store", f"sqlite:///{inbox}"],
    ]
    for command in commands:
        done = run(command, tmp_path)
        assert done.returncode == 0, (command, done.stderr)
        assert "evt_due" in done.stdout or "pending" in done.stdout, (command, done.stdout)
        assert untouched(inbox, "evt_due") == ("pending", 0, None), command
    assert not (tmp_path / "ran.txt").exists()
    # The listing shows it as it is: nobody claimed it.
    listing = run([str(BIN / "flask"), "--app", "app", "iverton", "events", "--json"], tmp_path)
    listed = [json.loads(line) for line in listing.stdout.splitlines()]
    assert [(e["id"], e["status"], e["attempts"]) for e in listed] == [("evt_due", "pending", 0)]


@pytest.mark.slow
def test_read_only_django_commands_claim_nothing(tmp_path: Path) -> None:
    db = tmp_path / "inbox.sqlite3"
    prepare("django", db)
    from tests.adapters.test_recovery_at_start import seed as seed_django

    ids = seed_django("django", db)
    for command in ("iverton_webhooks_stats", "iverton_webhooks_events"):
        done = django_manage(db, command)
        assert done.returncode == 0, done.stderr[-3000:]
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            f"SELECT status, attempts, lease_until FROM {DJANGO_TABLE} WHERE event_id IN "
            f"({', '.join('?' * len(ids))})",
            ids,
        ).fetchall()
    assert len(rows) == len(ids)
    assert set(rows) == {("pending", 0, None)}


# The worker commands drain the Flask example's own inbox ------------------------------------


def example_copy(tmp_path: Path) -> Path:
    project = tmp_path / "flask_app"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("instance", "__pycache__"))
    (project / "instance").mkdir()
    return project


@pytest.mark.slow
@pytest.mark.parametrize("shell", ["flask iverton", "iverton-webhooks"])
def test_worker_once_drains_the_flask_examples_own_inbox_each_handler_once(
    tmp_path: Path, shell: str
) -> None:
    project = example_copy(tmp_path)
    inbox = project / "instance" / "iverton_webhooks.sqlite3"
    won = [f"evt_won_{n}" for n in range(5)]
    bounced = [f"evt_bounce_{n}" for n in range(3)]
    seed(inbox, *won)
    seed(inbox, *bounced, event_type="email.bounced")
    if shell == "flask iverton":
        command = [str(BIN / "flask"), "--app", "app", "iverton", "worker", "--once"]
    else:
        command = [str(BIN / "iverton-webhooks"), "worker", "--once", "--app", "app"]
    done = run(command, project)
    assert done.returncode == 0, done.stderr
    assert "processed 8 event(s) (done=8)" in done.stdout, done.stdout + done.stderr
    store = SQLiteStore(inbox)
    for event_id in won + bounced:
        event = store.get(event_id)
        assert event is not None
        # Claimed once, by the command itself, finished before it exited.
        assert (event.status, event.attempts, event.lease_until) == (Status.DONE, 1, None)
        assert event.outcomes, event
        assert all(o.ok for o in event.outcomes.values()), event
    # No other inbox was made: the app's is the one in its instance folder.
    assert not (project / "webhooks.sqlite3").exists()
    with sqlite3.connect(project / "instance" / "crm.sqlite3") as crm:
        assert sorted(r[0] for r in crm.execute("SELECT event_id FROM won_deals")) == won
        assert sorted(r[0] for r in crm.execute("SELECT event_id FROM suppressed")) == bounced


# A test session never touches a development inbox ------------------------------------------


DJANGO_SETTINGS = """
INSTALLED_APPS = ["django.contrib.contenttypes", "iverton_webhooks.contrib.django"]
SECRET_KEY = "dev-only"
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": %r}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "devurls"
IVERTON_WEBHOOKS = {"SECRET": "whsec_dev_0123456789", "ROUTER": "devhandlers.router",
                    "RUNNER": "thread"}
"""

DJANGO_URLS = """
from django.urls import include, path
urlpatterns = [path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls"))]
"""

HANDLERS = """
from iverton_webhooks import Router
router = Router()

@router.on("*")
def ran(event):
    with open(%r, "a") as out:
        out.write(event.id + "\\n")
"""

STARLETTE_APP = """
from starlette.applications import Starlette
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
from devhandlers import router

app = Starlette()
app.add_middleware(IvertonWebhookMiddleware, secret="whsec_dev_0123456789",
                   store="sqlite:///%s", router=router)
"""

FLASK_DEV_APP = """
from flask import Flask
from iverton_webhooks.contrib.flask import IvertonWebhooks
from devhandlers import router

app = Flask(__name__)
app.config.update(IVERTON_WEBHOOK_SECRET="whsec_dev_0123456789",
                  IVERTON_WEBHOOK_STORE="sqlite:///%s")
IvertonWebhooks(app, router=router)
"""

TEST_FILE = """
import time

import devflask
import devstarlette
from django.apps import apps


def test_imports_the_apps():
    assert apps.ready
    assert devflask.app and devstarlette.app
    time.sleep(2.0)  # room for any runner started at import to claim
"""


@pytest.mark.slow
def test_a_pytest_session_importing_flask_starlette_and_django_apps_touches_no_dev_inbox(
    tmp_path: Path,
) -> None:
    project = tmp_path / "dev"
    project.mkdir()
    ran = project / "ran.txt"
    flask_inbox, starlette_inbox = project / "flask.db", project / "starlette.db"
    django_db = project / "django.sqlite3"
    (project / "devhandlers.py").write_text(HANDLERS % str(ran))
    (project / "devsettings.py").write_text(DJANGO_SETTINGS % str(django_db))
    (project / "devurls.py").write_text(DJANGO_URLS)
    (project / "devflask.py").write_text(FLASK_DEV_APP % flask_inbox)
    (project / "devstarlette.py").write_text(STARLETTE_APP % starlette_inbox)
    (project / "test_dev.py").write_text(TEST_FILE)
    seed(flask_inbox, "evt_dev_flask")
    seed(starlette_inbox, "evt_dev_starlette")
    env = {"DJANGO_SETTINGS_MODULE": "devsettings"}
    migrated = run([sys.executable, "-m", "django", "migrate", "--noinput"], project, env)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    seeding = (
        "from datetime import datetime, timezone\n"
        "from iverton_webhooks.contrib.django.store import DjangoStore\n"
        "from iverton_webhooks.samples import sample_body\n"
        "body = sample_body('deal.won', id='evt_dev_django')\n"
        "created = datetime(2099, 1, 1, tzinfo=timezone.utc)\n"
        "DjangoStore('default').record('evt_dev_django', 'deal.won', created, body)\n"
    )
    seeded = run([sys.executable, "-m", "django", "shell", "-c", seeding], project, env)
    assert seeded.returncode == 0, seeded.stderr[-3000:]

    session = run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_dev.py"],
        project,
        {**env, "PYTHONPATH": os.pathsep.join([str(project), str(ROOT)])},
    )
    assert session.returncode == 0, session.stdout[-3000:] + session.stderr[-3000:]
    assert "1 passed" in session.stdout

    assert not ran.exists(), ran.read_text()
    assert untouched(flask_inbox, "evt_dev_flask") == ("pending", 0, None)
    assert untouched(starlette_inbox, "evt_dev_starlette") == ("pending", 0, None)
    with sqlite3.connect(django_db) as conn:
        row = conn.execute(
            f"SELECT status, attempts, lease_until FROM {DJANGO_TABLE} WHERE event_id = ?",
            ("evt_dev_django",),
        ).fetchone()
    assert row == ("pending", 0, None)


def test_servers_helpers_are_importable() -> None:
    # The environment helper the Django tests above share with the recovery suite.
    assert "IVERTON_TEST_DB" in environment(Path("x.db"))
