"""Django configured in-process for pytest-django. Skipped when Django is not installed.

Configuring happens when pytest loads this file, so the rest of the suite is collected
and run as before: only this folder's tests touch a database.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator

import pytest

# A submodule, not "django": with tests/ on sys.path this very folder would import as a
# namespace package called django, and importorskip("django") would never skip.
pytest.importorskip("django.conf")
pytest.importorskip("pytest_django")

import django
from django.conf import settings
from django.db.backends.signals import connection_created

from tests.django import dj_helpers

_sqlite_dir: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    if not settings.configured:
        _sqlite_dir.append(tempfile.mkdtemp(prefix="iverton-django-"))
        settings.configure(**dj_helpers.django_settings(_sqlite_dir[0]))
        connection_created.connect(dj_helpers.sqlite_wal)
        before = "tests.django.testapp.webhooks" in sys.modules
        django.setup()
        dj_helpers.AUTODISCOVERED["testapp"] = (
            not before and "tests.django.testapp.webhooks" in sys.modules
        )


def pytest_unconfigure(config: pytest.Config) -> None:
    for path in _sqlite_dir:
        shutil.rmtree(path, ignore_errors=True)
    dj_helpers.drop_test_database()


@pytest.hookimpl(hookwrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    # pytest-django sorts every collected test once Django is configured; keep that order
    # inside this folder only, and the rest of the suite in its own order. Only items still
    # selected after every other hook (-k, -m deselect inside this call) are put back.
    original = list(items)
    yield
    ours = [item for item in items if "tests/django/" in item.nodeid]
    if not ours:
        return
    selected = set(items)
    position = {item: n for n, item in enumerate(original)}
    first = min(position[item] for item in ours)
    others = [item for item in original if item in selected and "tests/django/" not in item.nodeid]
    before = [item for item in others if position[item] < first]
    items[:] = [*before, *ours, *others[len(before) :]]


@pytest.fixture(autouse=True)
def _clean_handlers() -> Iterator[None]:
    from tests.django.testapp import webhooks as handlers

    handlers.calls.clear()
    handlers.broken.clear()
    yield
    handlers.calls.clear()
    handlers.broken.clear()
    from iverton_webhooks.contrib.django.endpoint import reset_endpoints

    reset_endpoints()
