"""The example project in example_projects/flask_app: in process, and run as its README says."""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask

from iverton_webhooks import Status, ThreadRunner, sign
from iverton_webhooks.samples import sample_body
from tests.flask.flask_helpers import PREFIX, close_all, receiver_of

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "example_projects" / "flask_app"
MODULES = ("app", "crm", "webhooks")  # the example's top-level module names


@pytest.fixture
def example() -> Iterator[ModuleType]:
    """The example's ``app`` module, imported fresh, and forgotten afterwards."""
    saved = {name: sys.modules.pop(name) for name in MODULES if name in sys.modules}
    sys.path.insert(0, str(EXAMPLE))
    try:
        yield importlib.import_module("app")
    finally:
        sys.path.remove(str(EXAMPLE))
        for name in MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


@pytest.fixture
def app(example: ModuleType, tmp_path: Path) -> Iterator[Flask]:
    app: Flask = example.create_app(instance_path=str(tmp_path / "instance"))
    yield app
    close_all(app)


def post(app: Flask, body: bytes, secret: str) -> tuple[int, object]:
    response = app.test_client().post(
        PREFIX, data=body, headers={"X-Iverton-Signature": sign(body, secret)}
    )
    return response.status_code, response.get_json()


def settle(app: Flask) -> None:
    runner = receiver_of(app).runner
    assert isinstance(runner, ThreadRunner)
    assert runner.join(10)


def test_example_handlers_update_the_crm_after_the_reply(app: Flask, example: ModuleType) -> None:
    secret = example.DEV_SECRET
    won = sample_body("deal.won", id="evt_won")
    assert post(app, won, secret) == (200, {"status": "accepted"})
    assert post(app, won, secret) == (200, {"status": "duplicate"})
    for n, event_type in enumerate(["email.bounced", "email.complained", "contact.created"]):
        assert post(app, sample_body(event_type, id=f"evt_{n}"), secret)[0] == 200
    assert post(app, won, "whsec_forged")[0] == 401
    assert post(app, b"{}", secret) == (200, {"status": "quarantined"})
    settle(app)

    summary = app.test_client().get("/").get_json()
    assert summary["won_deals"] == [
        {
            "deal_id": "deal_654mno",
            "name": "Acme Ltd annual plan",
            "value": 12000,
            "currency": "GBP",
        }
    ]
    # Bounce and complaint name one address: one suppression, from whichever ran first.
    (suppressed,) = summary["suppressed"]
    assert suppressed["address"] == "john@example.com"
    assert suppressed["reason"] in ("email.bounced", "email.complained")
    assert summary["inbox"]["done"] == 4
    assert receiver_of(app).store.get("evt_won").deliveries == 2  # type: ignore[union-attr]


def test_example_takes_its_secret_from_the_environment(
    example: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # from_prefixed_env() reads JSON: the list of secrets is a JSON list.
    new, old, env = "whsec_new_4f3e2d1c0b", "whsec_old_9a8b7c6d5e", "whsec_env_1a2b3c4d5e"
    monkeypatch.setenv("FLASK_IVERTON_WEBHOOK_SECRETS", f'["{new}", "{old}"]')
    monkeypatch.setenv("FLASK_IVERTON_WEBHOOK_SECRET", env)
    app = example.create_app(instance_path=str(tmp_path / "instance"))
    try:
        body = sample_body("deal.won")
        assert post(app, body, example.DEV_SECRET)[0] == 401
        for n, secret in enumerate([env, new, old]):
            assert post(app, sample_body("deal.won", id=f"evt_s{n}"), secret)[0] == 200
    finally:
        close_all(app)


def test_example_cli_commands(app: Flask) -> None:
    store = receiver_of(app).store
    runner = app.test_cli_runner()
    result = runner.invoke(args=["iverton", "events"])
    assert (result.exit_code, result.output) == (0, "no events\n")
    from iverton_webhooks.events import parse_envelope

    body = sample_body("deal.won", id="evt_cli")
    envelope = parse_envelope(body)
    store.record(envelope.id, envelope.type, envelope.created_at, body)  # acked, never processed
    result = runner.invoke(args=["iverton", "worker", "--once"])
    assert result.exit_code == 0
    assert "done=1" in result.output
    assert store.get("evt_cli").status is Status.DONE  # type: ignore[union-attr]
    assert app.test_client().get("/").get_json()["won_deals"][0]["deal_id"] == "deal_654mno"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get_json(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


@pytest.mark.slow
def test_readme_command_runs_the_example_over_real_http(tmp_path: Path) -> None:
    readme = (EXAMPLE / "README.md").read_text()
    command = re.search(r"```sh\n(python3 -m venv .*)\n```", readme)
    assert command is not None
    assert command.group(1).endswith("&& .venv/bin/flask run")
    # The README's virtualenv is this test run's interpreter; run the copy a user would have.
    folder = tmp_path / "flask_app"
    shutil.copytree(
        EXAMPLE, folder, ignore=shutil.ignore_patterns("instance", ".venv", "__pycache__")
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    log = tmp_path / "server.log"
    with log.open("wb") as log_file:
        server = subprocess.Popen(
            [sys.executable, "-m", "flask", "run", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, log.read_text()
            try:
                get_json(f"http://127.0.0.1:{port}/")
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        sent = subprocess.run(
            [sys.executable, "-m", "flask", "iverton", "send-test", "deal.won", "--url",
             f"http://127.0.0.1:{port}/webhooks/iverton"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert sent.stdout.startswith('200 {"status":"accepted"}')
        deadline = time.monotonic() + 15
        while not get_json(f"http://127.0.0.1:{port}/")["won_deals"]:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        events = subprocess.run(
            [sys.executable, "-m", "flask", "iverton", "events"],
            cwd=folder, env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert " deal.won " in events.stdout
        assert " done " in events.stdout
        assert (folder / "instance" / "iverton_webhooks.sqlite3").exists()
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
