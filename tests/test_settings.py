"""One settings object: each rule lives in `Settings`, and every surface (Receiver and
Processor keywords, the Starlette middleware, Flask's config; Django's setting in
tests/django/test_django_settings.py) gives the same message and reaches every option."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from iverton_webhooks import ConfigurationError, MemoryStore, Processor, Receiver, Router
from iverton_webhooks._settings import (
    SENDER_RETRY_SPAN,
    RetentionError,
    SettingError,
    Settings,
    options_from,
)
from iverton_webhooks.runners import InlineRunner, ThreadRunner

SECRET = "whsec_settings_test_0123456789"

#: (option, bad value, what the message must say): one case per rule.
BAD = [
    ("secrets", ("",), "is blank"),
    ("secrets", (" whsec_padded_0123456789",), "leading or trailing whitespace"),
    ("secrets", ("whsec_...",), "placeholder"),
    ("endpoint", " padded ", "non-blank name"),
    ("runner", "fast", "unknown runner 'fast': use 'thread', 'asyncio', 'inline'"),
    ("runner", "no.such.module.Runner", "a dotted path to a runner class"),
    ("retention", timedelta(hours=12), "shorter than the sender's retry span"),
    ("max_age", timedelta(days=7), "max_age must be longer than the sender's retry span"),
    ("lease", 0, "lease must be a positive duration"),
    ("handler_timeout", -1, "handler_timeout must be a positive duration"),
    ("lease", "a minute", "lease must be a timedelta or a number of seconds"),
    ("max_body_bytes", 0, "max_body_bytes must be a positive number of bytes"),
    ("retry", 3, "retry must be a RetryPolicy"),
]
IDS = [f"{option}={value!r}" for option, value, _ in BAD]


def refusal(option: str, value: Any) -> str:
    with pytest.raises(SettingError) as caught:
        Settings(**{"secrets": (SECRET,), option: value})
    assert caught.value.setting == option
    return str(caught.value)


@pytest.mark.parametrize(("option", "value", "says"), BAD, ids=IDS)
def test_each_rule_refuses_with_the_fix(option: str, value: Any, says: str) -> None:
    assert says in refusal(option, value)


def test_retention_rules_are_one_kind() -> None:
    with pytest.raises(RetentionError):
        Settings(retention=SENDER_RETRY_SPAN)


def test_durations_may_be_seconds_and_good_settings_keep_their_values() -> None:
    settings = Settings(secrets=(SECRET,), lease=30, handler_timeout=7.5, max_age=3 * 86400)
    assert settings.lease == timedelta(seconds=30)
    assert settings.handler_timeout == timedelta(seconds=7.5)
    assert settings.max_age == timedelta(days=3)


def test_replace_checks_again_and_names_unknown_options() -> None:
    settings = Settings(secrets=(SECRET,))
    assert settings.replace(lease=None) is settings
    with pytest.raises(SettingError, match="positive"):
        settings.replace(lease=0)
    with pytest.raises(ConfigurationError, match=r"unknown option.*leese"):
        settings.replace(leese=30)


@pytest.mark.parametrize(("option", "value", "says"), BAD, ids=IDS)
def test_receiver_keywords_give_the_same_message(option: str, value: Any, says: str) -> None:
    expected = refusal(option, value)
    kwargs: dict[str, Any] = {"store": "memory://", "runner": "inline", option: value}
    if option == "secrets":
        kwargs = {"store": "memory://", "secrets": list(value)}
    else:
        kwargs["secret"] = SECRET
    with pytest.raises(ConfigurationError) as caught:
        Receiver(**kwargs)
    assert str(caught.value) == expected


@pytest.mark.parametrize(("option", "value", "says"), BAD, ids=IDS)
def test_the_starlette_middleware_gives_the_same_message(
    option: str, value: Any, says: str
) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware

    expected = refusal(option, value)
    kwargs: dict[str, Any] = {"store": "memory://", option: value}
    if option == "secrets":
        kwargs = {"store": "memory://", "secrets": list(value)}
    else:
        kwargs["secret"] = SECRET
    middleware = IvertonWebhookMiddleware(Starlette(), **kwargs)
    assert str(middleware.error) == expected


KEY_OF = {"secrets": "SECRETS", "max_body_bytes": "MAX_BODY_BYTES"}


def key(option: str) -> str:
    return KEY_OF.get(option, option.upper())


@pytest.mark.parametrize(("option", "value", "says"), BAD, ids=IDS)
def test_a_mapping_gives_the_same_message_under_its_key(option: str, value: Any, says: str) -> None:
    core = refusal(option, value)
    values: dict[str, Any] = {"PREFIX_SECRET": SECRET}
    values["PREFIX_" + key(option)] = list(value) if option == "secrets" else value
    with pytest.raises(SettingError) as caught:
        options_from(values, where="config", prefix="PREFIX_")
    assert says in str(caught.value)
    assert str(caught.value).startswith(f"config['PREFIX_{key(option)}']: ")
    if option != "secrets":  # a list's secret is named by its position in that list
        assert str(caught.value) == f"config['PREFIX_{key(option)}']: {core}"


@pytest.mark.parametrize(("option", "value", "says"), BAD, ids=IDS)
def test_flask_config_gives_the_same_message(
    tmp_path: Path, option: str, value: Any, says: str
) -> None:
    pytest.importorskip("flask")
    from flask import Flask

    from iverton_webhooks.contrib.flask import IvertonWebhooks

    app = Flask(__name__, instance_path=str(tmp_path))
    app.config["IVERTON_WEBHOOK_SECRET"] = SECRET
    app.config["IVERTON_WEBHOOK_" + key(option)] = list(value) if option == "secrets" else value
    with pytest.raises(ConfigurationError) as caught:
        IvertonWebhooks(app)
    assert says in str(caught.value)
    assert str(caught.value).startswith(f"app.config['IVERTON_WEBHOOK_{key(option)}']")


# Every option reaches what uses it, from every surface --------------------------------

REACH = {
    "handler_timeout": (7, lambda r: r.processor.handler_timeout_seconds, 7.0),
    "lease": (20, lambda r: r.processor.lease_seconds, 20.0),
    "retention": (9 * 86400, lambda r: r.processor.retention, timedelta(days=9)),
    "max_age": (3 * 86400, lambda r: r.processor.max_age, timedelta(days=3)),
    "max_body_bytes": (4096, lambda r: r.max_body_bytes, 4096),
    "endpoint": ("billing", lambda r: r.endpoint, "billing"),
    "runner": ("inline", lambda r: type(r.runner), InlineRunner),
}


@pytest.mark.parametrize("option", sorted(REACH))
def test_receiver_and_processor_reach_every_option(option: str) -> None:
    value, read, expected = REACH[option]
    receiver = Receiver(SECRET, store="memory://", **{option: value})
    try:
        assert read(receiver) == expected
    finally:
        receiver.close()
    if option in ("max_body_bytes", "runner"):
        return  # the receiver's own options
    processor = Processor(MemoryStore(), Router(), **{option: value})
    assert read(type("R", (), {"processor": processor, "endpoint": processor.endpoint})) == (
        expected
    )


@pytest.mark.parametrize("option", sorted(REACH))
def test_flask_config_reaches_every_option(tmp_path: Path, option: str) -> None:
    pytest.importorskip("flask")
    from flask import Flask

    from iverton_webhooks.contrib.flask import IvertonWebhooks

    value, read, expected = REACH[option]
    app = Flask(__name__, instance_path=str(tmp_path))
    app.config.update(IVERTON_WEBHOOK_SECRET=SECRET, IVERTON_WEBHOOK_STORE="memory://")
    app.config["IVERTON_WEBHOOK_" + key(option)] = value
    extension = IvertonWebhooks(app)
    receiver = extension.receiver(app)
    try:
        assert read(receiver) == expected
    finally:
        receiver.close()


@pytest.mark.parametrize("option", sorted(REACH))
def test_the_starlette_middleware_reaches_every_option(option: str) -> None:
    pytest.importorskip("starlette")
    from starlette.applications import Starlette

    from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware

    value, read, expected = REACH[option]
    middleware = IvertonWebhookMiddleware(
        Starlette(), secret=SECRET, store="memory://", **{option: value}
    )
    try:
        assert read(middleware.receiver) == expected
    finally:
        middleware.receiver.close()


def test_the_default_runner_is_the_thread_runner() -> None:
    receiver = Receiver(SECRET, store="memory://")
    try:
        assert isinstance(receiver.runner, ThreadRunner)
    finally:
        receiver.close()
