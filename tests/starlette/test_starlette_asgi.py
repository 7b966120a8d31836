"""The ASGI contract: body read with the cap enforced while streaming, everything else
passed through untouched, other middleware in front does not break verification."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

pytest.importorskip("starlette.applications")

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from iverton_webhooks import MemoryStore, Receiver
from iverton_webhooks.contrib.starlette import IvertonWebhookMiddleware
from tests.conftest import signed
from tests.starlette.helpers import PATH

CAP = 100 * 1024
CHUNK = 16 * 1024


# A fake ASGI server ---------------------------------------------------------------


class FakeBody:
    """An ASGI ``receive`` that hands out body chunks and counts them."""

    def __init__(self, chunks: Iterator[bytes], *, then_disconnect: bool = False) -> None:
        self._chunks = chunks
        self._then_disconnect = then_disconnect
        self.handed_out = 0
        self._next: bytes | None = next(chunks, None)

    async def __call__(self) -> Message:
        if self._next is None:
            return {"type": "http.disconnect"}
        chunk, self._next = self._next, next(self._chunks, None)
        self.handed_out += 1
        more = self._next is not None or self._then_disconnect
        return {"type": "http.request", "body": chunk, "more_body": more}


def http_scope(path: str = PATH, method: str = "POST", **headers: str) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.replace("_", "-").lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }


def call(app: ASGIApp, scope: Scope, receive: Receive) -> list[Message]:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    async def go() -> None:
        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(go())
    return sent


def forever(chunk: bytes, limit: int = 10_000) -> Iterator[bytes]:
    """A body far larger than any cap (bounded, so a broken cap fails instead of hanging)."""
    for _ in range(limit):
        yield chunk


async def not_found(scope: Scope, receive: Receive, send: Send) -> None:
    await PlainTextResponse("inner", status_code=404)(scope, receive, send)


@pytest.fixture
def middleware(make_receiver: Callable[..., Receiver]) -> IvertonWebhookMiddleware:
    return IvertonWebhookMiddleware(
        not_found, path=PATH, receiver=make_receiver(max_body_bytes=CAP)
    )


# The size cap ---------------------------------------------------------------------


def test_chunked_body_over_the_cap_is_refused_without_reading_it_all(
    middleware: IvertonWebhookMiddleware, store: MemoryStore
) -> None:
    body = FakeBody(forever(b"x" * CHUNK))
    sent = call(middleware, http_scope(), body)
    assert sent[0]["status"] == 413
    # The running total passed the cap on this chunk: not one more was asked for.
    assert body.handed_out == CAP // CHUNK + 1
    assert store.count() == 0


def test_declared_content_length_over_the_cap_is_refused_before_reading(
    middleware: IvertonWebhookMiddleware,
) -> None:
    body = FakeBody(forever(b"x" * CHUNK))
    sent = call(middleware, http_scope(content_length=str(CAP + 1)), body)
    assert sent[0]["status"] == 413
    assert body.handed_out == 0


def test_lying_content_length_does_not_fool_the_cap(middleware: IvertonWebhookMiddleware) -> None:
    body = FakeBody(forever(b"x" * CHUNK))
    sent = call(middleware, http_scope(content_length="10"), body)
    assert sent[0]["status"] == 413
    assert body.handed_out == CAP // CHUNK + 1


@pytest.mark.parametrize("declared", ["abc", "-5", "", "1e9"])
def test_garbage_content_length_is_ignored_and_the_body_verified(
    middleware: IvertonWebhookMiddleware, declared: str
) -> None:
    raw, headers = signed(id=f"evt_cl_{declared}")
    sig = headers["X-Iverton-Signature"]
    scope = http_scope(content_length=declared, x_iverton_signature=sig)
    sent = call(middleware, scope, FakeBody(iter([raw])))
    assert sent[0]["status"] == 200


def test_small_chunks_are_joined_and_verified(
    middleware: IvertonWebhookMiddleware, store: MemoryStore
) -> None:
    raw, headers = signed(id="evt_chunks")
    scope = http_scope(x_iverton_signature=headers["X-Iverton-Signature"])
    body = FakeBody(iter([raw[i : i + 7] for i in range(0, len(raw), 7)] + [b""]))
    sent = call(middleware, scope, body)
    assert sent[0]["status"] == 200
    stored = store.get("evt_chunks")
    assert stored is not None
    assert stored.body == raw


def test_client_disconnect_mid_body_answers_nothing_and_records_nothing(
    middleware: IvertonWebhookMiddleware, store: MemoryStore
) -> None:
    raw, headers = signed(id="evt_gone")
    scope = http_scope(x_iverton_signature=headers["X-Iverton-Signature"])
    sent = call(middleware, scope, FakeBody(iter([raw[:10]]), then_disconnect=True))
    assert sent == []
    assert store.count() == 0


def test_reply_is_a_complete_asgi_response(middleware: IvertonWebhookMiddleware) -> None:
    sent = call(middleware, http_scope(method="GET"), FakeBody(iter([])))
    start, body = sent
    assert start["type"] == "http.response.start"
    assert start["status"] == 405
    assert (b"allow", b"POST") in start["headers"]
    assert (b"content-length", str(len(body["body"])).encode()) in start["headers"]
    assert body["type"] == "http.response.body"
    assert not body.get("more_body", False)


def test_websocket_scope_on_the_webhook_path_goes_to_the_app(
    middleware: IvertonWebhookMiddleware,
) -> None:
    seen: list[str] = []

    async def inner(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope["type"])

    mw = IvertonWebhookMiddleware(inner, path=PATH, receiver=middleware.receiver)
    call(mw, {**http_scope(), "type": "websocket"}, FakeBody(iter([])))
    assert seen == ["websocket"]


# Everything else passes through -------------------------------------------------------


async def echo(request: Request) -> Response:
    return Response(await request.body(), media_type="application/octet-stream")


async def stream(request: Request) -> StreamingResponse:
    async def parts() -> AsyncIterator[bytes]:
        for n in range(3):
            yield f"part{n}\n".encode()
            await asyncio.sleep(0)

    return StreamingResponse(parts(), media_type="text/plain")


async def ws_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text("echo:" + text)
    await websocket.close()


def make_app(receiver: Receiver, lifespan_log: list[str], *before: Middleware) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        lifespan_log.append("startup")
        yield
        lifespan_log.append("shutdown")

    return Starlette(
        routes=[
            Route("/echo", echo, methods=["POST"]),
            Route("/stream", stream),
            WebSocketRoute("/ws", ws_echo),
        ],
        middleware=[*before, Middleware(IvertonWebhookMiddleware, path=PATH, receiver=receiver)],
        lifespan=lifespan,
    )


def test_other_routes_streaming_websockets_and_lifespan_are_untouched(
    make_receiver: Callable[..., Receiver],
) -> None:
    log: list[str] = []
    app = make_app(make_receiver(max_body_bytes=CAP), log)
    big = bytes(range(256)) * (4 * CAP // 256)  # over the webhook cap: not ours to refuse
    with TestClient(app) as client:
        assert log == ["startup"]
        echoed = client.post("/echo", content=big)
        assert echoed.status_code == 200
        assert echoed.content == big
        with client.stream("GET", "/stream") as response:
            assert response.headers["content-type"].startswith("text/plain")
            assert "content-length" not in response.headers  # still streamed
            assert b"".join(response.iter_bytes()) == b"part0\npart1\npart2\n"
        with client.websocket_connect("/ws") as ws:
            ws.send_text("hi")
            assert ws.receive_text() == "echo:hi"
        assert client.get("/nowhere").status_code == 404
    assert log == ["startup", "shutdown"]


# Body-reading middleware in front ----------------------------------------------------------


class Rechunk:
    """Pure ASGI middleware that reads the whole body, then replays it one byte per message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        pieces = [body[i : i + 1] for i in range(len(body))] or [b""]

        async def replay() -> Message:
            if pieces:
                piece = pieces.pop(0)
                return {"type": "http.request", "body": piece, "more_body": bool(pieces)}
            return {"type": "http.disconnect"}

        await self.app(scope, replay, send)


