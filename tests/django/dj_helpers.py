"""Settings and helpers shared by the Django tests (imported, unlike conftest)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.conftest import SECRET, _reachable, service_url, signed_headers

#: filled by conftest: whether AppConfig.ready() imported testapp/webhooks.py
AUTODISCOVERED: dict[str, bool] = {}
SECOND_SECRET = "whsec_second_endpoint_0123456789"
URL = "/webhooks/iverton/"
RUN_ID = secrets.token_hex(4)


def _postgres() -> dict[str, Any] | None:
    """The PostgreSQL alias, with a test database of this run's own name; None when no
    server answers (its tests are then skipped, or failed under IVERTON_REQUIRE_SERVICES)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return None
    if not _reachable("postgres") and os.environ.get("IVERTON_REQUIRE_SERVICES") != "1":
        return None
    parts = urlsplit(service_url("postgres"))
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": parts.path.lstrip("/") or "postgres",
        "USER": parts.username or "postgres",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
        "TEST": {"NAME": f"iverton_test_{RUN_ID}"},
    }


POSTGRES = _postgres()
#: the aliases a test touching every database must declare
ALIASES = ["default", "postgres"] if POSTGRES else ["default"]


def db_mark(alias: str) -> Any:
    """A transactional test on ``alias`` (when configured) that flushes only the inbox."""
    import pytest

    return pytest.mark.django_db(
        transaction=True,
        databases=[alias] if alias in ALIASES else ["default"],
        available_apps=["iverton_webhooks.contrib.django"],
    )


def sqlite_wal(sender: Any, connection: Any, **kwargs: Any) -> None:
    """``connection_created`` receiver: SQLite in WAL mode, as a production site with
    threads should run it (Django 4.2 has no init_command option for this)."""
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")


def drop_test_database() -> None:
    """Drop this run's PostgreSQL test database even if a thread left a session open."""
    if not POSTGRES:
        return
    import psycopg

    try:
        with psycopg.connect(
            dbname="postgres",
            user=POSTGRES["USER"],
            password=POSTGRES["PASSWORD"],
            host=POSTGRES["HOST"],
            port=POSTGRES["PORT"],
            autocommit=True,
            connect_timeout=5,
        ) as conn:
            name = POSTGRES["TEST"]["NAME"]
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.OperationalError:
        pass


def django_settings(sqlite_dir: str) -> dict[str, Any]:
    """Settings for the tests; SQLite files go in ``sqlite_dir`` (made and removed by
    conftest, not at import: pytest's doctest collection imports this module again)."""
    databases: dict[str, Any] = {
        # A file, not :memory:, so threads and the live server lock it as in production.
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.path.join(sqlite_dir, "main.sqlite3"),
            "OPTIONS": {"timeout": 10},
            "TEST": {"NAME": os.path.join(sqlite_dir, "test.sqlite3")},
        }
    }
    if POSTGRES:
        databases["postgres"] = POSTGRES
    return {
        "SECRET_KEY": "django-insecure-tests-only",
        "DEBUG": False,
        "ALLOWED_HOSTS": ["*"],
        "USE_TZ": True,
        "DATABASES": databases,
        "DEFAULT_AUTO_FIELD": "django.db.models.BigAutoField",
        "INSTALLED_APPS": [
            "django.contrib.admin",
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
            "django.contrib.messages",
            "django.contrib.staticfiles",
            "iverton_webhooks.contrib.django",
            "tests.django.testapp",
        ],
        "MIDDLEWARE": [
            "django.middleware.security.SecurityMiddleware",
            "django.contrib.sessions.middleware.SessionMiddleware",
            "django.middleware.common.CommonMiddleware",
            "django.middleware.csrf.CsrfViewMiddleware",
            "django.contrib.auth.middleware.AuthenticationMiddleware",
            "django.contrib.messages.middleware.MessageMiddleware",
        ],
        "ROOT_URLCONF": "tests.django.urls",
        "STATIC_URL": "/static/",
        "TEMPLATES": [
            {
                "BACKEND": "django.template.backends.django.DjangoTemplates",
                "APP_DIRS": True,
                "OPTIONS": {
                    "context_processors": [
                        "django.template.context_processors.request",
                        "django.contrib.auth.context_processors.auth",
                        "django.contrib.messages.context_processors.messages",
                    ]
                },
            }
        ],
        "PASSWORD_HASHERS": ["django.contrib.auth.hashers.MD5PasswordHasher"],
        "IVERTON_WEBHOOKS": {
            "SECRET": SECRET,
            "RUNNER": "inline",
            "ROUTER": "tests.django.testapp.webhooks.router",
        },
    }


def post(client: Any, body: bytes, secret: str = SECRET, url: str = URL, **extra: Any) -> Any:
    """POST ``body`` signed with ``secret`` through the Django test client."""
    signature = signed_headers(body, secret)["X-Iverton-Signature"]
    return client.post(
        url,
        body,
        content_type="application/json",
        headers={"X-Iverton-Signature": signature},
        **extra,
    )


class InboxOn:
    """A database router sending the inbox app to one alias (the admin with it)."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def db_for_read(self, model: Any, **hints: Any) -> str | None:
        return self.alias if model._meta.app_label == "iverton_webhooks" else None

    db_for_write = db_for_read


#: The databases a test of the inbox runs on, as pytest params.
ALIAS_PARAMS = [
    pytest.param("default", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]


@contextmanager
def inbox_on(alias: str, settings: Any, iverton: dict[str, Any]) -> Iterator[str]:
    """The inbox (and its admin) on database ``alias`` with ``IVERTON_WEBHOOKS`` set to
    ``iverton`` plus that alias; skips when no PostgreSQL is configured for this run."""
    from django.test import override_settings

    if alias not in ALIASES:
        pytest.skip("no PostgreSQL configured for this run")
    settings.IVERTON_WEBHOOKS = {**iverton, "DATABASE": alias}
    with override_settings(DATABASE_ROUTERS=[InboxOn(alias)]):
        yield alias
