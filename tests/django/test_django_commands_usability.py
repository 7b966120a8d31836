"""The Django commands: help on every option, the events header, nothing to do exits 0,
and ``iverton_webhooks_replay --unhandled`` through the shared operations."""

from __future__ import annotations

import argparse

import pytest
from django.core.management import get_commands, load_command_class

from iverton_webhooks import Status
from iverton_webhooks import _operations as ops
from iverton_webhooks.contrib.django.endpoint import get_receiver
from tests.django.test_django_commands import record, run

pytestmark = pytest.mark.django_db(transaction=True)

# Django's own options on every command (--verbosity, --settings, ...) are its business.
DJANGO_OWN = {"help", "version", "verbosity", "settings", "pythonpath", "traceback"}
DJANGO_OWN |= {"no_color", "force_color", "skip_checks"}


def test_every_option_of_every_command_has_help() -> None:
    ours = sorted(name for name in get_commands() if name.startswith("iverton_webhooks_"))
    assert len(ours) == 7
    missing = []
    for name in ours:
        parser = load_command_class("iverton_webhooks.contrib.django", name).create_parser(
            "manage.py", name
        )
        # argparse offers no public walk of a parser's actions; this test alone reads them.
        for action in parser._actions:
            if action.dest not in DJANGO_OWN and not action.help:
                missing.append(f"{name} {action.dest}")
            assert action.help is not argparse.SUPPRESS or action.dest in DJANGO_OWN
    assert missing == []


def test_events_header_and_nothing_to_do() -> None:
    record("evt_dj1")
    assert run("iverton_webhooks_events").splitlines()[0] == ops.EVENTS_HEADER
    assert run("iverton_webhooks_replay", "--dead") == "no dead events: nothing to replay\n"
    assert (
        run("iverton_webhooks_replay", "--unhandled") == "no unhandled events: nothing to replay\n"
    )


def test_replay_unhandled() -> None:
    record("evt_dju", status=Status.UNHANDLED)
    assert (
        run("iverton_webhooks_replay", "--unhandled")
        == "replayed 1 unhandled event(s); the worker will process them\n"
    )
    assert get_receiver().store.get("evt_dju").status is Status.PENDING  # type: ignore[union-attr]
