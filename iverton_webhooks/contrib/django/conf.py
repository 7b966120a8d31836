"""Reading the ``IVERTON_WEBHOOKS`` setting: the keys it shares with every surface become a
`Settings` (checked there, once); ``ROUTER``, ``DATABASE`` and ``AUTODISCOVER`` are
Django's own.

Keys hold ``SECRET`` in their names (``SECRET``, ``SECRETS``) so that Django's error
reports mask them.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from ..._errors import ConfigurationError
from ..._router import Router, default_router
from ..._settings import SETTING_KEYS, Settings, refuse_asyncio_runner

SETTING = "IVERTON_WEBHOOKS"

#: Every key the setting understands (a key outside this set is reported by a check).
#: The store is the project's database (``DATABASE``), so ``STORE`` is not one of them.
KNOWN_KEYS = (SETTING_KEYS - {"STORE"}) | {"ROUTER", "DATABASE", "AUTODISCOVER"}


def options() -> dict[str, Any]:
    """The raw setting as a dict (empty when unset)."""
    value = getattr(settings, SETTING, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"settings.{SETTING} must be a dict, not {type(value).__name__}")
    return dict(value)


def read(opts: dict[str, Any]) -> Settings:
    """The shared keys of ``opts`` as checked `Settings` (`SettingError` names the key)."""
    shared = {key: value for key, value in opts.items() if key != "STORE"}
    refuse_asyncio_runner(shared.get("RUNNER"), f"settings.{SETTING}['RUNNER']")
    return Settings.from_mapping(shared, where=f"settings.{SETTING}")


def database(opts: dict[str, Any]) -> str:
    return str(opts.get("DATABASE") or "default")


def router(spec: object) -> Router:
    """The handlers' router: ``default_router`` unless ``ROUTER`` names another."""
    if spec is None:
        return default_router
    if isinstance(spec, str):
        spec = import_string(spec)
    if isinstance(spec, Router):
        return spec
    raise ConfigurationError(f"{SETTING}['ROUTER'] = {spec!r} is not a Router")
