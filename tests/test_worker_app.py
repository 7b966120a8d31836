"""``iverton-webhooks worker --app`` finds the app's own receiver (Starlette middleware,
FastAPI dependency, Django settings module), and refuses with exit 2, saying what it
looked for, when it finds none, creating no inbox."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import Status
from iverton_webhooks.inbox import open_store
from iverton_webhooks.inbox.sqlite import SQLiteStore
from iverton_webhooks.samples import sample_body

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("iverton-webhooks")

HANDLERS = """
from iverton_webhooks import Router
router = Router()

@router.on("deal.won")
def won(event):
    with open("ran.txt", "a") as out:
        out.write(event.id + "\\n")
"""

STARLETTE = """
from starlette.applications import Starlette
from starlette.middleware import Middleware
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
from handlers import router

app = Starlette(middleware=[Middleware(
    IvertonWebhookMiddleware, secret="whsec_w_0123456789", store="sqlite:///inbox.db",
    router=router,
)])
"""

FASTAPI = """
from fastapi import Depends, FastAPI
from iverton_webhooks import Receiver
from iverton_webhooks.contrib.fastapi import Delivery, IvertonWebhook
from handlers import router

webhook = IvertonWebhook(
    Receiver(secret="whsec_w_0123456789", store="sqlite:///inbox.db", router=router)
)
app = FastAPI()

@app.post("/webhooks/iverton")
async def receive(delivery: Delivery = Depends(webhook)):
    return delivery.response()
"""

NOTHING = """
from starlette.applications import Starlette
app = Starlette()
"""


def cli(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    drop = ("IVERTON_WEBHOOK_STORE", "DJANGO_SETTINGS_MODULE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(cwd)])
    return subprocess.run(
        [str(SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def seed(path: Path, *ids: str) -> None:
    store = open_store(f"sqlite:///{path}")
    for event_id in ids:
        body = sample_body("deal.won", id=event_id)
        store.record(event_id, "deal.won", datetime(2099, 1, 1, tzinfo=timezone.utc), body)
    store.close()


@pytest.mark.slow
@pytest.mark.parametrize(("source", "spec"), [(STARLETTE, "app"), (FASTAPI, "app:app")])
def test_worker_finds_the_receiver_of_a_starlette_or_fastapi_app(
    tmp_path: Path, source: str, spec: str
) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS)
    (tmp_path / "app.py").write_text(source)
    seed(tmp_path / "inbox.db", "evt_s1", "evt_s2")
    done = cli("worker", "--once", "--app", spec, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "processed 2 event(s) (done=2)" in done.stdout
    assert sorted((tmp_path / "ran.txt").read_text().split()) == ["evt_s1", "evt_s2"]
    assert SQLiteStore(tmp_path / "inbox.db").stats() == {Status.DONE: 2}
    assert not (tmp_path / "webhooks.sqlite3").exists()


@pytest.mark.slow
def test_worker_finds_a_django_projects_receiver_from_its_settings_module(
    tmp_path: Path,
) -> None:
    from tests.adapters.servers import DJANGO_TABLE, prepare
    from tests.adapters.test_recovery_at_start import seed as seed_django

    db = tmp_path / "inbox.sqlite3"
    prepare("django", db)
    ids = seed_django("django", db)
    env_db = {"IVERTON_TEST_DB": str(db)}
    done = cli("worker", "--once", "--app", "tests.adapters.django_settings", cwd=ROOT, **env_db)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"processed {len(ids)} event(s)" in done.stdout
    with sqlite3.connect(db) as conn:
        found = conn.execute(f"SELECT DISTINCT status FROM {DJANGO_TABLE}").fetchall()
    assert found == [("done",)]
    assert not (ROOT / "webhooks.sqlite3").exists()


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["app", "app:app"])
def test_worker_refuses_an_app_without_a_receiver_and_creates_no_inbox(
    tmp_path: Path, spec: str
) -> None:
    (tmp_path / "app.py").write_text(NOTHING)
    for command in ("worker", "stats", "events"):
        once = ["--once"] if command == "worker" else []
        done = cli(command, *once, "--app", spec, cwd=tmp_path)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "found no webhook receiver" in done.stderr
        assert "Starlette or FastAPI app with IvertonWebhookMiddleware" in done.stderr
        assert "a Flask app with IvertonWebhooks" in done.stderr
        assert "a Django settings module" in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".db", ".sqlite3")) == []
