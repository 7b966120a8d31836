"""What a receiver is configured with, and every rule about it, in one place.

`Settings` is built by `Receiver` and `Processor` from their keyword arguments, by
Django from ``settings.IVERTON_WEBHOOKS`` and by Flask from ``app.config`` (both through
`Settings.from_mapping`), and by the Starlette middleware from its arguments. Each rule
(the secrets, the runner, durations, retention against the sender's retries) is checked
here, once, when the object is built, so a check at start-up and the receiver itself can
never disagree.

>>> Settings(secrets=("whsec_9f8a7b6c5d4e",), lease=30).lease
datetime.timedelta(seconds=30)
>>> try:
...     Settings.from_mapping({"RETENTION": 3600}, where="settings.IVERTON_WEBHOOKS")
... except SettingError as error:
...     print(str(error)[:77])
settings.IVERTON_WEBHOOKS['RETENTION']: retention 1:00:00 is shorter than the
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from importlib import import_module
from typing import Any

from ._errors import ConfigurationError
from ._signature import validate_secrets
from ._worker import RetryPolicy
from .inbox.base import DEFAULT_ENDPOINT

#: From the first attempt to the sender's last retry: 1 min + 5 min + 30 min + 2 h + 24 h.
SENDER_RETRY_SPAN = timedelta(minutes=1 + 5 + 30 + 120 + 1440)
#: How long a registered endpoint's previous secret stays valid after a rotation: past
#: the sender's whole retry span, so a delivery first signed before the rotation is
#: still accepted at its last retry.
ROTATION_GRACE = timedelta(hours=27)

#: The runner names every surface accepts.
RUNNER_NAMES = ("thread", "asyncio", "inline")


class SettingError(ConfigurationError):
    """A setting that cannot be used; ``setting`` is its field name (``"retention"``)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(message)
        self.setting = setting


class RetentionError(SettingError):
    """Retention or max_age against the sender's retry span (`check_retention`)."""


