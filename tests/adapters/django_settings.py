"""Django settings for the adapter contract suite's real server (constants only)."""

from __future__ import annotations

import os

from tests.adapters.apps import MAX_AGE, SECRET

SECRET_KEY = "django-insecure-adapter-contract-tests"
DEBUG = os.environ.get("IVERTON_TEST_DEBUG") == "1"
ALLOWED_HOSTS = ["*"]
USE_TZ = True
INSTALLED_APPS = ["django.contrib.contenttypes", "iverton_webhooks.contrib.django"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",  # APPEND_SLASH is on (the default)
    "django.middleware.csrf.CsrfViewMiddleware",
]
ROOT_URLCONF = "tests.adapters.django_urls"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("IVERTON_TEST_DB", ":memory:"),
        "OPTIONS": {
            "timeout": 20,
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        },
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
IVERTON_WEBHOOKS = {
    "SECRET": SECRET,
    "ROUTER": "tests.adapters.apps.router",
    "MAX_AGE": int(MAX_AGE.total_seconds()),
    "RUNNER": "thread",
}
