"""``iverton-webhooks endpoints``: the registry of a real SQLite or PostgreSQL store
changed from the command line, secrets read from standard input (a pipe, or a terminal
that does not echo them) and never shown whole; and the per-endpoint commands
(``stats``, ``events``, ``worker``) for an endpoint registered in an app's store."""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from iverton_webhooks import SQLiteStore, Status
from iverton_webhooks import _operations as ops
from iverton_webhooks._cli import _parser, main
from iverton_webhooks.events import parse_envelope
from iverton_webhooks.inbox import open_store
from iverton_webhooks.inbox.base import EndpointRecord, EndpointRegistry
from iverton_webhooks.samples import sample_body
from tests.stores import drop_postgres_table, unique_name

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("iverton-webhooks")

FIRST = "whsec_first_9f8a7b6c5d4e3f2a"
SECOND = "whsec_second_0a1b2c3d4e5f6a7b"
THIRD = "whsec_third_5e6f7a8b9c0d1e2f"
SECRETS = (FIRST, SECOND, THIRD)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A store URL whose inbox does not exist yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'endpoints.sqlite3'}"
        return
    base = request.getfixturevalue("postgres_url")
    table = unique_name("cli_endpoints")
    yield f"{base}?table={table}"
    drop_postgres_table(base, table)


