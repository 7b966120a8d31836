"""Settings of the ASGI test project: a SQLite file named by ``IVERTON_ASGI_DB``."""

from __future__ import annotations

import os

SECRET_KEY = "django-insecure-asgi-test-only"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["IVERTON_ASGI_DB"],
        "OPTIONS": {"timeout": 10},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = ["iverton_webhooks.contrib.django", "tests.django.asgi_site"]
MIDDLEWARE = [
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "tests.django.asgi_site.handlers.view_kind",
]
ROOT_URLCONF = "tests.django.asgi_site.urls"
IVERTON_WEBHOOKS = {
    "SECRET": os.environ["IVERTON_ASGI_SECRET"],
    "ROUTER": "tests.django.asgi_site.handlers.router",
}
