"""``iverton-webhooks``: the inbox operations (events, stats, replay, worker, prune) over
the user's own processor, missing inboxes refused, escaped output, one-line errors."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from iverton_webhooks import Router, SQLiteStore, Status
from iverton_webhooks._cli import PrintableFormatter, main
from iverton_webhooks._processor import Processor
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.samples import sample_body
from tests.stores import unique_name

ROOT = Path(__file__).resolve().parent.parent

# Signed ids a hostile sender could choose: clear screen, clipboard write (OSC 52), a
# hyperlink (OSC 8), and a forged line.
HOSTILE_IDS = [
    "evt_cls\x1b[2J",
    "evt_clip\x1b]52;c;cm0gLXJmIH4=\x07",
    "evt_link\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\",
    "evt_crlf\r\nFAKE 2026-01-01 event done",
    "evt_c1\x9b31m\x7f",
]
RAW_CONTROLS = ["\x1b", "\x07", "\r", "\x9b", "\x7f"]


#: The installed console script: unlike ``python -m``, it does not put the current
#: directory on sys.path by itself, as for a user who runs ``iverton-webhooks``.
SCRIPT = Path(sys.executable).with_name("iverton-webhooks")


def cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command in a fresh interpreter: its own default_router and sys.path."""
    assert SCRIPT.exists(), "pip install -e . installs the iverton-webhooks script"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("IVERTON_WEBHOOK_STORE", None)
    return subprocess.run(
        [str(SCRIPT), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def seed(
    path: Path,
    *ids: str,
    event_type: str = "deal.won",
    status: Status = Status.PENDING,
    error: str | None = None,
    received_hours_ago: float = 0,
) -> str:
    store = SQLiteStore(path, clock=lambda: time.time() - received_hours_ago * 3600)
    for event_id in ids:
        body = sample_body(event_type, id=event_id)
        created_at = parse_envelope(sample_body(event_type)).created_at
        store.record(event_id, event_type, created_at, body, status=status, error=error)
    store.close()
    return f"sqlite:///{path}"


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["-q", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# demo, sign, send-test -------------------------------------------------------------


@pytest.mark.slow
def test_demo_runs_over_real_http_and_exits_zero() -> None:
    done = cli("demo", cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "all outcomes as expected" in done.stdout
    assert "forged signature                  401" in done.stdout


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
        [sys.executable, "-m", "iverton_webhooks._cli", "sign", "--secret", "s"],
        input=b"abc",
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert piped.stdout.decode().startswith("sha256=")


def test_sign_a_missing_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = cli("sign", "missing.json", "--secret", "s", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "error: cannot read missing.json: No such file or directory"
    ]
    done = cli("sign", "missing.json", cwd=tmp_path)  # no secret either
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)


def test_send_test_to_a_server_that_is_down_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/webhooks"
    done = cli("send-test", "deal.won", "--url", url, "--secret", "whsec_x", cwd=tmp_path)
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"error: could not reach {url}: ")
    assert "Traceback" not in done.stderr
    done = cli("send-test", "deal.wonn", "--url", url, "--secret", "whsec_x", cwd=tmp_path)
    assert (done.returncode, done.stderr.count("\n")) == (2, 1)


# events and stats -----------------------------------------------------------------------


def test_events_lists_text_and_json_with_filters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = seed(tmp_path / "cli.db", "evt_c1", "evt_c2")
    code, out, _ = run(capsys, "events", "--store", url, "--json")
    assert code == 0
    listed = [json.loads(line) for line in out.splitlines()]
    assert [(e["id"], e["status"], e["endpoint"]) for e in listed] == [
        ("evt_c2", "pending", "default"),
        ("evt_c1", "pending", "default"),
    ]
    code, out, _ = run(capsys, "events", "--store", url, "--limit", "1")
    assert (code, [line.split()[0] for line in out.splitlines()]) == (0, ["ID", "evt_c2"])
    assert run(capsys, "events", "--store", url, "--status", "done") == (0, "no events\n", "")
    assert run(capsys, "events", "--store", url, "--type", "contact.created")[1] == "no events\n"
    assert run(capsys, "events", "--store", url, "--status", "done", "--json")[1] == ""
    # Another endpoint's events are not this one's.
    assert run(capsys, "events", "--store", url, "--endpoint", "eu")[1] == "no events\n"


def test_quarantined_and_unhandled_events_are_listed_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "q.db"
    url = seed(path, "evt_ok")
    seed(path, "evt_other", event_type="contact.created")
    seed(path, "sha256:abc", status=Status.QUARANTINED, error="body is not JSON")
    router = Router()
    router.add(lambda event: None, "deal.won", name="ok")
    store = SQLiteStore(path)
    Processor(store, router).recover()
    store.close()

    code, out, _ = run(capsys, "events", "--store", url)
    assert code == 0
    header, *lines = out.splitlines()
    assert header.split()[:3] == ["ID", "TYPE", "STATUS"]
    rows = {line.split()[0]: line for line in lines}
    assert rows["sha256:abc"].split()[2] == "quarantined"
    assert rows["sha256:abc"].endswith("body is not JSON")
    assert rows["evt_other"].split()[2] == "unhandled"
    assert rows["evt_ok"].split()[2] == "done"
    # One column width for every status: the received column lines up under its header.
    assert len({line.index(" 20") for line in lines}) == 1
    assert {line.index(" 20") for line in lines} == {header.index(" RECEIVED")}
    assert (
        run(capsys, "events", "--store", url, "--status", "quarantined")[1]
        .splitlines()[1]
        .startswith("sha256:abc")
    )

    code, out, _ = run(capsys, "stats", "--store", url)
    assert code == 0
    counts = dict(line.split() for line in out.splitlines()[1:8])
    assert out.splitlines()[0] == "endpoint default: 3 event(s)"
    assert counts == {
        "pending": "0",
        "processing": "0",
        "done": "1",
        "unhandled": "1",
        "failed": "0",
        "dead": "0",
        "quarantined": "1",
    }
    code, out, _ = run(capsys, "stats", "--store", url, "--json")
    assert json.loads(out) == {
        "endpoint": "default",
        **{k: int(v) for k, v in counts.items()},
        "oldest_due_age": None,
        "problems": [],
    }


# A missing inbox is refused, never created ---------------------------------------------


@pytest.mark.parametrize("command", [["events"], ["stats"], ["replay", "--dead"], ["prune"]])
def test_read_commands_refuse_a_missing_sqlite_inbox_and_do_not_create_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    target = tmp_path / "typo" / "webhooks.sqlite3"
    code, _, err = run(capsys, *command, "--store", f"sqlite:///{target}")
    assert code == 2
    assert str(target) in err
    assert "does not exist" in err
    assert not target.parent.exists()
    not_an_inbox = tmp_path / "other.db"
    import sqlite3

    with sqlite3.connect(not_an_inbox) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    code, _, err = run(capsys, *command, "--store", f"sqlite:///{not_an_inbox}")
    assert code == 2
    assert "no iverton_events table" in err


@pytest.mark.postgres
def test_read_commands_refuse_a_missing_postgres_table(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import psycopg

    table = unique_name("cli_missing")
    code, _, err = run(capsys, "events", "--store", f"{postgres_url}?table={table}")
    assert code == 2
    assert f"no table {table}" in err
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("SELECT to_regclass(%s)", (table,)).fetchone() == (None,)


@pytest.mark.redis
def test_read_commands_refuse_a_redis_prefix_with_no_inbox(
    redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = unique_name("climissing")
    code, _, err = run(capsys, "stats", "--store", f"{redis_url}?prefix={prefix}")
    assert code == 2
    assert f"no keys under {{{prefix}}}" in err


# worker: the user's own processor ------------------------------------------------------

APP_MODULE = """
import pathlib
from datetime import timedelta
from iverton_webhooks import Receiver, RetryPolicy, Router

HERE = pathlib.Path(__file__).parent
router = Router()

@router.on("deal.won")
def write(event):
    with open(HERE / "ran.txt", "a") as f:
        f.write(event.id + "\\n")

@router.on("contact.created")
def fail(event):
    raise RuntimeError("crm down \\x1b[2J")

receiver = Receiver(
    secret="whsec_app_0123456789",
    router=router,
    store=f"sqlite:///{HERE / 'app.db'}",
    runner="inline",
    retry=RetryPolicy(max_attempts=1),
    max_age=timedelta(days=3),
)
"""


def test_worker_refuses_to_run_without_handlers_and_leaves_events_pending(
    tmp_path: Path,
) -> None:
    url = seed(tmp_path / "w.db", "evt_w1")
    done = cli("worker", "--once", "--store", url, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == "error: no handlers: pass --app MODULE"
    assert SQLiteStore(tmp_path / "w.db").get("evt_w1").status is Status.PENDING  # type: ignore[union-attr]


def test_worker_app_from_the_modules_folder_runs_the_receivers_own_processor(
    tmp_path: Path,
) -> None:
    (tmp_path / "app.py").write_text(APP_MODULE)
    seed(tmp_path / "app.db", "evt_a1", "evt_a2")
    seed(tmp_path / "app.db", "evt_a3", event_type="contact.created")
    done = cli("worker", "--once", "--app", "app", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert sorted((tmp_path / "ran.txt").read_text().split()) == ["evt_a1", "evt_a2"]
    assert "processed 3 event(s) (done=2, dead=1)" in done.stdout.replace(
        "(dead=1, done=2)", "(done=2, dead=1)"
    )
    store = SQLiteStore(tmp_path / "app.db")
    # The receiver's RetryPolicy(max_attempts=1), not a fresh default: dead at once.
    failed = store.get("evt_a3")
    assert failed is not None
    assert failed.status is Status.DEAD
    assert "\x1b[2J" in (failed.last_error or "")
    # Its error reaches the terminal escaped (log lines and the listing).
    assert "\x1b" not in done.stdout + done.stderr
    listing = cli("events", "--app", "app", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "crm down \\x1b[2J" in listing.stdout
    assert "\x1b" not in listing.stdout
    # A receiver's store is its own: --store beside it is a mistake.
    clash = cli("events", "--app", "app", "--store", "sqlite:///x.db", cwd=tmp_path)
    assert (clash.returncode, "drop --store" in clash.stderr) == (2, True)
    missing = cli("worker", "--once", "--app", "no_such_app", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stderr.startswith("error: --app no_such_app: cannot import no_such_app")


HANDLERS_ONLY = """
from iverton_webhooks import on

@on("deal.won")
def count(event):
    pass
"""


def test_worker_once_drains_everything_due_not_just_one_batch(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS_ONLY)
    path = tmp_path / "many.db"
    url = seed(path, *(f"evt_{n:04}" for n in range(1201)))
    done = cli("-q", "worker", "--once", "--store", url, "--app", "handlers", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert SQLiteStore(path).stats() == {Status.DONE: 1201}
    assert "processed 1201 event(s) (done=1201)" in done.stdout
    small = cli(
        "worker", "--once", "--store", url, "--app", "handlers", "--batch", "0", cwd=tmp_path
    )
    assert small.returncode == 2


def test_worker_loop_sleeps_interval_then_stops_cleanly(tmp_path: Path) -> None:
    (tmp_path / "handlers.py").write_text(HANDLERS_ONLY)
    url = seed(tmp_path / "loop.db", "evt_l1")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen(
        [str(SCRIPT), "-q", "worker", "--store", url,
         "--app", "handlers", "--interval", "0.1"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        store = SQLiteStore(tmp_path / "loop.db")
        while store.get("evt_l1").status is not Status.DONE:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.1)
        seed(tmp_path / "loop.db", "evt_l2")  # arrives while the worker idles
        while store.get("evt_l2").status is not Status.DONE:  # type: ignore[union-attr]
            assert time.monotonic() < deadline
            time.sleep(0.1)
    finally:
        process.send_signal(2)  # SIGINT, as Ctrl-C
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert out.splitlines()[-1] == "stopped"


# replay ----------------------------------------------------------------------------------


def test_replay_requeues_and_names_what_it_could_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "r.db"
    url = seed(path, "evt_r1", "evt_r2")
    router = Router()
    router.add(lambda event: None, "deal.won", name="ok")
    store = SQLiteStore(path)
    Processor(store, router).recover()

    code, out, err = run(capsys, "replay", "--store", url, "evt_r1", "evt_nope")
    assert code == 1
    assert "evt_r1: replayed" in out
    assert err.strip() == "error: replayed 1 of 2 event(s); not replayed: evt_nope (no such event)"
    # Only requeued: the running worker processes it, not this command.
    assert store.get("evt_r1").status is Status.PENDING  # type: ignore[union-attr]
    code, _, err = run(capsys, "replay", "--store", url, "evt_r1")
    assert (code, "evt_r1 (it is pending)" in err) == (1, True)

    # Nothing to do is not a failure: exit 0, saying so.
    assert run(capsys, "replay", "--store", url, "--dead") == (
        0,
        "no dead events: nothing to replay\n",
        "",
    )
    code, _, err = run(capsys, "replay", "--store", url)
    assert (code, err) == (2, "error: name event ids, or pass --dead or --unhandled\n")
    code, _, err = run(capsys, "replay", "--store", url, "--dead", "evt_r2")
    assert code == 2


def test_replay_dead_requeues_each_dead_event_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from iverton_webhooks import RetryPolicy

    path = tmp_path / "dead.db"
    url = seed(path, "evt_d1", "evt_d2")
    router = Router()

    @router.on("deal.won")
    def broken(event: object) -> None:
        raise RuntimeError("down")

    store = SQLiteStore(path)
    Processor(store, router, retry=RetryPolicy(max_attempts=1)).recover()
    assert store.stats() == {Status.DEAD: 2}
    code, out, _ = run(capsys, "replay", "--store", url, "--dead", "--rerun-all")
    assert code == 0
    assert out == "replayed 2 dead event(s); the worker will process them\n"
    assert store.stats() == {Status.PENDING: 2}


# prune -------------------------------------------------------------------------------------


def test_prune_keeps_recent_events_and_enforces_retention_and_max_age(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = seed(tmp_path / "p.db", "evt_p1")
    assert run(capsys, "prune", "--store", url) == (0, "deleted 0 event(s)\n", "")
    code, _, err = run(capsys, "prune", "--store", url, "--older-than-hours", "1")
    assert code == 2
    assert err.startswith("error: prune refused: retention 1:00:00 is shorter than")

    # The app's receiver has max_age=3d: a 49-hour span passes the retry-span floor but
    # would forget ids that max_age still accepts (a captured request could replay).
    (tmp_path / "app.py").write_text(APP_MODULE)
    seed(tmp_path / "app.db", "evt_old", received_hours_ago=50)
    done = cli("worker", "--once", "--app", "app", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    done = cli("prune", "--app", "app", "--older-than-hours", "49", cwd=tmp_path)
    assert done.returncode == 2
    assert "max_age" in done.stderr
    assert done.stderr.count("\n") == 1
    assert SQLiteStore(tmp_path / "app.db").count() == 1
    assert cli("prune", "--app", "app", "--older-than-hours", "96", cwd=tmp_path).returncode == 0


# escaping ----------------------------------------------------------------------------------


def test_hostile_ids_types_and_errors_are_escaped_but_json_stays_exact(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "hostile.db"
    url = seed(path, *HOSTILE_IDS, status=Status.QUARANTINED, error="bad\x1b]52;c;eA==\x07")
    code, out, _ = run(capsys, "events", "--store", url)
    assert code == 0
    for control in RAW_CONTROLS:
        assert control not in out
    assert len(out.splitlines()) == 1 + len(HOSTILE_IDS)  # the header; no forged line
    assert "evt_cls\\x1b[2J" in out
    assert "evt_crlf\\r\\nFAKE" in out
    assert "bad\\x1b]52;c;eA==\\x07" in out

    code, out, _ = run(capsys, "events", "--store", url, "--json")
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == sorted(HOSTILE_IDS)

    code, out, err = run(capsys, "replay", "--store", url, *HOSTILE_IDS, "evt_\x1b[2Jnope")
    assert code == 1
    for control in RAW_CONTROLS:
        assert control not in out + err
    assert "evt_\\x1b[2Jnope (no such event)" in err
    assert len(out.splitlines()) == len(HOSTILE_IDS)


def test_log_lines_are_escaped() -> None:
    record = logging.LogRecord(
        "iverton_webhooks", logging.INFO, __file__, 1, "event %s: %s", None, None
    )
    record.args = (HOSTILE_IDS[3], "done\x1b[2J")
    line = PrintableFormatter("%(levelname)s %(message)s").format(record)
    assert line == "INFO event evt_crlf\\r\\nFAKE 2026-01-01 event done: done\\x1b[2J"
