"""The IVERTON_WEBHOOKS setting goes through the one `Settings`: each bad value gives
the core's message under its key (in the check and when the receiver is built), and
every option reaches the receiver (tests/test_settings.py has the other surfaces)."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks

from iverton_webhooks import ConfigurationError
from iverton_webhooks.contrib.django.endpoint import get_receiver
from tests.django.test_django_checks import BASE
from tests.test_settings import BAD, IDS, REACH, SECRET, key, refusal

#: The check id of each setting's rule; any other unusable setting is E005.
CHECK_ID = {"secrets": "E002", "retention": "E003", "max_age": "E004"}


def setting(option: str, value: Any) -> dict[str, Any]:
    return {**BASE, "SECRET": SECRET, key(option): list(value) if option == "secrets" else value}


@pytest.mark.parametrize(("option", "value", "says"), BAD, ids=IDS)
def test_the_check_and_the_receiver_give_the_core_message(
    settings: Any, option: str, value: Any, says: str
) -> None:
    settings.IVERTON_WEBHOOKS = setting(option, value)
    (message,) = run_checks(tags=["iverton_webhooks"])
    assert message.id == f"iverton_webhooks.{CHECK_ID.get(option, 'E005')}"
    assert message.msg.startswith(f"settings.IVERTON_WEBHOOKS[{key(option)!r}]: ")
    assert says in message.msg
    if option != "secrets":  # a list's secret is named by its position in that list
        assert (
            message.msg == f"settings.IVERTON_WEBHOOKS[{key(option)!r}]: {refusal(option, value)}"
        )
    with pytest.raises(ConfigurationError) as caught:
        get_receiver()
    assert str(caught.value) == message.msg


@pytest.mark.parametrize("option", sorted(set(REACH) - {"runner"}))
def test_every_option_reaches_the_receiver(settings: Any, option: str) -> None:
    value, read, expected = REACH[option]
    settings.IVERTON_WEBHOOKS = {**BASE, "SECRET": SECRET, key(option): value}
    assert not run_checks(tags=["iverton_webhooks"])
    assert read(get_receiver()) == expected


def test_the_asyncio_runner_is_refused_with_the_choices(settings: Any) -> None:
    settings.IVERTON_WEBHOOKS = {**BASE, "SECRET": SECRET, "RUNNER": "asyncio"}
    (message,) = run_checks(tags=["iverton_webhooks"])
    assert message.id == "iverton_webhooks.E005"
    assert "'thread' or 'inline'" in message.msg


def test_a_setting_that_is_not_a_dict_is_reported_once(settings: Any) -> None:
    # A common slip: the secret itself assigned to the setting. Every check reads it;
    # one of them says so.
    settings.IVERTON_WEBHOOKS = SECRET
    ours = [m for m in run_checks() if m.id and m.id.startswith("iverton_webhooks.")]
    assert [(m.id, m.msg) for m in ours] == [
        ("iverton_webhooks.E005", "settings.IVERTON_WEBHOOKS must be a dict, not str")
    ]
