from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from iverton_webhooks import SQLiteStore, Status
from iverton_webhooks.cli import main
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.samples import sample_body

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_demo_runs_over_real_http_and_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "iverton_webhooks.cli", "demo"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all outcomes as expected" in done.stdout
    assert "forged signature                  401" in done.stdout
    assert "inbox: 22 events stored (22 done)" in done.stdout


def test_sign_prints_the_header_for_a_file_or_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body_file = tmp_path / "body.txt"
    body_file.write_bytes(b"Hello, World!")
    assert main(["sign", str(body_file), "--secret", "It's a Secret to Everybody"]) == 0
    assert capsys.readouterr().out.strip() == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )
    piped = subprocess.run(
        [sys.executable, "-m", "iverton_webhooks.cli", "sign", "--secret", "s"],
        input=b"abc",
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert piped.stdout.decode().startswith("sha256=")


def seed(path: Path, *ids: str) -> str:
    store = SQLiteStore(path)
    for event_id in ids:
        body = sample_body("deal.won", id=event_id)
        envelope = parse_envelope(body)
        store.record(envelope.id, envelope.type, envelope.created_at, body)
    store.close()
    return f"sqlite:///{path}"


HANDLER_MODULE = """
from iverton_webhooks import on
import pathlib
@on("deal.won")
def write(event):
    with open(pathlib.Path(__file__).with_name("ran.txt"), "a") as f:
        f.write(event.id + "\\n")
"""


def test_worker_events_replay_and_prune_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = seed(tmp_path / "cli.db", "evt_c1", "evt_c2")
    assert main(["-q", "events", "--store", url, "--json"]) == 0
    listed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["id"], e["status"]) for e in listed] == [
        ("evt_c2", "pending"),
        ("evt_c1", "pending"),
    ]

    (tmp_path / "cli_handlers.py").write_text(HANDLER_MODULE)
    worker = subprocess.run(
        [
            sys.executable,
            "-m",
            "iverton_webhooks.cli",
            "-q",
            "worker",
            "--once",
            "--store",
            url,
            "--app",
            "cli_handlers",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": f"{tmp_path}:{ROOT}", "PATH": "/usr/bin:/bin"},
    )
    assert worker.returncode == 0, worker.stderr
    assert sorted((tmp_path / "ran.txt").read_text().split()) == ["evt_c1", "evt_c2"]

    assert main(["-q", "events", "--store", url, "--status", "done"]) == 0
    assert capsys.readouterr().out.count("done") == 2
    assert main(["-q", "replay", "--store", url, "evt_c1", "evt_missing"]) == 1
    assert "replayed 1 of 2" in capsys.readouterr().out
    assert SQLiteStore(tmp_path / "cli.db").get("evt_c1").status is Status.PENDING  # type: ignore[union-attr]

    assert main(["-q", "prune", "--store", url]) == 0
    assert "deleted 0 event(s)" in capsys.readouterr().out
    assert main(["-q", "prune", "--store", url, "--older-than-hours", "1"]) == 2
    assert "retry span" in capsys.readouterr().err


def test_replay_dead_from_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = seed(tmp_path / "dead.db", "evt_d1")
    store = SQLiteStore(tmp_path / "dead.db")
    claim = store.claim("evt_d1", 30)
    assert claim is not None
    store.fail(claim, {}, "boom", None)
    assert main(["-q", "replay", "--store", url, "--dead"]) == 0
    assert "replayed 1 of 1" in capsys.readouterr().out
    assert store.get("evt_d1").status is Status.PENDING  # type: ignore[union-attr]
