"""Reading the ``IVERTON_WEBHOOKS`` setting into `Receiver` options.

Keys hold ``SECRET`` in their names (``SECRET``, ``SECRETS``) so that Django's error
reports mask them.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from ..._errors import ConfigurationError
from ..._router import Router, default_router
from ..._signature import validate_secrets
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
        "HANDLER_TIMEOUT",
        "RETRY",
        "DATABASE",
        "AUTODISCOVER",
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
    """``SECRET`` then ``SECRETS``, checked: an empty list when neither is set (``""``
    counts as unset, as from an unset environment variable).

    Raises `ConfigurationError` saying what to fix for ``SECRETS`` given as one
    string (it would be read as one secret per character), a blank secret, one with
    leading or trailing whitespace, or an obvious placeholder: with any of them every
    authentic request would be refused with 401.
    """
    found: list[str] = []
    single = opts.get("SECRET")
    if single is not None and single != "":
        found += _checked("SECRET", [single])
    many = opts.get("SECRETS")
    if isinstance(many, (str, bytes)):
        raise ConfigurationError(
            f"settings.{SETTING}['SECRETS'] is one string, not a list: it would be read as "
            'one secret per character. Write "SECRETS": ["whsec_new...", "whsec_old..."] '
            '(newest first), or "SECRET": "whsec_..." for a single secret.'
        )
    if many is not None:
        if not isinstance(many, (list, tuple)):
            raise ConfigurationError(
                f"settings.{SETTING}['SECRETS'] must be a list of strings, not "
                f'{type(many).__name__}: write "SECRETS": ["whsec_new...", "whsec_old..."]'
            )
        found += _checked("SECRETS", list(many)) if many else []
    return found


def _checked(key: str, values: list[Any]) -> list[str]:
    try:
        return validate_secrets(values)
    except ConfigurationError as exc:
        raise ConfigurationError(f"settings.{SETTING}[{key!r}]: {exc}") from None


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