@dataclass(frozen=True)
class Settings:
    """A receiver's configuration, checked when built (`SettingError` says what to fix).

    Durations are ``timedelta`` or a number of seconds. ``secrets`` may be empty for a
    processor that only processes (a worker); a `Receiver` requires at least one.
    ``store`` and ``runner`` are kept as given (a URL, a name, an object) and opened by
    the receiver; `iverton_webhooks.runners.make_runner` says which runners are accepted.
    ``endpoint_registry``: also receive and process for the endpoints registered in the
    store (its `EndpointRegistry`), beside ``endpoint``.
    """

    secrets: tuple[str, ...] = ()
    endpoint: str = DEFAULT_ENDPOINT
    store: Any = None
    runner: Any = None
    max_body_bytes: int = 1024 * 1024
    max_age: timedelta | None = None
    retention: timedelta = timedelta(days=7)
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    lease: timedelta = timedelta(seconds=60)
    handler_timeout: timedelta = timedelta(minutes=2)
    endpoint_registry: bool = False

    def __post_init__(self) -> None:
        # A frozen dataclass: its own checks normalise the values while it is built.
        fix = partial(object.__setattr__, self)
        if self.secrets:
            fix("secrets", tuple(_checked_secrets(list(self.secrets))))
        endpoint = self.endpoint
        if not isinstance(endpoint, str) or not endpoint.strip() or endpoint != endpoint.strip():
            raise SettingError("endpoint", f"endpoint must be a non-blank name, got {endpoint!r}")
        for name in ("max_age", "retention", "lease", "handler_timeout"):
            fix(name, duration(getattr(self, name), name))
        for name in ("lease", "handler_timeout"):
            if getattr(self, name) <= timedelta(0):
                raise SettingError(name, f"{name} must be a positive duration")
        size = self.max_body_bytes
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise SettingError(
                "max_body_bytes", f"max_body_bytes must be a positive number of bytes, not {size!r}"
            )
        if not isinstance(self.endpoint_registry, bool):
            raise SettingError(
                "endpoint_registry",
                f"endpoint_registry must be True or False, not {self.endpoint_registry!r}",
            )
        retry: object = self.retry  # from a mapping it may be anything
        if not isinstance(retry, RetryPolicy):
            raise SettingError("retry", f"retry must be a RetryPolicy, not {retry!r}")
        check_retention(self.retention, self.max_age)
        if isinstance(self.runner, str):
            runner_named(self.runner)  # a bad name or path fails here, not at first use

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` (None leaves a field as it is), checked again."""
        given = {name: value for name, value in changes.items() if value is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, **given) if given else self

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], *, where: str, prefix: str = "") -> Settings:
        """Settings from upper-case keys (``SECRET``, ``SECRETS``, ``ENDPOINT``, ``STORE``,
        ``RUNNER``, ``MAX_BODY_BYTES``, ``MAX_AGE``, ``RETENTION``, ``RETRY``, ``LEASE``,
        ``HANDLER_TIMEOUT``, ``ENDPOINT_REGISTRY``, each after ``prefix``); other keys are
        the caller's. Errors name the key as ``where['PREFIX_KEY']``."""
        return cls().replace(**options_from(values, where=where, prefix=prefix))


#: The fields a mapping sets under their names in capitals (``MAX_AGE``); ``secrets``
#: comes from ``SECRET`` and ``SECRETS`` (`secrets_from`).
_MAPPED = [f.name for f in dataclasses.fields(Settings) if f.name != "secrets"]
#: Every key `Settings.from_mapping` reads.
SETTING_KEYS = frozenset({"SECRET", "SECRETS", *(name.upper() for name in _MAPPED)})


def options_from(values: Mapping[str, Any], *, where: str, prefix: str = "") -> dict[str, Any]:
    """The `Settings` fields a mapping sets (see `Settings.from_mapping`), checked
    together: a `SettingError` names the key it comes from."""
    options: dict[str, Any] = {}
    secrets = secrets_from(values, where=where, prefix=prefix)
    if secrets:
        options["secrets"] = tuple(secrets)
    for name in _MAPPED:
        value = values.get(prefix + name.upper())
        if value is not None:
            options[name] = value
    try:
        Settings().replace(**options)
    except SettingError as exc:
        raise type(exc)(exc.setting, f"{where}[{prefix + exc.setting.upper()!r}]: {exc}") from None
    return options


def secrets_from(values: Mapping[str, Any], *, where: str, prefix: str = "") -> list[str]:
    """``SECRET`` then ``SECRETS`` of a mapping, checked: an empty list when neither is
    set (``""`` counts as unset, as from an unset environment variable)."""
    one, many_key = f"{where}[{prefix + 'SECRET'!r}]", f"{where}[{prefix + 'SECRETS'!r}]"
    found: list[str] = []
    single = values.get(prefix + "SECRET")
    if single is not None and single != "":
        found += _checked_secrets([single], one)
    many = values.get(prefix + "SECRETS")
    if isinstance(many, (str, bytes)):
        raise SettingError(
            "secrets",
            f"{many_key} is one string, not a list: it would be read as one secret per "
            'character. Write "SECRETS": ["whsec_new...", "whsec_old..."] (newest first), '
            'or "SECRET": "whsec_..." for a single secret.',
        )
    if many is not None and not isinstance(many, (list, tuple)):
        raise SettingError(
            "secrets",
            f"{many_key} must be a list of strings, not {type(many).__name__}: "
            'write ["whsec_new...", "whsec_old..."]',
        )
    if many:
        found += _checked_secrets(list(many), many_key)
    return found


def duration(value: object, name: str) -> timedelta | None:
    """A ``timedelta``, or a number of seconds, or None."""
    if value is None or isinstance(value, timedelta):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return timedelta(seconds=value)
    raise SettingError(name, f"{name} must be a timedelta or a number of seconds, not {value!r}")


def check_retention(retention: timedelta, max_age: timedelta | None) -> None:
    """Refuse settings under which a legitimate retry could be processed twice or refused."""
    if retention <= SENDER_RETRY_SPAN:
        raise RetentionError(
            "retention",
            f"retention {retention} is shorter than the sender's retry span "
            f"({SENDER_RETRY_SPAN}): a late retry would no longer be recognised as a duplicate. "
            "Keep events for at least 2 days (default 7).",
        )
    if max_age is not None and not (SENDER_RETRY_SPAN < max_age < retention):
        raise RetentionError(
            "max_age",
            f"max_age must be longer than the sender's retry span ({SENDER_RETRY_SPAN}), so "
            f"legitimate retries are accepted, and shorter than retention ({retention}), so an "
            "event is refused by age before its id is forgotten.",
        )


def refuse_asyncio_runner(runner: object, key: str) -> None:
    """Django and Flask serve no event loop of their own for the ``"asyncio"`` runner to
    run on: refuse it where they read their settings."""
    if runner == "asyncio":
        raise SettingError(
            "runner",
            f"{key} must be 'thread' or 'inline' here (no event loop serves the asyncio "
            "runner), or a dotted path to a runner",
        )


def runner_named(spec: str) -> Any:
    """What a runner name or dotted path (``"myapp.runners.Mine"``) names: a name is
    returned as it is (`iverton_webhooks.runners.make_runner` knows the classes), a path
    is imported."""
    if spec in RUNNER_NAMES:
        return spec
    module, _, attribute = spec.rpartition(".")
    try:
        if not module:
            raise ImportError(f"no runner is named {spec!r}")
        return getattr(import_module(module), attribute)
    except (ImportError, AttributeError) as exc:
        raise SettingError(
            "runner",
            f"unknown runner {spec!r}: use 'thread', 'asyncio', 'inline', a dotted path to a "
            f"runner class or factory, or a BaseRunner ({exc})",
        ) from None


def _checked_secrets(secrets: list[Any], where: str | None = None) -> list[str]:
    try:
        return validate_secrets(secrets)
    except ConfigurationError as exc:
        raise SettingError("secrets", f"{where}: {exc}" if where else str(exc)) from None
