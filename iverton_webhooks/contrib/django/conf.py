"""Reading the ``IVERTON_WEBHOOKS`` setting into :class:`~iverton_webhooks.Receiver` options.

Keys hold ``SECRET`` in their names (``SECRET``, ``SECRETS``) so that Django's error
reports mask them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from ...errors import ConfigurationError
from ...router import Router, default_router
from ...runners import InlineRunner, Runner, ThreadRunner

SETTING = "IVERTON_WEBHOOKS"

#: Every key the setting understands (a key outside this set is reported by a check).
KNOWN_KEYS = frozenset(
    {
        "SECRET",
        "SECRETS",
        "RUNNER",
        "ROUTER",
        "MAX_AGE",
        "RETENTION",
        "MAX_BODY_BYTES",
        "LEASE",
        "RETRY",
        "DATABASE",
    }
)


def options() -> dict[str, Any]:
    """The raw setting as a dict (empty when unset)."""
    value = getattr(settings, SETTING, None)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigurationError(f"settings.{SETTING} must be a dict, not {type(value).__name__}")
    return dict(value)


def duration(value: object, key: str) -> timedelta | None:
    """A ``timedelta``, or a number of seconds, or None."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise ConfigurationError(
        f"{SETTING}[{key!r}] must be a timedelta or a number of seconds, not {value!r}"
    )


def secrets(opts: dict[str, Any]) -> list[str]:
    """``SECRET`` then ``SECRETS``, blanks dropped."""
    found = [opts.get("SECRET"), *(opts.get("SECRETS") or [])]
    return [s for s in found if isinstance(s, str) and s]


def database(opts: dict[str, Any]) -> str:
    return str(opts.get("DATABASE") or "default")


def make_runner(spec: object) -> Runner:
    """``"thread"`` (default), ``"inline"``, a dotted path to a Runner class or factory,
    a Runner instance, or a zero-argument callable returning one."""
    if spec is None or spec == "thread":
        return ThreadRunner()
    if spec == "inline":
        return InlineRunner()
    if isinstance(spec, str):
        try:
            spec = import_string(spec)
        except ImportError as exc:
            raise ConfigurationError(
                f"{SETTING}['RUNNER'] = {spec!r}: use 'thread', 'inline' or a dotted path "
                f"to a Runner ({exc})"
            ) from None
    # A class passes the protocol's isinstance check too (it has the methods): call it.
    if isinstance(spec, type) or (callable(spec) and not isinstance(spec, Runner)):
        spec = spec()
    if isinstance(spec, Runner):
        return spec
    raise ConfigurationError(f"{SETTING}['RUNNER'] = {spec!r} is not a Runner")


def router(spec: object) -> Router:
    """The handlers' router: ``default_router`` unless ``ROUTER`` names another."""
    if spec is None:
        return default_router
    if isinstance(spec, str):
        spec = import_string(spec)
    if isinstance(spec, Router):
        return spec
    raise ConfigurationError(f"{SETTING}['ROUTER'] = {spec!r} is not a Router")
