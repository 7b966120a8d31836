"""A body that cannot be read is a 400 (or a closed connection), never a 500, with one
log line and no traceback: real gunicorn (WSGI, Flask, Django) and uvicorn (Starlette
middleware, FastAPI dependency), and a raw socket client on 127.0.0.1 that cuts its body
short and half-closes (or closes) its side of the connection."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from iverton_webhooks._signature import sign
from iverton_webhooks.samples import sample_body
from tests.adapters.apps import PATH, SECRET
from tests.adapters.servers import Server

BODY = sample_body("deal.won", id="evt_cut_short")
LOG_LINE = "the request body could not be read"
TRACEBACK_MARKS = ("Traceback", "Exception in ASGI application", "Error handling request")


def head(port: int, path: str, *fields: str) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close"]
    lines += ["Content-Type: application/json", f"X-Iverton-Signature: {sign(BODY, SECRET)}"]
    return ("\r\n".join([*lines, *fields]) + "\r\n\r\n").encode("latin-1")


def cut_short(port: int, how: str, path: str = PATH) -> int | None:
    """Send a request whose body ends early, then stop sending; the answer's status, or
    None when the server closed the connection without one (bounded: 15 s)."""
    if how == "chunked":  # declares a 0x100-byte chunk, sends 10 bytes
        data = head(port, path, "Transfer-Encoding: chunked") + b"100\r\n" + BODY[:10]
    else:  # declares 256 bytes, sends 10
        data = head(port, path, "Content-Length: 256") + BODY[:10]
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(data)
        if how == "disconnect":
            # Gone for good: nobody reads an answer. Give the server time to see it.
            sock.shutdown(socket.SHUT_RDWR)
            return None
        sock.shutdown(socket.SHUT_WR)  # half-close: the answer can still arrive
        answer = b""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    if not answer:
        return None
    return int(answer.split(b"\r\n", 1)[0].split()[1])


def log_since(log: Path, offset: int, *, want_line: bool, timeout: float = 10) -> str:
    """The log written after ``offset``; waits (bounded) for the one expected line."""
    deadline = time.monotonic() + timeout
    while True:
        with log.open("rb") as out:
            out.seek(offset)
            text = out.read().decode(errors="replace")
        if not want_line or LOG_LINE in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def assert_clean(text: str) -> None:
    for mark in TRACEBACK_MARKS:
        assert mark not in text, f"{mark!r} in the server's log:\n{text}"
    assert text.count(LOG_LINE) == 1, f"not one line saying {LOG_LINE!r}:\n{text}"


@pytest.mark.parametrize("how", ["chunked", "short", "disconnect"])
def test_a_body_cut_short_is_a_400_with_one_log_line(server: Server, how: str) -> None:
    offset = server.log.stat().st_size
    status = cut_short(server.port, how)
    assert status in (400, None), f"{server.adapter}: {status}\n{server.log_text()}"
    assert_clean(log_since(server.log, offset, want_line=True))
    assert server.process.poll() is None
    assert "evt_cut_short" not in server.inbox.by_key()


# FastAPI: the dependency in a path operation of the user's own, under uvicorn.


@pytest.fixture
def fastapi_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    pytest.importorskip("fastapi")
    from tests.starlette.test_starlette_uvicorn import Server as Uvicorn

    env = {"E2E_SECRET": SECRET, "E2E_STORE": f"sqlite:///{tmp_path / 'inbox.sqlite3'}"}
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH", "")]
    )
    log = tmp_path / "uvicorn.log"
    running = Uvicorn("fastapi_dep_app:app", Path(__file__).parents[1] / "starlette", env, log)
    try:
        yield running.port, log
    finally:
        running.stop()


@pytest.mark.parametrize("how", ["chunked", "short", "disconnect"])
def test_fastapi_dependency_logs_one_line_when_the_client_goes(
    fastapi_server: tuple[int, Path], how: str
) -> None:
    port, log = fastapi_server
    offset = log.stat().st_size
    status = cut_short(port, how, path="/hooks")
    assert status in (400, None), status
    assert_clean(log_since(log, offset, want_line=True))
