"""docs/testing.md, "Testing your own app": each framework's test file, in a project made
as its quickstart says, passes twice in a row and leaves the development inbox as it was.

The project's files are the quickstart's own blocks; the test file is the block after
``<!-- project test: FRAMEWORK -->`` in docs/testing.md. Before the runs, the project
records one event in its development inbox (as a developer trying it would; a 2xx means
it is stored, whether or not its handler ran before the script ended), so the inbox exists
and holds something the runs must not change. Each run is a fresh
``pytest -p no:cacheprovider`` in a subprocess, with the app's secret (not the plugin's
test secret) in the environment.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
#: The development secret the app reads from its environment; the plugin's built-in
#: test secret would be refused by it.
DEV_SECRET = "whsec_dev_only_5e0b71c94a2d"
TIMEOUT = 120


def blocks(page: Path) -> list[tuple[str, str]]:
    """(the comment line right before, code) for every ``python`` block of a page."""
    return [
        (before.strip(), code)
        for before, code in re.findall(r"([^\n]*)\n```python\n(.*?)```", page.read_text(), re.S)
    ]


def project_test(framework: str) -> str:
    for before, code in blocks(DOCS / "testing.md"):
        if before == f"<!-- project test: {framework} -->":
            return code
    raise AssertionError(f"docs/testing.md has no project test for {framework}")


def quickstart_block(page: str, index: int = 0) -> str:
    return blocks(DOCS / "quickstart" / page)[index][1]


def environment(project: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("IVERTON_", "FLASK_", "DJANGO_", "PYTEST_"))
    }
    path = os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")]))
    env.update(IVERTON_WEBHOOK_SECRET=DEV_SECRET, PYTHONPATH=path, PYTHONUNBUFFERED="1")
    return env


def run(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=project,
        env=environment(project),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def dump(database: Path) -> list[str]:
    """The database's content as SQL, to compare before and after."""
    assert database.exists(), f"no development inbox at {database}"
    connection = sqlite3.connect(database)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


SEED_APP = """
import os
from app import app
from iverton_webhooks.testing import post_delivery, signed_delivery

delivery = signed_delivery("{type}", os.environ["IVERTON_WEBHOOK_SECRET"], id="evt_dev")
{post}
print(f"seeded {{reply.status_code}}")  # one write: a handler thread may print too
"""


def flask_project(project: Path) -> Path:
    (project / "app.py").write_text(quickstart_block("flask.md"))
    seed = SEED_APP.format(
        type="contact.created",
        post='reply = post_delivery(app.test_client(), "/webhooks/iverton", delivery)',
    )
    (project / "seed.py").write_text(seed)
    return project / "instance" / "iverton_webhooks.sqlite3"


STARLETTE_HANDLERS = """

from iverton_webhooks import Event, on


@on("deal.won")
def celebrate(event: Event) -> None:
    print("won", event.data.id)
"""


def starlette_project(project: Path) -> Path:
    (project / "app.py").write_text(quickstart_block("starlette.md") + STARLETTE_HANDLERS)
    post = (
        "from starlette.testclient import TestClient\n"
        "with TestClient(app) as client:\n"
        '    reply = post_delivery(client, "/webhooks/iverton", delivery)'
    )
    (project / "seed.py").write_text(SEED_APP.format(type="deal.won", post=post))
    return project / "webhooks.sqlite3"


DJANGO_SETTINGS_TAIL = """
# The rest of a project's settings (startproject writes them).
from pathlib import Path

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "shop",
] + [app for app in INSTALLED_APPS if app is not ...]
BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "development-only"
DEBUG = True
ALLOWED_HOSTS = ["testserver", "127.0.0.1"]
ROOT_URLCONF = "mysite.urls"
USE_TZ = True
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "db.sqlite3"}}
"""

MANAGE = """
import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
"""

DJANGO_SEED = """
import os
os.environ["DJANGO_SETTINGS_MODULE"] = "mysite.settings"
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from iverton_webhooks.testing import post_delivery, signed_delivery

call_command("migrate", verbosity=0)
delivery = signed_delivery("deal.won", os.environ["IVERTON_WEBHOOK_SECRET"], id="evt_dev")
reply = post_delivery(Client(), "/webhooks/iverton", delivery)
print(f"seeded {reply.status_code}")  # one write: a handler thread may print too
"""


def django_project(project: Path) -> Path:
    files = {
        before.removeprefix("<!-- django: ").removesuffix(" -->"): code
        for before, code in blocks(DOCS / "quickstart" / "django.md")
        if before.startswith("<!-- django: ")
    }
    for package in ("mysite", "shop"):
        (project / package).mkdir()
        (project / package / "__init__.py").write_text("")
    (project / "mysite" / "settings.py").write_text(files["settings.py"] + DJANGO_SETTINGS_TAIL)
    (project / "mysite" / "urls.py").write_text(files["urls.py"])
    (project / "shop" / "iverton_handlers.py").write_text(files["handlers.py"])  # as the page says
    (project / "manage.py").write_text(MANAGE)
    (project / "pytest.ini").write_text("[pytest]\nDJANGO_SETTINGS_MODULE = mysite.settings\n")
    (project / "seed.py").write_text(DJANGO_SEED)
    return project / "db.sqlite3"


PROJECTS: dict[str, tuple[str, Callable[[Path], Path]]] = {
    "flask": ("flask", flask_project),
    "starlette": ("starlette", starlette_project),
    "django": ("pytest_django", django_project),
}


@pytest.mark.slow
@pytest.mark.parametrize("framework", sorted(PROJECTS))
def test_the_docs_test_file_passes_twice_and_leaves_the_dev_inbox_alone(
    framework: str, tmp_path: Path
) -> None:
    needed, make = PROJECTS[framework]
    if importlib.util.find_spec(needed) is None:
        pytest.skip(f"needs {needed}")
    project = tmp_path / "project"
    project.mkdir()
    inbox = make(project)
    (project / "test_webhooks.py").write_text(project_test(framework))

    seeded = run(project, "seed.py")
    assert seeded.returncode == 0, seeded.stdout + seeded.stderr
    assert "seeded 200" in seeded.stdout, seeded.stdout + seeded.stderr
    before = dump(inbox)
    assert any("evt_dev" in line for line in before), "the seed event is not in the inbox"

    for attempt in (1, 2):
        result = run(project, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", "-q")
        said = result.stdout + result.stderr
        assert result.returncode == 0, f"run {attempt}:\n{said}"
        assert re.search(r"\b1 passed\b", said), f"run {attempt}:\n{said}"
        assert DEV_SECRET not in said  # the app's secret is used, never shown
    assert dump(inbox) == before, "the tests wrote into the development inbox"


def test_the_docs_test_files_use_the_fixture_and_the_apps_secret() -> None:
    for framework in PROJECTS:
        code = project_test(framework)
        assert "iverton_isolate(" in code
        assert "webhooks.post(" in code
        assert "whsec_" not in code  # the app's own secret, never one written in the test
    for page in ("flask.md", "starlette.md", "django.md"):
        text = (DOCS / "quickstart" / page).read_text()
        assert "../testing.md#" in text, f"{page} does not link its testing section"
    assert textwrap.dedent(project_test("django")).count("django_db") == 0
