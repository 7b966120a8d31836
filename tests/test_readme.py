"""The README runs: every ``python`` block executes, and its generated parts match the code.

A block preceded by ``<!-- skip: reason -->`` is a fragment of a larger project (a
Django settings file) and is not run; there are at most two of them.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from iverton_webhooks import default_router
from iverton_webhooks._catalogue import CATALOGUE

README = Path(__file__).resolve().parent.parent / "README.md"
PYPROJECT = README.parent / "pyproject.toml"
# Realistic, so the secret checks at start accept it; the blocks read it from the environment.
SECRET = "whsec_readme_3b9f0c2d7e4a61"
FRAMEWORKS = {"django", "flask", "starlette", "fastapi", "celery"}


@dataclass(frozen=True)
class Block:
    line: int
    code: str
    skip: str | None


def blocks(text: str) -> list[Block]:
    """Every fenced ``python`` block, with the skip reason of a comment right before it."""
    found = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        if lines[index].strip() == "```python":
            start = index
            index += 1
            body = []
            while lines[index].strip() != "```":
                body.append(lines[index])
                index += 1
            before = lines[start - 1].strip() if start else ""
            skip = re.fullmatch(r"<!-- skip: (.+) -->", before)
            found.append(Block(start + 1, "\n".join(body) + "\n", skip and skip.group(1)))
        index += 1
    return found


BLOCKS = blocks(README.read_text())


@pytest.fixture
def clean_default_router() -> Iterator[None]:
    # README handlers register on the process-wide default router: put it back as it was.
    handlers = {key: list(value) for key, value in default_router._handlers.items()}
    included = list(default_router._included)
    yield
    default_router._handlers.clear()
    default_router._handlers.update(handlers)
    default_router._included[:] = included


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README.md:{b.line}" for b in BLOCKS])
@pytest.mark.usefixtures("clean_default_router")
def test_readme_block_runs(block: Block, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if block.skip:
        pytest.skip(block.skip)
    monkeypatch.chdir(tmp_path)  # the default SQLite inbox lands here
    monkeypatch.setenv("IVERTON_WEBHOOK_SECRET", SECRET)
    namespace: dict[str, object] = {"__name__": f"readme_line_{block.line}"}
    try:
        exec(compile(block.code, f"README.md:{block.line}", "exec"), namespace)
    except ModuleNotFoundError as error:
        # Only a missing framework skips; a wrong path inside this library fails.
        if (error.name or "").partition(".")[0] in FRAMEWORKS:
            pytest.skip(f"needs {error.name}")
        raise
    finally:
        for value in namespace.values():
            close = getattr(value, "close", None)
            if type(value).__name__ == "Receiver" and callable(close):
                close()


def test_skipped_blocks_are_few_and_say_why() -> None:
    skipped = [block for block in BLOCKS if block.skip]
    assert len(skipped) <= 2
    assert all(len(block.skip or "") > 20 for block in skipped)
    assert len(BLOCKS) - len(skipped) >= 4


def test_collector_sees_every_python_fence() -> None:
    assert len(BLOCKS) == README.read_text().count("```python")


def payload_table() -> str:
    """The README's payload table, as the catalogue gives it."""
    rows = [
        "| family | event types | `event.data` model | typed fields "
        "| also in the samples (kept as extras) |",
        "|---|---|---|---|---|",
    ]
    for family in CATALOGUE.families:
        typed = list(family.model.model_fields)
        extras: dict[str, None] = {}
        for event_type in family.types:
            for key in CATALOGUE.sample_data(event_type):
                if key not in typed:
                    extras.setdefault(key)
        rows.append(
            f"| {family.name} | {', '.join(f'`{a}`' for a in family.actions)} "
            f"| `{family.model.__name__}` | {', '.join(f'`{f}`' for f in typed)} "
            f"| {', '.join(f'`{k}`' for k in extras)} |"
        )
    return "\n".join(rows)


def test_payload_table_matches_the_catalogue() -> None:
    text = README.read_text()
    match = re.search(
        r"<!-- payload-table:start[^>]*-->\n(.*?)\n<!-- payload-table:end -->", text, re.S
    )
    assert match, "README lost its payload table markers"
    assert match.group(1) == payload_table(), "regenerate with tests/test_readme.payload_table()"


def test_exactly_two_set_up_commands() -> None:
    setup = README.read_text().split("## Set up", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"```sh\n(.*?)```", setup, re.S)
    assert len(commands) == 2
    assert all(len(command.strip().splitlines()) == 1 for command in commands)
    assert "[all,test]" in commands[1]


def test_readme_says_how_to_see_skip_reasons() -> None:
    assert "-rs" in README.read_text().split("## Quickstart", 1)[0]


def test_tox_is_installed_by_the_test_set_up() -> None:
    # The README's test command installs [all,test] and then mentions tox.
    if importlib.util.find_spec("tomllib") is None:
        pytest.skip("tomllib needs Python 3.11")
    import tomllib

    extras = tomllib.loads(PYPROJECT.read_text())["project"]["optional-dependencies"]
    assert any(requirement.startswith("tox") for requirement in extras["test"])


def test_status_table_covers_every_answer() -> None:
    table = README.read_text().split("## What each answer means", 1)[1].split("\n## ", 1)[0]
    for needle in (
        '{"status": "accepted"}',
        '{"status": "duplicate"}',
        '"note": "unknown event type"',
        '{"status": "quarantined"}',
        '{"status": "expired"}',
        '{"error": "invalid signature"}',
        '{"error": "method not allowed"}',
        '{"error": "body too large"}',
        "`unhandled`",
    ):
        assert needle in table, needle


def test_deploying_section_covers_the_advice() -> None:
    section = README.read_text().split("## Deploying", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "gthread",
        "uvicorn",
        "nginx",
        "--timeout",
        "/tmp",
        "persistent volume",
        "no new traffic",
        "handler_timeout",
        "lease",
        "/webhooks/iverton",
        "IVERTON_WEBHOOK_SECRET",
        "FLASK_IVERTON_WEBHOOK_SECRET",
    ):
        assert needle in section, needle


def test_example_django_project_defaults_debug_off(monkeypatch: pytest.MonkeyPatch) -> None:
    settings_file = README.parent / "example_projects/django_project/project/settings.py"
    if importlib.util.find_spec("django") is None:
        pytest.skip("needs Django")
    monkeypatch.delenv("DJANGO_DEBUG", raising=False)
    spec = importlib.util.spec_from_file_location("example_settings", settings_file)
    assert spec
    assert spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.DEBUG is False
    monkeypatch.setenv("DJANGO_DEBUG", "1")
    spec.loader.exec_module(module)
    assert module.DEBUG is True
