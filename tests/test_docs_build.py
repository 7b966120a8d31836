"""The documentation site builds with ``mkdocs build --strict`` and no warning at all, as
CI builds it; CI's command can fail on a warning (no ``-q``, which hides warnings and lets
``--strict`` exit 0)."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = ROOT / "docs" / "_griffe" / "doctest_blocks.py"


def _load_extension() -> object:
    spec = importlib.util.spec_from_file_location("doctest_blocks", EXTENSION)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_the_site_builds_strict_with_no_warning(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("mkdocstrings_handlers.python")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    warnings = [line for line in output.splitlines() if re.match(r"\s*(WARNING|ERROR)\b", line)]
    assert done.returncode == 0, output[-3000:]
    assert warnings == []
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    # Doctests render as code: the RetryPolicy example's output is in a code block.
    assert '<span class="go">[60, 180, 540]</span>' in reference
    assert not (tmp_path / "site" / "_griffe").exists()


@pytest.mark.parametrize(
    ("path", "pattern"),
    [(".ci/run", r"mkdocs\"? build[^\n]*"), ("tox.ini", r"mkdocs build[^\n]*")],
)
def test_ci_builds_the_docs_strict_and_without_quiet(path: str, pattern: str) -> None:
    lines = re.findall(pattern, (ROOT / path).read_text())
    assert lines, f"{path} builds the docs"
    for line in lines:
        assert "--strict" in line
        assert not re.search(r"(^|\s)(-q|--quiet)(\s|$)", line), line


def test_doctest_blocks_become_fenced_code_and_fenced_code_is_left_alone() -> None:
    pytest.importorskip("griffe", reason="the docs extra is not installed (tox envs)")
    fence = _load_extension().fence_doctests  # type: ignore[attr-defined]
    text = 'Keys:\n>>> event["data"]["email"]\n\'a@b\'\n\nAfter.\n```python\n>>> kept\n```'
    assert fence(text).splitlines() == [
        "Keys:",
        "",
        "```pycon",
        '>>> event["data"]["email"]',
        "'a@b'",
        "```",
        "",
        "After.",
        "```python",
        ">>> kept",
        "```",
    ]
    assert fence("  >>> x\n  1").splitlines() == ["  ```pycon", "  >>> x", "  1", "  ```"]
    assert fence("no doctest [a][b]") == "no doctest [a][b]"
