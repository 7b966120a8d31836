"""Which module of each installed app holds its webhook handlers, imported at start-up.

Default: ``<app>/iverton_handlers.py``, a name no other library uses. The older name,
``<app>/webhooks.py``, is shared with other libraries (django-anymail has
``anymail.webhooks``, and importing it is not free): such a module is imported only when
its source mentions ``iverton_webhooks`` (read as text, not imported), and the system
check ``iverton_webhooks.W008`` asks for it to be renamed.

``IVERTON_WEBHOOKS["AUTODISCOVER"]`` overrides this: a list of module names imported in
every installed app (``["iverton_handlers", "webhooks"]`` is the old behaviour, plus the
new name), or ``False``/``[]`` for none (handlers imported by your own code).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from importlib import import_module
from typing import Any

from django.apps import AppConfig
from django.utils.module_loading import module_has_submodule

from ..._errors import ConfigurationError
from . import conf

__all__ = ["DEFAULT_MODULE", "LEGACY_MODULE", "discover", "legacy_modules", "module_names"]

DEFAULT_MODULE = "iverton_handlers"
LEGACY_MODULE = "webhooks"
#: How much of a legacy module is read to look for the library's name.
_SNIFF_BYTES = 200_000


def module_names(opts: dict[str, Any]) -> list[str] | None:
    """The ``AUTODISCOVER`` setting as module names; None when unset (the default rule)."""
    value = opts.get("AUTODISCOVER")
    if value is None or value is True:
        return None
    if value is False:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)) or not all(
        isinstance(name, str) and name.isidentifier() for name in value
    ):
        raise ConfigurationError(
            f"{conf.SETTING}['AUTODISCOVER'] must be a list of module names (e.g. "
            f'["{DEFAULT_MODULE}"]) or False, not {value!r}'
        )
    return list(value)


def discover(app_configs: Iterable[AppConfig], names: list[str] | None) -> list[str]:
    """Import each app's handler modules; returns the dotted names imported."""
    imported: list[str] = []
    configs = list(app_configs)
    for app in configs:
        for name in [DEFAULT_MODULE] if names is None else names:
            if app.module is not None and module_has_submodule(app.module, name):
                import_module(f"{app.name}.{name}")  # its errors are the user's to see
                imported.append(f"{app.name}.{name}")
    if names is None:
        for dotted in legacy_modules(configs):
            import_module(dotted)
            imported.append(dotted)
    return imported


def legacy_modules(app_configs: Iterable[AppConfig]) -> list[str]:
    """The apps' ``webhooks`` modules that use this library, found without importing
    any ``webhooks`` module (another library's stays unimported)."""
    found: list[str] = []
    for app in app_configs:
        if app.module is None or not module_has_submodule(app.module, LEGACY_MODULE):
            continue
        dotted = f"{app.name}.{LEGACY_MODULE}"
        if _mentions_us(dotted):
            found.append(dotted)
    return found


def _mentions_us(dotted: str) -> bool:
    try:
        spec = importlib.util.find_spec(dotted)
    except (ImportError, ValueError):
        return False
    origin = None if spec is None else spec.origin
    if not origin or not origin.endswith(".py"):
        return False  # no source to read (compiled only): not ours to guess
    try:
        with open(origin, "rb") as source:
            return b"iverton_webhooks" in source.read(_SNIFF_BYTES)
    except OSError:
        return False
