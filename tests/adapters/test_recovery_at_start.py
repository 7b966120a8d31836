"""Every adapter starts processing in every serving process at start-up, with no request:
events recorded while no server ran are processed within seconds of the server starting
(gunicorn with and without --preload, 2 workers; uvicorn, 4 workers), never by the gunicorn
master (it serves nothing, even when it loads the app with --preload), and never by
``migrate``/``check`` or the runserver autoreloader's parent. The policy itself, row by
row, is tests/test_placement.py."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks.inbox import open_store
from iverton_webhooks.samples import sample_body
from tests.adapters.servers import ROOT, Inbox, django_manage, environment, prepare, start

EVENTS = 20


def seed(adapter: str, db: Path, endpoint: str = "default") -> list[str]:
    """Record ``EVENTS`` pending events straight into the inbox, as a previous run that
    acknowledged them and died would have left them."""
    ids = [f"evt_left_{endpoint}_{n:02d}" for n in range(EVENTS)]
    created = datetime(2099, 1, 1, tzinfo=timezone.utc)
    if adapter != "django":
        store = open_store(f"sqlite:///{db}")
        for event_id in ids:
            body = sample_body("deal.won", id=event_id)
            store.record(event_id, "deal.won", created, body, endpoint=endpoint)
        store.close()
        return ids
    code = (
        "from datetime import datetime, timezone\n"
        "from iverton_webhooks.contrib.django.store import DjangoStore\n"
        "from iverton_webhooks.samples import sample_body\n"
        "store = DjangoStore('default')\n"
        "created = datetime(2099, 1, 1, tzinfo=timezone.utc)\n"
        f"for event_id in {ids!r}:\n"
        "    body = sample_body('deal.won', id=event_id)\n"
        f"    store.record(event_id, 'deal.won', created, body, endpoint={endpoint!r})\n"
    )
    done = django_manage(db, "shell", "-c", code)
    assert done.returncode == 0, done.stderr[-3000:]
    return ids


def runs(log: Path) -> list[tuple[int, str]]:
    """(pid, event id) of every handler run the apps logged (IVERTON_TEST_RUNS)."""
    if not log.exists():
        return []
    pairs = (line.split() for line in log.read_text().splitlines() if line.strip())
    return [(int(pid), event_id) for pid, event_id in pairs]


def statuses(adapter: str, db: Path, ids: list[str]) -> dict[str, str]:
    rows = Inbox(adapter, db).by_key()
    return {event_id: rows[event_id].status for event_id in ids if event_id in rows}


@pytest.mark.slow
@pytest.mark.parametrize(
    ("adapter", "preload"),
    [
        ("wsgi", False),
        ("wsgi", True),
        ("flask", False),
        ("flask", True),
        ("django", False),
        ("django", True),
        ("starlette", False),
    ],
    ids=lambda value: str(value),
)
def test_events_left_pending_are_processed_after_a_restart_with_no_request(
    tmp_path: Path, adapter: str, preload: bool
) -> None:
    db = tmp_path / "inbox.sqlite3"
    prepare(adapter, db)
    ids = seed(adapter, db)
    assert set(statuses(adapter, db, ids).values()) == {"pending"}
    log = tmp_path / "runs.txt"
    workers = 4 if adapter == "starlette" else 2  # uvicorn --workers 4
    server = start(adapter, db, tmp_path / "server.log", workers=workers, preload=preload, runs=log)
    try:
        deadline = time.monotonic() + 20  # the first poll runs at start: seconds, not minutes
        while time.monotonic() < deadline:
            found = statuses(adapter, db, ids)
            if set(found.values()) == {"done"} and len(found) == EVENTS:
                break
            time.sleep(0.2)
        assert set(statuses(adapter, db, ids).values()) == {"done"}, server.log_text()
        assert server.process.poll() is None
    finally:
        server.stop()
    ran = runs(log)
    # Each handler ran once, and never in the process we started: the gunicorn master
    # (or uvicorn's supervisor), which serves nothing.
    assert sorted(event_id for _, event_id in ran) == sorted(ids)
    assert server.process.pid not in {pid for pid, _ in ran}, ran


@pytest.mark.slow
@pytest.mark.parametrize("preload", [False, True], ids=["fork-then-load", "preload"])
def test_a_django_endpoint_declared_in_the_urlconf_recovers_with_no_request(
    tmp_path: Path, preload: bool
) -> None:
    db = tmp_path / "inbox.sqlite3"
    prepare("django", db)
    ids = seed("django", db, endpoint="second")  # webhook_path(..., endpoint="second")
    server = start("django", db, tmp_path / "server.log", workers=2, preload=preload)
    try:
        deadline = time.monotonic() + 20
        while set(statuses("django", db, ids).values()) != {"done"}:
            assert time.monotonic() < deadline, (statuses("django", db, ids), server.log_text())
            time.sleep(0.2)
    finally:
        server.stop()


@pytest.mark.slow
def test_django_migrate_and_check_do_not_process(tmp_path: Path) -> None:
    db = tmp_path / "inbox.sqlite3"
    prepare("django", db)
    ids = seed("django", db)
    for args in (("migrate", "--noinput"), ("check",)):
        done = django_manage(db, *args)
        assert done.returncode == 0, done.stderr[-3000:]
    time.sleep(0.5)
    assert set(statuses("django", db, ids).values()) == {"pending"}


@pytest.mark.slow
def test_django_runserver_child_processes_with_no_request(tmp_path: Path) -> None:
    """``manage.py runserver``: the reloader's child serves and recovers at start."""
    db = tmp_path / "inbox.sqlite3"
    prepare("django", db)
    ids = seed("django", db)
    from tests.adapters.servers import free_port

    port = free_port()
    log = (tmp_path / "runserver.log").open("wb")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}"),
            "--settings=tests.adapters.django_settings",
        ],
        cwd=ROOT,
        env=environment(db),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if set(statuses("django", db, ids).values()) == {"done"}:
                break
            time.sleep(0.2)
        assert set(statuses("django", db, ids).values()) == {"done"}
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
