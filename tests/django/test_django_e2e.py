"""The example project served by a real server process (gunicorn, 2 workers) on
127.0.0.1: events over HTTP, concurrent duplicates of one id, each handler run once."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "example_projects" / "django_project"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def example_env(db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        IVERTON_WEBHOOK_SECRET=SECRET,
        EXAMPLE_DB=str(db),
        DJANGO_DEBUG="0",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    return env


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def post(url: str, body: bytes, secret: str = SECRET) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, body, signed_headers(body, secret), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    pytest.importorskip("gunicorn")
    db, log = tmp_path / "example.sqlite3", tmp_path / "server.log"
    env = example_env(db)
    migrated = manage(env, "migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}"),
                *("--chdir", str(PROJECT), "project.wsgi:application"),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}/webhooks/iverton/"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            try:
                urllib.request.urlopen(url, timeout=2)
            except urllib.error.HTTPError:
                break  # 405 to a GET: it is up
            except OSError:
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.1)
        yield url, db, log
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def statuses(db: Path) -> dict[str, str]:
    with sqlite3.connect(db, timeout=10) as conn:
        rows = conn.execute("SELECT event_id, status FROM iverton_webhooks_webhookevent")
        return dict(rows.fetchall())


def test_concurrent_duplicates_over_http_run_each_handler_once(
    server: tuple[str, Path, Path],
) -> None:
    url, db, log = server
    won = sample_body("deal.won", id="evt_e2e_won")
    others = [sample_body("contact.created", id=f"evt_e2e_c{n}") for n in range(5)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = list(pool.map(lambda body: post(url, body), [won] * 12 + others))
    won_answers = sorted(a[1]["status"] for a in answers[:12])
    assert {a[0] for a in answers} == {200}
    assert won_answers == ["accepted"] + ["duplicate"] * 11
    assert post(url, won, secret="whsec_forged_000000000000")[0] == 401
    # The sender's URL form has no trailing slash: no redirect, the same endpoint.
    assert post(url.rstrip("/"), won) == (200, {"status": "duplicate"})
    # Signed but unreadable: acknowledged and kept aside, never a 4xx (issue 11 item 1).
    assert post(url, sample_body("deal.won", id="evt_e2e_soon", created_at="soon")) == (
        200,
        {"status": "quarantined"},
    )
    assert statuses(db)["evt_e2e_soon"] == "quarantined"

    deadline = time.monotonic() + 20
    while {s for k, s in statuses(db).items() if k != "evt_e2e_soon"} != {"done"} or len(
        statuses(db)
    ) < 7:
        assert time.monotonic() < deadline, statuses(db)
        time.sleep(0.1)
    with sqlite3.connect(db) as conn:
        deliveries, attempts, outcomes = conn.execute(
            "SELECT deliveries, attempts, outcomes FROM iverton_webhooks_webhookevent "
            "WHERE event_id = 'evt_e2e_won'"
        ).fetchone()
    assert (deliveries, attempts) == (13, 1)
    assert sorted(json.loads(outcomes)) == [
        "deals.iverton_handlers.audit (webhook_received)",
        "deals.iverton_handlers.celebrate",
    ]
    text = log.read_text()
    assert text.count("deal deal_654mno won (event evt_e2e_won)") == 1
    assert text.count("audit: deal.won evt_e2e_won") == 1
    assert text.count("contact con_456def is john@example.com") == 5


def test_the_readme_commands_migrate_runserver_and_send_test(tmp_path: Path) -> None:
    env = example_env(tmp_path / "db.sqlite3")
    assert manage(env, "migrate", "--noinput").returncode == 0
    port = free_port()
    log = tmp_path / "runserver.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=PROJECT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/webhooks/iverton/"
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, log.read_text()
            sent = manage(env, "iverton_webhooks_send_test", "deal.won", "--url", url)
            if sent.returncode == 0:
                break
            assert "could not reach" in sent.stderr, sent.stderr
            assert time.monotonic() < deadline, "runserver did not start"
            time.sleep(0.2)
        assert '200 {"status":"accepted"}' in sent.stdout
        deadline = time.monotonic() + 10
        while "deal deal_654mno won" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(15)
    checked = manage(env, "check")
    assert checked.returncode == 0, checked.stderr
    assert "no issues" in checked.stdout
    env["IVERTON_WEBHOOK_SECRET"] = "whsec_..."
    warned = manage(env, "check")
    assert "iverton_webhooks.E002" in warned.stderr + warned.stdout