class PeekBody(BaseHTTPMiddleware):
    """The classic BaseHTTPMiddleware that logs the body before passing the request on."""

    seen: list[int] = []

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        PeekBody.seen.append(len(await request.body()))
        return await call_next(request)


@pytest.mark.parametrize("front", [Rechunk, PeekBody], ids=["pure-asgi-rechunk", "base-http"])
def test_body_reading_middleware_in_front_does_not_break_verification(
    make_receiver: Callable[..., Receiver], store: MemoryStore, front: Any
) -> None:
    app = make_app(make_receiver(), [], Middleware(front))
    body, headers = signed(id="evt_front")
    with TestClient(app) as client:
        assert client.post(PATH, content=body, headers=headers).status_code == 200
        forged = {"X-Iverton-Signature": "sha256=" + "0" * 64}
        assert client.post(PATH, content=body, headers=forged).status_code == 401
        assert client.post("/echo", content=b"abc").content == b"abc"
    stored = store.get("evt_front")
    assert stored is not None
    assert stored.body == body


def test_wrapped_app_lifespan_failure_is_passed_on(make_receiver: Callable[..., Receiver]) -> None:
    @asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("database down")
        yield

    receiver = make_receiver()
    app = Starlette(
        middleware=[Middleware(IvertonWebhookMiddleware, path=PATH, receiver=receiver)],
        lifespan=broken,
    )
    with pytest.raises(RuntimeError, match="database down"), TestClient(app):
        pass
