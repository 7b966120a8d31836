"""App config: imports every installed app's handler module (``iverton_handlers.py``; see
:mod:`~iverton_webhooks.contrib.django.discovery`), registers the checks and, in a process
that serves requests, starts processing at once (recovery needs no request)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from django.apps import AppConfig
from django.core.signals import setting_changed

#: manage.py commands that serve requests (in the autoreloader's child, or --noreload).
SERVING_COMMANDS = frozenset({"runserver", "runserver_plus"})


def serving_process(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether this process serves requests, so processing should start at ``ready()``.

    Under gunicorn, uWSGI, daphne, uvicorn (anything but ``manage.py``/``django-admin``):
    always, in every worker. Under ``manage.py``: only ``runserver`` in the autoreloader's
    child (``RUN_MAIN=true``) or with ``--noreload``; never ``migrate``, ``check``, ``shell``
    or the autoreloader's parent, which serves nothing.
    """
    program = os.path.basename(argv[0]) if argv else ""
    managed = program in ("manage.py", "django-admin", "django-admin.py") or (
        program == "__main__.py" and os.path.basename(os.path.dirname(argv[0])) == "django"
    )
    if not managed:
        return True
    command = argv[1] if len(argv) > 1 else ""
    if command not in SERVING_COMMANDS:
        return False
    return environ.get("RUN_MAIN") == "true" or "--noreload" in argv


class IvertonWebhooksConfig(AppConfig):
    name = "iverton_webhooks.contrib.django"
    label = "iverton_webhooks"
    verbose_name = "Iverton webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.apps import apps

        from . import (
            checks,  # noqa: F401 - registers the system checks
            conf,
            discovery,
        )
        from .endpoint import reset_endpoints, start_endpoints

        setting_changed.connect(reset_endpoints, dispatch_uid="iverton_webhooks_reset")
        # Like admin.autodiscover(): `@on(...)` handlers in <app>/iverton_handlers.py
        # register now. Not every app's webhooks.py: other libraries have one too.
        discovery.discover(apps.get_app_configs(), discovery.module_names(conf.options()))
        if serving_process(sys.argv, os.environ):
            # Every worker recovers what a previous run left, with no request; a thread
            # runner started before a fork (gunicorn --preload) starts again in each child.
            start_endpoints()
