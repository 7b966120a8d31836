"""The toolchain that checks us is pinned, a separate run tries the newest releases, and
tox finds Pythons without naming one machine's folders."""

from __future__ import annotations

import configparser
import re
import sys
from pathlib import Path

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    tomllib = pytest.importorskip("tomli")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]
TOX = configparser.ConfigParser(interpolation=None)
TOX.read(ROOT / "tox.ini")
CI = (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("extra", ["docs", "lint", "types"])
def test_the_checking_toolchain_is_pinned_exactly(extra: str) -> None:
    for requirement in EXTRAS[extra]:
        assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][0-9A-Za-z.]*", requirement), requirement


def test_the_tools_ci_runs_come_from_the_pinned_extras() -> None:
    names = {
        re.split(r"[=\[]", req)[0].lower() for e in ("docs", "lint", "types") for req in EXTRAS[e]
    }
    assert {
        "ruff",
        "mypy",
        "mkdocs",
        "mkdocs-material",
        "mkdocstrings",
        "mkdocstrings-python",
    } <= names
    dev = " ".join(EXTRAS["dev"])
    for extra in ("docs", "lint", "types"):
        assert extra in dev
    assert "install -q -e '.[dev]'" in CI
    assert TOX["testenv:lint"]["extras"].strip() == "lint"
    assert "deps" not in TOX["testenv:lint"]


def test_tox_names_no_interpreter_path() -> None:
    text = (ROOT / "tox.ini").read_text()
    assert ".pyenv/versions" not in text
    for section in TOX.sections():
        spec = TOX[section].get("base_python", "")
        for part in filter(None, (p.strip() for p in spec.split(","))):
            assert re.fullmatch(r"py3\d+", part), (section, part)
    assert "PYENV_VERSION" in TOX["testenv"]["pass_env"]


def test_a_run_against_the_newest_releases_exists_apart_from_ci() -> None:
    latest = TOX["testenv:latest"]
    assert "--upgrade" in latest["commands_pre"]
    for command in ("ruff check", "mypy --strict", "mkdocs build --strict"):
        assert command in latest["commands"]
    assert "latest" not in TOX["tox"]["env_list"]
    # .ci/run's tox step runs py310 and the fw-* envs only.
    (step,) = re.findall(r'tox" run -e "([^"]+)"', CI)
    assert step == "py310,$envs"
    assert "grep -o '^\\[testenv:fw-" in CI
    assert "--skip-missing-interpreters false" in CI
