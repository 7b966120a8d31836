"""App config: finds every installed app's ``webhooks`` module and registers the checks."""

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.utils.module_loading import autodiscover_modules


class IvertonWebhooksConfig(AppConfig):
    name = "iverton_webhooks.contrib.django"
    label = "iverton_webhooks"
    verbose_name = "Iverton webhooks"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks
        from .endpoint import reset_endpoints

        setting_changed.connect(reset_endpoints, dispatch_uid="iverton_webhooks_reset")
        # Like admin.autodiscover(): `@on(...)` handlers in <app>/webhooks.py register now.
        autodiscover_modules("webhooks")
