"""``-k`` and ``-m`` select, whatever the Django test folder's conftest reorders (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DJANGO_TEST = "test_there_is_one_signal_per_event_type"


def _collect(*args: str) -> list[str]:
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:randomly", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    return [line for line in run.stdout.splitlines() if "::" in line]


@pytest.mark.slow
def test_keyword_selection_with_django_tests_in_the_run() -> None:
    pytest.importorskip("pytest_django")
    # Wave 1's hookwrapper put every deselected non-Django test back: this listed all of
    # test_signature.py (and -k test_sign listed 427 tests).
    listed = _collect(
        "-k",
        f"test_public_vector or {DJANGO_TEST}",
        "tests/test_signature.py",
        "tests/django/test_django_processing.py",
    )
    assert sorted(name.rpartition("::")[2] for name in listed) == [
        "test_public_vector",
        DJANGO_TEST,
    ]


@pytest.mark.slow
def test_marker_selection_with_django_tests_in_the_run() -> None:
    pytest.importorskip("pytest_django")
    listed = _collect(
        "-m", "browser", "tests/test_signature.py", "tests/django/test_django_browser.py"
    )
    assert listed
    assert all(name.startswith("tests/django/test_django_browser.py::") for name in listed)
