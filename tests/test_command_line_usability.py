"""``iverton-webhooks`` for a person at a terminal: ``--version``, help on every option,
``events`` with a header and times, ``send-test`` short and explaining redirects,
"nothing to do" exits 0, and ``replay --unhandled`` once a handler exists."""

from __future__ import annotations

import argparse
import importlib.metadata
import threading
from collections.abc import Iterator
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iverton_webhooks import Router, SQLiteStore, Status
from iverton_webhooks import _operations as ops
from iverton_webhooks._cli import _parser, main
from iverton_webhooks._processor import Processor
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as done:  # argparse's --version and --help
        code = int(done.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_version_is_the_installed_package(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--version")
    assert (code, out) == (
        0,
        f"iverton-webhooks {importlib.metadata.version('iverton-webhooks')}\n",
    )


def every_option(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.Action]]:
    # argparse offers no public walk of a parser's actions; this test alone reads them.
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                for where, found in every_option(sub):
                    yield f"{name} {where}", found
        else:
            yield "/".join(action.option_strings) or action.dest, action


def test_every_option_of_every_command_has_help() -> None:
    missing = [where for where, action in every_option(_parser()) if not action.help]
    assert missing == []
    assert {where.split()[0] for where, _ in every_option(_parser()) if " " in where} >= {
        "events",
        "replay",
        "send-test",
        "sign",
        "worker",
        "prune",
        "stats",
        "endpoints",
    }


def seed(path: Path, *ids: str, event_type: str = "deal.won") -> str:
    store = SQLiteStore(path)
    for event_id in ids:
        body = sample_body(event_type, id=event_id)
        store.record(event_id, event_type, datetime.now(timezone.utc), body)
    store.close()
    return f"sqlite:///{path}"


def test_events_has_a_header_and_the_received_and_next_attempt_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = seed(tmp_path / "t.db", "evt_t1")
    code, out, _ = run(capsys, "events", "--store", url)
    header, row = out.splitlines()
    assert code == 0
    assert header == ops.EVENTS_HEADER
    for title in ("ID", "TYPE", "STATUS", "RECEIVED (UTC)", "NEXT ATTEMPT (UTC)", "ATTEMPTS"):
        assert title in header
    received = row[header.index("RECEIVED") :].split()[0]
    when = datetime.fromisoformat(received)
    assert when.utcoffset() is not None
    assert when.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert abs((datetime.now(timezone.utc) - when).total_seconds()) < 60
    assert row[header.index("NEXT ATTEMPT") :].split()[0] in ("-", received)


def test_nothing_to_do_exits_0_and_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = seed(tmp_path / "n.db", "evt_n1")
    assert run(capsys, "replay", "--store", url, "--dead") == (
        0,
        "no dead events: nothing to replay\n",
        "",
    )
    assert run(capsys, "replay", "--store", url, "--unhandled") == (
        0,
        "no unhandled events: nothing to replay\n",
        "",
    )
    assert run(capsys, "events", "--store", url, "--status", "dead") == (0, "no events\n", "")
    # Work asked for and not done is still a failure; a usage mistake still 2.
    assert run(capsys, "replay", "--store", url, "evt_missing")[0] == ops.FAILED
    assert run(capsys, "replay", "--store", url, "--dead", "--unhandled")[0] == ops.USAGE


def test_replay_unhandled_once_a_handler_exists(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "u.db"
    url = seed(path, "evt_u1", "evt_u2")
    seed(path, "evt_other", event_type="contact.created")
    store = SQLiteStore(path)
    Processor(store, Router()).recover()  # no handler yet: both end unhandled
    assert {store.get(i).status for i in ("evt_u1", "evt_u2")} == {Status.UNHANDLED}  # type: ignore[union-attr]

    code, out, _ = run(capsys, "replay", "--store", url, "--unhandled")
    assert (code, out) == (0, "replayed 3 unhandled event(s); the worker will process them\n")
    ran: list[str] = []
    router = Router()
    router.add(lambda event: ran.append(event.id), "deal.won", name="now_it_exists")
    Processor(store, router).recover()
    assert sorted(ran) == ["evt_u1", "evt_u2"]
    assert store.get("evt_u1").status is Status.DONE  # type: ignore[union-attr]
    assert store.get("evt_other").status is Status.UNHANDLED  # type: ignore[union-attr]
    store.close()


# send-test against a real HTTP server on 127.0.0.1 --------------------------------------


class Answers(BaseHTTPRequestHandler):
    """/slash redirects like Django's APPEND_SLASH (307 here), /moved 308 elsewhere,
    /debug answers a 64 KB debug page with terminal escapes, anything else 200."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path == "/slash":
            self.answer(307, b"", ("Location", "/slash/"))
        elif self.path == "/moved":
            self.answer(308, b"", ("Location", "http://127.0.0.1:1/new"))
        elif self.path == "/debug":
            page = b"<html>\x1b[2J" + b"Traceback " * 6600 + b"</html>"
            self.answer(500, page)
        else:
            self.answer(200, b'{"status":"accepted"}')

    def answer(self, status: int, body: bytes, *headers: tuple[str, str]) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def site() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Answers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(10)
    server.server_close()


def send(capsys: pytest.CaptureFixture[str], url: str) -> tuple[int, str, str]:
    return run(capsys, "send-test", "deal.won", "--url", url, "--secret", SECRET)


def test_send_test_prints_status_and_answer(site: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert send(capsys, f"{site}/ok") == (0, '200 {"status":"accepted"}\n', "")


def test_send_test_shows_a_short_escaped_excerpt_of_a_debug_page(
    site: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = send(capsys, f"{site}/debug")
    assert code == ops.FAILED
    assert out.startswith("500 <html>\\x1b[2J")
    assert "\x1b" not in out
    assert len(out) < 400  # not the 64 KB page
    assert out.rstrip().endswith("...")
    assert "answered 500" in err


def test_send_test_explains_a_redirect_and_does_not_follow_it(
    site: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = send(capsys, f"{site}/slash")
    assert (code, out) == (ops.FAILED, "307\n")
    assert f"307: the URL needs its trailing slash: use {site}/slash/" in err
    assert "does not follow redirects" in err
    code, _, err = send(capsys, f"{site}/moved")
    assert code == ops.FAILED
    assert "308: the endpoint redirects elsewhere: use http://127.0.0.1:1/new" in err


def test_redirect_advice_names_both_slash_mistakes() -> None:
    assert "needs its trailing slash" in ops.redirect_advice("http://h/a", 301, "/a/")
    assert "must not end with '/'" in ops.redirect_advice("http://h/a/", 308, "http://h/a")
