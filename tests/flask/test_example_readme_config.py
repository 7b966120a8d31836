"""The Flask example's README: the rotation setting it shows is accepted, and every
``flask iverton`` command it shows parses."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import click
import pytest
from flask import Flask

from tests.flask.flask_helpers import close_all, receiver_of
from tests.flask.test_example import EXAMPLE, example  # noqa: F401  (the fixture)

README = EXAMPLE / "README.md"
NEW, OLD = "whsec_rotated_new_0123456789abcdef", "whsec_rotated_old_0123456789abcdef"


def readme_secrets_value() -> str:
    """The value the README sets ``FLASK_IVERTON_WEBHOOK_SECRETS`` to, as a shell reads it."""
    match = re.search(r"FLASK_IVERTON_WEBHOOK_SECRETS=([^`]+)`", README.read_text())
    assert match, "the README shows how to set two secrets while rotating"
    (value,) = shlex.split(match.group(1))
    return value


@pytest.fixture
def rotated_app(
    example: ModuleType,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Flask]:
    shown = readme_secrets_value()
    # The README writes placeholders ("whsec_new..."), which the library refuses as such.
    value = shown.replace("whsec_new...", NEW).replace("whsec_old...", OLD)
    monkeypatch.setenv("FLASK_IVERTON_WEBHOOK_SECRETS", value)
    app: Flask = example.create_app(instance_path=str(tmp_path / "instance"))
    yield app
    close_all(app)


def test_the_readme_rotation_setting_is_accepted_with_both_secrets(rotated_app: Flask) -> None:
    from iverton_webhooks import sign
    from iverton_webhooks.samples import sample_body

    receiver_of(rotated_app)  # built: the setting was not refused
    for n, secret in enumerate((NEW, OLD)):
        body = sample_body("contact.created", id=f"evt_rot_{n}")
        response = rotated_app.test_client().post(
            "/webhooks/iverton", data=body, headers={"X-Iverton-Signature": sign(body, secret)}
        )
        assert response.status_code == 200, response.data


def flask_commands() -> list[list[str]]:
    lines = re.findall(r"flask iverton ([^#`\n]*)", README.read_text())
    return [shlex.split(line) for line in lines]


@pytest.mark.parametrize("argv", flask_commands())
def test_each_readme_command_parses(example: ModuleType, tmp_path: Path, argv: list[str]) -> None:  # noqa: F811
    app: Flask = example.create_app(instance_path=str(tmp_path / "instance"))
    try:
        group = app.cli.get_command(click.Context(app.cli), "iverton")
        assert isinstance(group, click.Group)
        command = group.get_command(click.Context(group), argv[0])
        assert command is not None, argv
        command.make_context(argv[0], argv[1:])  # raises UsageError on an unknown option
    finally:
        close_all(app)
