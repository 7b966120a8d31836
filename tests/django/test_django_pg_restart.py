"""Django on PostgreSQL, the server restarted while a handler runs: every thread that
writes (lease renewal, the handler's result, recovery) gets a working connection once the
server is back, so the handler's success is recorded and the handler runs once.

A private server (initdb on a temp dir, a free port), never the machine's own; the
Django process is a child of its own, configured for that server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fault_app import PrivatePostgres, temporary_directory

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if PrivatePostgres.bindir() is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    # Not under pytest's tmp_path: the postgres user cannot enter root's private folder.
    with temporary_directory() as directory, PrivatePostgres(directory) as server:
        yield server


def test_a_restart_mid_handler_records_its_success_and_runs_it_once(
    private_postgres: PrivatePostgres,
) -> None:
    runs = private_postgres.dir / "runs.txt"
    runs.touch()
    os.chmod(runs, 0o666)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.django.pg_restart_app",
            str(private_postgres.dir),
            str(runs),
            str(private_postgres.port),
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["runs"] == ["evt_restart"], (outcome, done.stderr[-4000:])
    assert (outcome["reply"], outcome["status"], outcome["attempts"]) == (200, "done", 1), (
        outcome,
        done.stderr[-4000:],
    )
    # The store alone (no process_context): the call that meets the dead connection
    # fails, and gives it back; the next one opens a working one.
    assert outcome["direct"] == [-1, 1], outcome
