"""System checks (``manage.py check``): a missing or placeholder secret, and settings
under which a legitimate retry would be refused or processed twice."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.apps import AppConfig
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from ...errors import ConfigurationError
from ...receiver import DEFAULT_RETENTION, SENDER_RETRY_SPAN
from . import conf

_SETTING = conf.SETTING
_PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "placeholder", "xxx", "...", "todo")
_PLACEHOLDERS = {"whsec_", "secret", "whsec_secret", "your-secret", "your_secret", "none"}


def looks_like_placeholder(secret: str) -> bool:
    lowered = secret.strip().lower()
    return (
        lowered in _PLACEHOLDERS
        or any(word in lowered for word in _PLACEHOLDER_WORDS)
        or len(lowered) < 16
    )


@register("iverton_webhooks")
def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    try:
        opts = conf.options()
    except ConfigurationError as exc:
        return [Error(str(exc), id="iverton_webhooks.E005")]
    messages: list[CheckMessage] = []
    messages += _check_secrets(opts)
    messages += _check_durations(opts)
    messages += _check_objects(opts)
    unknown = sorted(set(opts) - conf.KNOWN_KEYS)
    if unknown:
        messages.append(
            Warning(
                f"{_SETTING} has unknown keys: {', '.join(unknown)}",
                hint=f"Known keys: {', '.join(sorted(conf.KNOWN_KEYS))}.",
                id="iverton_webhooks.W006",
            )
        )
    return messages


def _check_secrets(opts: dict[str, Any]) -> list[CheckMessage]:
    secrets = conf.secrets(opts)
    if not secrets:
        return [
            Error(
                f"No Iverton webhook secret: settings.{_SETTING} has no SECRET.",
                hint=(
                    f'Set {_SETTING} = {{"SECRET": os.environ["IVERTON_WEBHOOK_SECRET"]}} with '
                    "the endpoint's signing secret from the Iverton dashboard (whsec_...), or "
                    '"SECRETS": [new, old] while rotating.'
                ),
                id="iverton_webhooks.E001",
            )
        ]
    return [
        Warning(
            f"{_SETTING} secret #{index} looks like a placeholder, not a real signing secret.",
            hint="Copy the endpoint's secret from the Iverton dashboard; keep it out of code.",
            id="iverton_webhooks.W002",
        )
        for index, secret in enumerate(secrets)
        if looks_like_placeholder(secret)
    ]


def _check_durations(opts: dict[str, Any]) -> list[CheckMessage]:
    try:
        retention = conf.duration(opts.get("RETENTION"), "RETENTION") or DEFAULT_RETENTION
        max_age = conf.duration(opts.get("MAX_AGE"), "MAX_AGE")
    except ConfigurationError as exc:
        return [Error(str(exc), id="iverton_webhooks.E005")]
    if retention <= SENDER_RETRY_SPAN:
        return [
            Error(
                f"{_SETTING}['RETENTION'] ({retention}) is not longer than the sender's retry "
                f"span ({SENDER_RETRY_SPAN}): a late retry would be processed twice.",
                hint="Keep events for at least 2 days; the default is 7.",
                id="iverton_webhooks.E003",
            )
        ]
    if max_age is not None and not (SENDER_RETRY_SPAN < max_age < retention):
        return [
            Error(
                f"{_SETTING}['MAX_AGE'] ({max_age}) must be longer than the sender's retry "
                f"span ({SENDER_RETRY_SPAN}) and shorter than RETENTION ({retention}).",
                hint="For example MAX_AGE = timedelta(days=3) with the default 7-day retention.",
                id="iverton_webhooks.E004",
            )
        ]
    return []


def _check_objects(opts: dict[str, Any]) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    runner = opts.get("RUNNER")
    if isinstance(runner, str) and runner not in ("thread", "inline"):
        try:
            import_string(runner)
        except ImportError as exc:
            messages.append(
                Error(
                    f"{_SETTING}['RUNNER'] = {runner!r} cannot be imported: {exc}",
                    hint="Use 'thread' (default), 'inline' or a dotted path to a Runner.",
                    id="iverton_webhooks.E005",
                )
            )
    if opts.get("ROUTER") is not None:
        try:
            conf.router(opts["ROUTER"])
        except (ConfigurationError, ImportError) as exc:
            messages.append(Error(str(exc), id="iverton_webhooks.E005"))
    return messages
