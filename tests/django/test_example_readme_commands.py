"""Every management command the Django example's README names parses as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from django.core.management import CommandError, load_command_class

README = Path(__file__).resolve().parents[2] / "example_projects" / "django_project" / "README.md"
APP = "iverton_webhooks.contrib.django"


def commands_in_readme() -> list[tuple[str, list[str]]]:
    found = re.findall(r"(iverton_webhooks_[a-z_]+)([^`\n]*)", README.read_text())
    return [(name, shlex.split(args.split("#")[0])) for name, args in found]


def test_the_readme_names_commands() -> None:
    names = {name for name, _ in commands_in_readme()}
    assert {"iverton_webhooks_replay", "iverton_webhooks_worker"} <= names


@pytest.mark.parametrize(("name", "args"), commands_in_readme())
def test_each_readme_command_parses(name: str, args: list[str]) -> None:
    command = load_command_class(APP, name)
    parser = command.create_parser("manage.py", name)
    try:
        parser.parse_args(args)
    except CommandError as exc:
        pytest.fail(f"manage.py {name} {' '.join(args)}: {exc}")


def test_replay_status_dead_is_not_an_option() -> None:
    # What the README said before: it must stay an error, so the README cannot drift back.
    parser = load_command_class(APP, "iverton_webhooks_replay").create_parser(
        "manage.py", "iverton_webhooks_replay"
    )
    with pytest.raises(CommandError):
        parser.parse_args(["--status", "dead"])
