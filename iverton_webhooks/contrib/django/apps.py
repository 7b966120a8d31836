"""App config: imports every installed app's handler module (``iverton_handlers.py``; see
`discovery`), registers the checks and, in a process
that serves requests (`iverton_webhooks._placement` decides), starts processing at once:
recovery needs no request."""

from __future__ import annotations

import threading

from django.apps import AppConfig
from django.core.signals import setting_changed

from ..._placement import when_serving


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
            project,  # noqa: F401 - lets `iverton-webhooks --app` find this project's receivers
        )
        from .endpoint import reset_endpoints

        setting_changed.connect(reset_endpoints, dispatch_uid="iverton_webhooks_reset")
        # Like admin.autodiscover(): `@on(...)` handlers in <app>/iverton_handlers.py
        # register now. Not every app's webhooks.py: other libraries have one too.
        discovery.discover(apps.get_app_configs(), discovery.module_names(conf.options()))
        # The core's policy: at once in a serving process, in each forked worker under a
        # pre-fork master (gunicorn --preload), never in other commands or test sessions.
        when_serving(_start_once_apps_are_ready, what="webhook endpoints")


def _start_once_apps_are_ready() -> None:
    # ready() runs while Django is still setting up its app registry: a query made before
    # that ends (the runner's first recovery poll) is what Django warns about ("database
    # access during app initialization"). Start as soon as the registry is ready.
    from django.apps import apps

    from .endpoint import start_endpoints

    if apps.ready:
        start_endpoints()
        return

    def wait_then_start() -> None:
        if apps.ready_event.wait(60):
            start_endpoints()

    threading.Thread(target=wait_then_start, name="iverton-start", daemon=True).start()