class Logged(logging.Handler):
    """Every record of the library's logger, formatted, at every level."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logged() -> Iterator[Logged]:
    # Not on the root logger: the command replaces the root's handlers when it starts.
    logger = logging.getLogger("iverton_webhooks")
    handler, level = Logged(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


class Run:
    """The command in this process, with ``stdin`` as its standard input (a pipe's bytes);
    keeps everything it printed or logged, to look for secrets in."""

    def __init__(
        self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, logged: Logged
    ) -> None:
        self.capsys, self.monkeypatch, self.logged = capsys, monkeypatch, logged
        self.seen: list[str] = []

    def __call__(self, *args: str, stdin: bytes = b"") -> tuple[int, str, str]:
        self.monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            code = main(list(args))  # not -q: the INFO log lines reach stderr too
        except SystemExit as done:  # argparse refusing the command line
            code = int(done.code or 0)
        out, err = self.capsys.readouterr()
        self.seen += [out, err]
        return code, out, err

    def assert_no_secret_shown(self) -> None:
        shown = "\n".join([*self.seen, *self.logged.lines])
        for secret in SECRETS:
            assert secret not in shown
            assert secret[6:] not in shown  # nor any of it past the masked prefix


@pytest.fixture
def run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, logged: Logged
) -> Iterator[Run]:
    # The command sets up the root logger for itself, at INFO, on this test's captured
    # stderr: later tests' log lines must not go to that stream once it is closed.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    runner = Run(capsys, monkeypatch, logged)
    yield runner
    root.handlers[:] = handlers
    root.setLevel(level)
    runner.assert_no_secret_shown()


def record_of(url: str, name: str) -> EndpointRecord | None:
    store = open_store(url)
    try:
        assert isinstance(store, EndpointRegistry)
        return store.get_endpoint(name)
    finally:
        store.close()


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds")


# add, list, rotate, disable, enable, remove ------------------------------------------


def test_add_reads_the_secret_from_stdin_and_list_masks_it(run: Run, url: str) -> None:
    before = time.time()
    code, out, _ = run("endpoints", "add", "acme", "--store", url, stdin=f"{FIRST}\n".encode())
    assert code == ops.OK
    assert out.splitlines() == [
        "added endpoint acme, enabled, secret whsec_…3f2a",
        "its URL is the webhook path followed by /acme (/webhooks/iverton/acme by default); "
        "running servers accept its requests within 5 s",
    ]
    found = record_of(url, "acme")
    assert found is not None
    assert ([s.secret for s in found.secrets], found.enabled) == ([FIRST], True)

    code, out, _ = run("endpoints", "list", "--store", url)
    header, row = out.splitlines()
    assert code == ops.OK
    assert header.split() == ["NAME", "STATUS", "CREATED", "(UTC)", "UPDATED", "(UTC)", "SECRETS"]
    assert row.split()[:2] == ["acme", "enabled"]
    assert row.endswith("whsec_…3f2a current")
    created = datetime.fromisoformat(row.split()[2])
    assert created.utcoffset() is not None
    assert created.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert before - 2 <= created.timestamp() <= time.time()

    code, out, _ = run("endpoints", "list", "--json", "--store", url)
    (listed,) = [json.loads(line) for line in out.splitlines()]
    assert code == ops.OK
    assert listed["name"] == "acme"
    assert listed["enabled"] is True
    assert listed["created_at"] == row.split()[2]
    assert listed["secrets"] == [{"masked": "whsec_…3f2a", "state": "current", "valid_until": None}]


def test_add_of_an_existing_name_exits_1_and_keeps_its_secret(run: Run, url: str) -> None:
    assert run("endpoints", "add", "acme", "--store", url, stdin=FIRST.encode())[0] == ops.OK
    code, out, err = run("endpoints", "add", "acme", "--store", url, stdin=SECOND.encode())
    assert (code, out) == (ops.FAILED, "")
    assert err == "error: endpoint acme is registered already (rotate changes its secret)\n"
    found = record_of(url, "acme")
    assert found is not None
    assert [s.secret for s in found.secrets] == [FIRST]


def test_rotate_keeps_the_previous_secret_for_the_grace_and_says_until_when(
    run: Run, url: str
) -> None:
    run("endpoints", "add", "acme", "--store", url, stdin=FIRST.encode())
    before = time.time()
    code, out, _ = run(
        "endpoints", "rotate", "acme", "--grace", "2h", "--store", url, stdin=SECOND.encode()
    )
    assert code == ops.OK
    found = record_of(url, "acme")
    assert found is not None
    (current, previous) = found.secrets
    assert (current.secret, current.valid_until) == (SECOND, None)
    assert previous.secret == FIRST
    assert previous.valid_until is not None
    assert before + 7200 - 1 <= previous.valid_until <= time.time() + 7200 + 1
    lines = out.splitlines()
    assert lines[0] == "rotated endpoint acme: its current secret is whsec_…6a7b"
    assert (
        lines[1] == f"the previous secret whsec_…3f2a is accepted until {iso(previous.valid_until)}"
    )
    # Shorter than the sender's retries: a late retry signed with it will be refused.
    assert lines[2].startswith("warning: the sender retries a delivery for up to 26.6 h")
    assert lines[3] == "running servers take the change within 5 s"

    code, out, _ = run("endpoints", "list", "--store", url)
    assert out.splitlines()[1].endswith(
        f"whsec_…6a7b current, whsec_…3f2a valid until {iso(previous.valid_until)}"
    )
    (listed,) = [
        json.loads(line)
        for line in run("endpoints", "list", "--json", "--store", url)[1].splitlines()
    ]
    assert [s["state"] for s in listed["secrets"]] == ["current", "valid"]
    assert listed["secrets"][1]["valid_until"] == iso(previous.valid_until)

    # A leaked secret: --grace 0 ends it at once; the earlier one keeps its own end.
    code, out, _ = run(
        "endpoints", "rotate", "acme", "--grace", "0", "--store", url, stdin=THIRD.encode()
    )
    assert code == ops.OK
    assert out.splitlines()[1:3] == [
        "the previous secret whsec_…6a7b is no longer accepted",
        f"an earlier secret whsec_…3f2a is accepted until {iso(previous.valid_until)}",
    ]
    found = record_of(url, "acme")
    assert found is not None
    assert found.valid_secrets(time.time()) == (THIRD, FIRST)


def test_rotate_by_default_keeps_the_previous_secret_past_the_senders_retries(
    run: Run, url: str
) -> None:
    run("endpoints", "add", "acme", "--store", url, stdin=FIRST.encode())
    before = time.time()
    code, out, _ = run("endpoints", "rotate", "acme", "--store", url, stdin=SECOND.encode())
    assert code == ops.OK
    assert "warning" not in out
    found = record_of(url, "acme")
    assert found is not None
    ends = found.secrets[1].valid_until
    assert ends is not None
    assert before + 27 * 3600 - 1 <= ends <= time.time() + 27 * 3600 + 1


def test_an_expired_secret_is_listed_as_expired(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "expired.sqlite3"
    long_ago = time.time() - 3600
    store = SQLiteStore(path, clock=lambda: long_ago)
    store.add_endpoint("acme", FIRST)
    store.rotate_endpoint("acme", SECOND, 60)
    store.close()
    code, out, _ = run("endpoints", "list", "--store", f"sqlite:///{path}")
    assert code == ops.OK
    assert out.splitlines()[1].endswith("whsec_…6a7b current, whsec_…3f2a expired")
    code, out, _ = run("endpoints", "list", "--json", "--store", f"sqlite:///{path}")
    assert [s["state"] for s in json.loads(out)["secrets"]] == ["current", "expired"]


def test_disable_enable_remove(run: Run, url: str) -> None:
    run("endpoints", "add", "acme", "--store", url, stdin=FIRST.encode())
    code, out, _ = run("endpoints", "disable", "acme", "--store", url)
    assert (code, out) == (
        ops.OK,
        "disabled endpoint acme: within 5 s running servers answer its requests 404, which "
        "the sender counts as failed deliveries; its stored events are kept and still "
        "processed\n",
    )
    assert record_of(url, "acme").enabled is False  # type: ignore[union-attr]
    assert run("endpoints", "disable", "acme", "--store", url)[:2] == (
        ops.OK,
        "endpoint acme is disabled already\n",
    )
    assert "acme disabled" in " ".join(run("endpoints", "list", "--store", url)[1].split())
    code, out, _ = run("endpoints", "enable", "acme", "--store", url)
    assert (code, out) == (
        ops.OK,
        "enabled endpoint acme: running servers accept its requests within 5 s\n",
    )
    assert record_of(url, "acme").enabled is True  # type: ignore[union-attr]
    code, out, _ = run("endpoints", "remove", "acme", "--store", url)
    assert code == ops.OK
    assert out.startswith("removed endpoint acme and its secrets")
    assert record_of(url, "acme") is None
    assert run("endpoints", "list", "--store", url)[:2] == (ops.OK, "no endpoints\n")
    assert run("endpoints", "list", "--json", "--store", url)[:2] == (ops.OK, "")


@pytest.mark.parametrize("action", ["rotate", "disable", "enable", "remove"])
def test_an_unknown_name_exits_1(run: Run, url: str, action: str) -> None:
    run("endpoints", "add", "acme", "--store", url, stdin=FIRST.encode())
    code, out, err = run("endpoints", action, "globex", "--store", url, stdin=SECOND.encode())
    assert (code, out, err) == (ops.FAILED, "", "error: no registered endpoint globex\n")
    assert [s.secret for s in record_of(url, "acme").secrets] == [FIRST]  # type: ignore[union-attr]


def test_remove_refuses_to_strand_events_unless_forced(run: Run, tmp_path: Path) -> None:
    path = tmp_path / "r.sqlite3"
    store = SQLiteStore(path)
    store.add_endpoint("acme", FIRST)
    body = sample_body("deal.won", id="evt_left")
    store.record("evt_left", "deal.won", parse_envelope(body).created_at, body, endpoint="acme")
    store.close()
    url = f"sqlite:///{path}"
    code, out, err = run("endpoints", "remove", "acme", "--store", url)
    assert (code, out) == (ops.FAILED, "")
    assert "still has 1 unfinished event(s)" in err
    assert "disable it now" in err
    assert record_of(url, "acme") is not None  # still registered: its event is processed
    code, out, _ = run("endpoints", "remove", "acme", "--force", "--store", url)
    assert code == ops.OK
    assert record_of(url, "acme") is None
    assert out.splitlines()[1] == (
        "warning: 1 of its events are not finished, and no worker processes them while it "
        "is not registered: add it again to have them processed"
    )


# What is refused ------------------------------------------------------------------------


def test_the_secret_cannot_be_given_as_an_argument(run: Run, url: str) -> None:
    code, _, err = run("endpoints", "add", "acme", "--secret", FIRST[:3], "--store", url)
    assert code == ops.USAGE
    assert "unrecognized arguments: --secret" in err
    code, _, err = run("endpoints", "add", "acme", "whsec_x", "--store", url)
    assert (code, "unrecognized arguments: whsec_x" in err) == (ops.USAGE, True)
    code, _, err = run("endpoints", "rotate", "acme", "--secret=x", "--store", url)
    assert code == ops.USAGE
    # No endpoints command has an option that could carry one.
    endpoints = subcommands(_parser())["endpoints"]
    actions = subcommands(endpoints)
    assert set(actions) == set(ops.ENDPOINT_ACTIONS)
    for name, sub in actions.items():
        options = [o for action in sub._actions for o in action.option_strings]
        assert [o for o in options if "secret" in o] == [], name


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    # argparse offers no public walk of a parser's actions; this test alone reads them.
    (found,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(found.choices)


REFUSED = {
    "not UTF-8": (b"whsec_\xff\xfe_9f8a7b6c5d4e\n", "is not UTF-8 text"),
    "blank": (b"   \n", "is blank"),
    "empty": (b"", "is blank"),
    "placeholder": (b"whsec_...\n", "looks like a placeholder"),
    "surrounding space": (b" whsec_9f8a7b6c5d4e3f2a\n", "leading or trailing whitespace"),
}


@pytest.mark.parametrize("given", REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_secret_exits_2_and_changes_nothing(
    run: Run, url: str, given: tuple[bytes, str]
) -> None:
    stdin, reason = given
    code, out, err = run("endpoints", "add", "acme", "--store", url, stdin=stdin)
    assert (code, out) == (ops.USAGE, "")
    assert err.startswith("error: the secret read from standard input ")
    assert reason in err
    assert err.count("\n") == 1
    assert record_of(url, "acme") is None
    run("endpoints", "add", "acme", "--store", url, stdin=FIRST.encode())
    code, _, err = run("endpoints", "rotate", "acme", "--store", url, stdin=stdin)
    assert (code, reason in err) == (ops.USAGE, True)
    assert [s.secret for s in record_of(url, "acme").secrets] == [FIRST]  # type: ignore[union-attr]


def test_a_line_ending_and_a_bom_are_not_part_of_the_secret(run: Run, url: str) -> None:
    stdin = b"\xef\xbb\xbf" + FIRST.encode() + b"\r\nsecond line\n"
    assert run("endpoints", "add", "acme", "--store", url, stdin=stdin)[0] == ops.OK
    assert [s.secret for s in record_of(url, "acme").secrets] == [FIRST]  # type: ignore[union-attr]


@pytest.mark.parametrize("name", ["bad/name", ".acme", "acme eu", "a" * 101, "caf\u00e9"])
def test_a_name_no_url_can_carry_exits_2(run: Run, url: str, name: str) -> None:
    code, out, err = run("endpoints", "add", name, "--store", url, stdin=FIRST.encode())
    assert (code, out) == (ops.USAGE, "")
    assert "cannot be used: it is part of the URL" in err


@pytest.mark.parametrize("grace", ["abc", "-5", "5y", "400d", "1e3"])
def test_a_bad_grace_exits_2_before_anything_changes(run: Run, url: str, grace: str) -> None:
    run("endpoints", "add", "acme", "--store", url, stdin=FIRST.encode())
    code, _, err = run(
        "endpoints", "rotate", "acme", f"--grace={grace}", "--store", url, stdin=SECOND.encode()
    )
    assert code == ops.USAGE
    assert err.startswith(f"error: --grace {grace}")
    assert [s.secret for s in record_of(url, "acme").secrets] == [FIRST]  # type: ignore[union-attr]


def test_grace_units() -> None:
    assert [ops.grace_seconds(g) for g in ("0", "90", "1.5", "30m", "27h", "2d", "45S")] == [
        0,
        90,
        1.5,
        1800,
        97200,
        172800,
        45,
    ]
    assert ops.grace_seconds(None) == 27 * 3600


def test_a_missing_inbox_is_refused_except_by_add(run: Run, tmp_path: Path) -> None:
    missing = tmp_path / "typo" / "webhooks.sqlite3"
    for action in (["list"], ["disable", "acme"], ["remove", "acme"]):
        code, _, err = run("endpoints", *action, "--store", f"sqlite:///{missing}")
        assert (code, "does not exist" in err) == (ops.USAGE, True)
        assert not missing.parent.exists()


# --app: the app's own store -------------------------------------------------------------

APP = """
from iverton_webhooks import Receiver, Router

router = Router()

@router.on("deal.won")
def ok(event):
    pass

receiver = Receiver(
    secret="whsec_app_0123456789abcdef",
    router=router,
    store={url!r},
    runner="inline",
    endpoint_registry={serving},
)
"""

NO_REGISTRY = """
from iverton_webhooks import Processor
from tests.test_store_parts import CoreOnly

processor = Processor(CoreOnly())
"""


def write_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str) -> str:
    name = unique_name("app")
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def seed(url: str, endpoint: str, *ids: str) -> None:
    store = open_store(url)
    for event_id in ids:
        body = sample_body("deal.won", id=event_id)
        created_at = parse_envelope(body).created_at
        store.record(event_id, "deal.won", created_at, body, endpoint=endpoint)
    store.close()


def test_per_endpoint_commands_find_an_endpoint_registered_in_the_apps_store(
    run: Run, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = write_app(tmp_path, monkeypatch, APP.format(url=url, serving=True))
    code, out, _ = run("endpoints", "add", "acme", "--app", app, stdin=FIRST.encode())
    assert code == ops.OK
    assert "warning" not in out
    run("endpoints", "add", "globex", "--app", app, stdin=SECOND.encode())
    assert record_of(url, "acme") is not None
    seed(url, "acme", "evt_a1", "evt_a2")
    seed(url, "globex", "evt_g1")
    seed(url, "default", "evt_d1")

    code, out, _ = run("-q", "stats", "--app", app, "--endpoint", "acme")
    assert code == ops.OK
    assert out.splitlines()[0] == "endpoint acme: 2 event(s)"
    code, out, _ = run("-q", "events", "--app", app, "--endpoint", "acme", "--json")
    assert sorted(json.loads(line)["id"] for line in out.splitlines()) == ["evt_a1", "evt_a2"]

    # The worker for one registered endpoint processes its events only.
    code, out, _ = run("-q", "worker", "--once", "--app", app, "--endpoint", "acme")
    assert (code, out) == (ops.OK, "processed 2 event(s) (done=2)\n")
    store = open_store(url)
    try:
        assert store.get("evt_a1", endpoint="acme").status is Status.DONE  # type: ignore[union-attr]
        assert store.get("evt_g1", endpoint="globex").status is Status.PENDING  # type: ignore[union-attr]
        assert store.get("evt_d1").status is Status.PENDING  # type: ignore[union-attr]
    finally:
        store.close()

    # A name neither the app's nor registered: the error it always was.
    code, _, err = run("-q", "stats", "--app", app, "--endpoint", "initech")
    assert code == ops.USAGE
    assert err == "error: --app has receivers for endpoints 'default': pass --endpoint NAME\n"
    # The app's store is the one changed: another beside it is a mistake.
    code, _, err = run("endpoints", "list", "--app", app, "--store", url)
    assert (code, "drop --store" in err) == (ops.USAGE, True)


def test_an_app_that_does_not_serve_the_registry(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'off.sqlite3'}"
    app = write_app(tmp_path, monkeypatch, APP.format(url=url, serving=False))
    code, out, _ = run("endpoints", "add", "acme", "--app", app, stdin=FIRST.encode())
    assert code == ops.OK
    assert out.splitlines()[-1].startswith(
        "warning: this app's receiver does not serve registered endpoints"
    )
    seed(url, "acme", "evt_a1")
    # Its receiver does not serve acme: no processor for it is made up.
    code, _, err = run("-q", "stats", "--app", app, "--endpoint", "acme")
    assert (code, "pass --endpoint NAME" in err) == (ops.USAGE, True)


def test_a_store_without_a_registry_exits_2_saying_so(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = write_app(tmp_path, monkeypatch, NO_REGISTRY)
    for action in (["list"], ["add", "acme"]):
        code, out, err = run("endpoints", *action, "--app", app, stdin=FIRST.encode())
        assert (code, out) == (ops.USAGE, "")
        assert err == (
            "error: CoreOnly keeps no endpoints (it does not implement EndpointRegistry): "
            "use a built-in store\n"
        )


# Real processes: a pipe, and a terminal ------------------------------------------------


def test_a_secret_piped_into_the_installed_command(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("IVERTON_WEBHOOK_STORE", None)
    url = f"sqlite:///{tmp_path / 'piped.sqlite3'}"
    done = subprocess.run(
        [str(SCRIPT), "endpoints", "add", "acme", "--store", url],
        input=f"{FIRST}\n".encode(),
        capture_output=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert FIRST.encode() not in done.stdout + done.stderr
    assert [s.secret for s in record_of(url, "acme").secrets] == [FIRST]  # type: ignore[union-attr]


# The child makes the terminal its controlling one (as a login shell has it), so that
# getpass opens it as /dev/tty, then becomes the command.
ON_A_TERMINAL = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.argv[1], sys.argv[1:])"
)


@pytest.mark.skipif(sys.platform != "linux", reason="a pseudo-terminal as on Linux")
def test_on_a_terminal_the_secret_is_prompted_for_and_not_echoed(tmp_path: Path) -> None:
    import pty

    url = f"sqlite:///{tmp_path / 'typed.sqlite3'}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("IVERTON_WEBHOOK_STORE", None)
    main_fd, child_fd = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", ON_A_TERMINAL, str(SCRIPT), "endpoints", "add", "acme",
         "--store", url],
        stdin=child_fd, stdout=child_fd, stderr=child_fd,
        start_new_session=True, cwd=tmp_path, env=env,
    )  # fmt: skip
    os.close(child_fd)
    seen = b""

    def read_until(wanted: bytes | None) -> None:
        nonlocal seen
        deadline = time.monotonic() + 60
        while wanted is None or wanted not in seen:
            assert time.monotonic() < deadline, seen
            ready, _, _ = select.select([main_fd], [], [], 1)
            if not ready:
                continue
            try:
                chunk = os.read(main_fd, 4096)
            except OSError:  # the command ended and closed the terminal
                chunk = b""
            if not chunk:
                return
            seen += chunk

    try:
        read_until(ops.SECRET_PROMPT.encode())
        os.write(main_fd, f"{FIRST}\n".encode())
        read_until(None)
        assert process.wait(60) == 0, seen
    finally:
        os.close(main_fd)
        if process.poll() is None:
            process.kill()
            process.wait()
    assert b"added endpoint acme" in seen
    assert FIRST.encode() not in seen  # the terminal did not echo it
    assert b"Warning" not in seen  # getpass had the terminal, not a fallback that echoes
    assert [s.secret for s in record_of(url, "acme").secrets] == [FIRST]  # type: ignore[union-attr]
