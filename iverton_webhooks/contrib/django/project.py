"""A Django project's receivers for ``iverton-webhooks ... --app``: from its settings
module (``--app mysite.settings``) or its WSGI/ASGI module (``--app mysite.wsgi``).

Imported by `iverton_webhooks._finders` when a module defines ``INSTALLED_APPS``,
and by the app config, so either way the finder below is registered.
"""

from __future__ import annotations

import os
from types import ModuleType

from ..._errors import ConfigurationError
from ..._finders import register_finder
from ..._receiver import Receiver

SETTINGS_ENV = "DJANGO_SETTINGS_MODULE"
APP = "iverton_webhooks.contrib.django"


def find(target: object) -> list[Receiver] | None:
    """The project's receivers when ``target`` is its settings module or a Django
    WSGI/ASGI handler; ``None`` for anything else."""
    if isinstance(target, ModuleType) and hasattr(target, "INSTALLED_APPS"):
        return _from_settings(target)
    if _is_django_handler(target):
        from .endpoint import project_receivers

        return project_receivers()
    return None


def _from_settings(settings: ModuleType) -> list[Receiver]:
    if APP not in list(getattr(settings, "INSTALLED_APPS", ())):
        raise ConfigurationError(
            f"{settings.__name__} does not install {APP!r}: add it to INSTALLED_APPS"
        )
    chosen = os.environ.setdefault(SETTINGS_ENV, settings.__name__)
    if chosen != settings.__name__:
        raise ConfigurationError(
            f"{SETTINGS_ENV}={chosen} but --app names {settings.__name__}: use one of them"
        )
    import django

    django.setup()
    from .endpoint import project_receivers

    return project_receivers()


def _is_django_handler(target: object) -> bool:
    try:
        from django.core.handlers.asgi import ASGIHandler
        from django.core.handlers.wsgi import WSGIHandler
    except ImportError:  # pragma: no cover - Django is what imported this module
        return False
    return isinstance(target, (WSGIHandler, ASGIHandler))


register_finder(find)
