"""Each benchmark script runs end to end on a tiny input (``--quick``).

Benchmarks print numbers; nothing here asserts a timing. What is asserted is that the
scripts still work against the current code, and that the correctness checks the
scenarios make (every ack 2xx, one row and one handler run per distinct id) hold.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    not (ROOT / "benchmarks" / "core.py").exists(), reason="benchmarks/ not in this checkout"
)


def run(module: str, *args: str, timeout: float = 60) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--quick", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_core_runs() -> None:
    out = run("benchmarks.core")
    for case in ("floor", "stdlib baseline", "Verifier.verify", "receive SQLiteStore", "process"):
        assert case in out
    assert "receive SQLiteStore, 1,000 endpoints" in out


def test_scale_runs() -> None:
    out = run("benchmarks.scale")
    assert "receive, 5,000 stored" in out


def test_duplicate_storm_is_handled_once() -> None:
    out = run("benchmarks.duplicates")
    assert "50% duplicates" in out
    assert "| NO " not in out, out


@pytest.mark.slow
def test_slow_handlers_runs() -> None:
    out = run("benchmarks.slow_handlers")
    assert "1 s handlers" in out


@pytest.mark.slow
def test_apps_run() -> None:
    pytest.importorskip("flask")
    pytest.importorskip("starlette")
    out = run("benchmarks.apps", "--framework", "flask", "--framework", "starlette")
    for app in ("flask bare", "flask peer", "starlette bare", "starlette peer", "x peer"):
        assert app in out


@pytest.mark.slow
def test_http_runs() -> None:
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    if shutil.which("wrk") is None:
        pytest.skip("wrk not installed (apt-get install -y wrk)")
    out = run("benchmarks.http.run", "--framework", "flask")
    rows = [line for line in out.splitlines() if line.startswith("| flask ")]
    assert len(rows) >= 2, out
    for row in rows:  # the last column counts non-2xx answers, connect errors, timeouts
        assert row.rstrip(" |").split("|")[-1].strip() == "0", row


@pytest.mark.slow
def test_burst_runs() -> None:
    pytest.importorskip("flask")
    pytest.importorskip("gunicorn")
    out = run("benchmarks.burst", "--framework", "flask", timeout=180)
    rows = [line for line in out.splitlines() if line.startswith("| flask ")]
    assert [row.split("|")[1].strip() for row in rows] == [
        "flask bare",
        "flask peer",
        "flask ours",
    ], out
    for row in rows:  # non-2xx answers: none on a healthy store
        assert row.split("|")[6].strip() == "0", out


WAVE1 = "1b12079"


def test_wave1_comparison_runs(tmp_path: Path) -> None:
    # Wave 1's package comes out of this repository's own history.
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", WAVE1, "iverton_webhooks"],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"wave 1 ({WAVE1}) is not in this clone's history")
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    out = run("benchmarks.wave1", "--wave1", str(tmp_path), timeout=180)
    for case in ("receive MemoryStore", "process SQLiteStore", "now, wave 1's WAL"):
        assert case in out
