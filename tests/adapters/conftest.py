"""The adapter contract suite's fixtures: one real server per adapter for the session,
and ``post(method, body, headers)`` parametrized over every adapter."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.adapters.apps import PATH
from tests.adapters.servers import ADAPTERS, Server, prepare, start

pytest.importorskip("gunicorn")
pytest.importorskip("uvicorn")
pytest.importorskip("flask")
pytest.importorskip("starlette.applications")
pytest.importorskip("django.conf")

# Imported by the Django server only (doctest collection would need Django configured).
collect_ignore = ["django_urls.py"]

Headers = Mapping[str, str] | Sequence[tuple[str, str]]


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Post = Callable[..., Response]


@pytest.fixture(scope="session", params=ADAPTERS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    adapter: str = request.param
    folder: Path = tmp_path_factory.mktemp(f"adapter-{adapter}")
    db = folder / "inbox.sqlite3"
    prepare(adapter, db)
    running = start(adapter, db, folder / "server.log")
    yield running
    running.stop()


def send(
    server: Server,
    method: str,
    body: bytes | Any = b"",
    headers: Headers = (),
    *,
    path: str = PATH,
    timeout: float = 20.0,
) -> Response:
    """One request over a new connection. ``body`` may be an iterable of chunks
    (sent chunked, with no Content-Length)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        names = {name.lower() for name, _ in pairs}
        chunked = not isinstance(body, (bytes, bytearray))
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        elif "content-length" not in names:
            conn.putheader("Content-Length", str(len(body)))
        for name, value in pairs:
            conn.putheader(name, value)
        conn.endheaders()
        if chunked:
            for chunk in body:
                conn.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            conn.send(b"0\r\n\r\n")
        elif body:
            conn.send(body)
        answer = conn.getresponse()
        return Response(
            answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
        )
    finally:
        conn.close()


def head_only(server: Server, method: str, length: int, headers: Headers = ()) -> Response:
    """Send a request's head declaring a ``length``-byte body and never send the body:
    the answer can only come if the server does not read it (bounded wait: 10 s)."""
    pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
    lines = [f"{method} {PATH} HTTP/1.1", f"Host: 127.0.0.1:{server.port}"]
    lines += [f"Content-Length: {length}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in pairs]
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        try:
            while b"\r\n\r\n" not in data or len(data) < _expected(data):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        except TimeoutError:
            raise AssertionError(f"no answer in 10 s without the body: {data!r}") from None
    head, _, rest = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return Response(int(status_line.split()[1]), parsed, rest)


def _expected(data: bytes) -> int:
    head, sep, _ = data.partition(b"\r\n\r\n")
    if not sep:
        return len(data) + 1
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return len(head) + 4 + int(line.split(b":", 1)[1])
    return len(data)


@pytest.fixture
def post(server: Server) -> Post:
    """``post(method, body, headers)`` to the adapter's webhook URL on its real server."""

    def post(method: str, body: Any = b"", headers: Headers = (), **options: Any) -> Response:
        return send(server, method, body, headers, **options)

    return post
