"""A minimal project receiving Iverton webhooks. Environment:

- ``IVERTON_WEBHOOK_SECRET``: the endpoint's signing secret (default for local tries only)
- ``EXAMPLE_DB``: the SQLite file (default ``db.sqlite3`` here)
- ``DJANGO_DEBUG=1``: turn Django's debug mode on (off by default: debug pages show
  settings and tracebacks to anyone who can reach the server)
"""

from __future__ import annotations

import os
from pathlib import Path

import django

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "django-insecure-example-only")
DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "iverton_webhooks.contrib.django",  # the inbox model, admin, commands, checks
    "deals",  # its iverton_handlers.py is imported at start-up
]

IVERTON_WEBHOOKS = {
    "SECRET": os.environ.get("IVERTON_WEBHOOK_SECRET", "whsec_local_example"),
    # "SECRETS": [new, old] while rotating; "RUNNER": "thread" (default) or "inline";
    # "MAX_AGE": timedelta(days=3); "RETENTION": timedelta(days=7)
}

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "project.urls"
WSGI_APPLICATION = "project.wsgi.application"

_sqlite_options: dict[str, object] = {"timeout": 10}
if django.VERSION >= (5, 1):
    # WAL lets readers and the writer work at once; IMMEDIATE avoids lock upgrades.
    _sqlite_options |= {"init_command": "PRAGMA journal_mode=WAL;", "transaction_mode": "IMMEDIATE"}

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("EXAMPLE_DB", str(BASE_DIR / "db.sqlite3")),
        "OPTIONS": _sqlite_options,
    }
}

TEMPLATES = [
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
]

USE_TZ = True
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "iverton_webhooks": {"handlers": ["console"], "level": "INFO"},
        "deals": {"handlers": ["console"], "level": "INFO"},
    },
}
