"""``flask iverton``: help on every option, the events header, nothing to do exits 0,
and ``replay --unhandled`` through the shared operations."""

from __future__ import annotations

import click
from flask import Flask

from iverton_webhooks import Status
from iverton_webhooks import _operations as ops
from iverton_webhooks.contrib.flask_cli import iverton_cli
from tests.flask.flask_helpers import receiver_of
from tests.flask.test_flask_cli import MakeApp, invoke, seed


def every_command(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Each command by its full name, those of subgroups (``endpoints add``) included."""
    found: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        found[prefix + name] = command
        if isinstance(command, click.Group):
            found.update(every_command(command, f"{prefix}{name} "))
    return found


def test_every_option_of_every_command_has_help() -> None:
    commands = every_command(iverton_cli)
    missing = [
        f"{name} {'/'.join(param.opts)}"
        for name, command in commands.items()
        for param in command.params
        if isinstance(param, click.Option) and not param.help
    ]
    assert missing == []
    assert [name for name, command in commands.items() if not command.help] == []
    assert {"events", "replay", "send-test", "endpoints rotate", "endpoints list"} <= set(commands)


def test_events_header_and_nothing_to_do(make_app: MakeApp) -> None:
    app = make_app()
    seed(app, "evt_h1")
    code, output = invoke(app, "events")
    assert (code, output.splitlines()[0]) == (0, ops.EVENTS_HEADER)
    assert invoke(app, "replay", "--dead") == (0, "no dead events: nothing to replay\n")
    assert invoke(app, "replay", "--unhandled") == (0, "no unhandled events: nothing to replay\n")


def test_replay_unhandled(make_app: MakeApp) -> None:
    app: Flask = make_app()
    seed(app, "evt_u1", status=Status.UNHANDLED)
    code, output = invoke(app, "replay", "--unhandled")
    assert (code, output) == (0, "replayed 1 unhandled event(s); the worker will process them\n")
    assert receiver_of(app).processor.get("evt_u1").status is Status.PENDING  # type: ignore[union-attr]
