"""Docstrings are written in the style the documentation site renders (Markdown), and
the command line's help is plain text: no Sphinx roles on the site, no backticks in a
terminal."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "iverton_webhooks"
ROLE = re.compile(r":(?:py:)?(?:class|meth|attr|func|mod|data|exc|obj|const|term|ref):`")


def test_no_sphinx_role_in_the_package() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{number}: {line.strip()}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if ROLE.search(line)
    ]
    assert not found, "\n".join(found)


def test_the_command_lines_help_is_plain_text() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "iverton_webhooks._cli", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    assert "--app MODULE" in shown
    assert "`" not in shown
    assert not ROLE.search(shown)
