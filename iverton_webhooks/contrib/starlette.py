"""Starlette and FastAPI: a pure ASGI middleware, an ASGI endpoint and a lifespan helper.

Middleware (it also runs the receiver's lifespan: recovery at startup, drain at shutdown)::

    app = Starlette(routes=[...], middleware=[
        Middleware(IvertonWebhookMiddleware, path="/webhooks/iverton", secret="whsec_..."),
    ])
    app.add_middleware(IvertonWebhookMiddleware, path="/webhooks/iverton", secret="whsec_...")

Or as a route in a routing table, with :func:`receiver_lifespan` as the app's lifespan::

    receiver = Receiver(secret="whsec_...", runner="asyncio")
    app = Starlette(routes=[webhook_route("/webhooks/iverton", receiver)],
                    lifespan=receiver_lifespan(receiver))

Everything else (other paths, websockets) passes through untouched. No ``BaseHTTPMiddleware``:
the body is read here from the ASGI ``receive`` channel, with the size cap enforced as it
streams in, so other middleware before or after this one does not matter.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..body import CappedBody
from ..receiver import TOO_LARGE, Receiver, Reply
from ..runners import AsyncioRunner

__all__ = ["IvertonWebhookMiddleware", "WebhookEndpoint", "receiver_lifespan", "webhook_route"]

log = logging.getLogger("iverton_webhooks")

DEFAULT_PATH = "/webhooks/iverton"


class WebhookEndpoint:
    """ASGI app: every HTTP request to it is a webhook delivery for ``receiver``.

    If the app's lifespan never started the receiver's runner (a server run without
    lifespan), the first request attaches it to the running loop.
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._attached: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise RuntimeError(f"the webhook endpoint serves HTTP only, not {scope['type']!r}")
        await self._attach()
        method: str = scope["method"]
        headers = _headers(scope)
        if method.upper() != "POST":
            # The core answers 405 before looking at the body: do not read one.
            reply = await self.receiver.receive_async(method, b"", headers)
        else:
            try:
                body = await read_body(receive, headers, self.receiver.max_body_bytes)
            except ClientDisconnected:
                return  # the client went away before sending its body: nobody to answer
            if body is None:
                reply = TOO_LARGE
            else:
                reply = await self.receiver.receive_async(method, body, headers)
        await send_reply(send, reply)

    async def _attach(self) -> None:
        loop = asyncio.get_running_loop()
        if self._attached is loop:
            return
        self._attached = loop
        await startup(self.receiver)

    def started(self, loop: asyncio.AbstractEventLoop) -> None:
        """Note that the lifespan already started the runner on ``loop``."""
        self._attached = loop


class IvertonWebhookMiddleware:
    """Pure ASGI middleware answering Iverton webhooks at ``path``.

    Pass ``secret=`` (or ``secrets=[new, old]`` while rotating) plus any other
    :class:`Receiver` option (``store=``, ``router=``, ``max_body_bytes=``, ...), or a ready
    ``receiver=``. The receiver built here uses ``runner="asyncio"``: async handlers run
    on the server's loop, sync ones in worker threads. At lifespan startup (after the
    wrapped app's own) it recovers pending events; at shutdown (before the wrapped app's)
    it waits up to ``drain_timeout`` seconds for events in progress; the rest stay pending
    for the next start.
    """

    def __init__(
        self,
        app: ASGIApp,
        path: str = DEFAULT_PATH,
        *,
        secret: str | None = None,
        secrets: Sequence[str] | None = None,
        receiver: Receiver | None = None,
        drain_timeout: float = 10.0,
        **receiver_options: Any,
    ) -> None:
        if receiver is not None and (secret or secrets or receiver_options):
            raise TypeError("pass either receiver= or secret=/secrets= and Receiver options")
        if receiver is None:
            receiver_options.setdefault("runner", "asyncio")
            receiver = Receiver(secret, secrets=secrets, **receiver_options)
        self.app = app
        self.path = _normalise(path)
        self.receiver = receiver
        self.endpoint = WebhookEndpoint(receiver)
        self.drain_timeout = drain_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _route_path(scope) == self.path:
            await self.endpoint(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The wrapped app keeps its lifespan; ours runs inside it, so handlers may use
        # whatever the app set up, and it is still there while we drain.
        async def receive_and_drain() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown":
                await shutdown(self.receiver, self.drain_timeout)
            return message

        async def start_then_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                await startup(self.receiver)
                self.endpoint.started(asyncio.get_running_loop())
            await send(message)

        await self.app(scope, receive_and_drain, start_then_send)


def webhook_route(path: str, receiver: Receiver, *, name: str | None = "iverton_webhooks") -> Route:
    """A Starlette ``Route`` answering webhooks at ``path`` (any method; non-POST gets 405).

    For FastAPI: ``router.add_route(path, WebhookEndpoint(receiver))`` on an ``APIRouter``,
    or ``app.router.routes.append(webhook_route(path, receiver))``. Give the app
    ``lifespan=receiver_lifespan(receiver)`` for recovery at startup and a drain at shutdown.
    """
    return Route(path, WebhookEndpoint(receiver), name=name)


def receiver_lifespan(
    receiver: Receiver, *, drain_timeout: float = 10.0
) -> Callable[[object], AbstractAsyncContextManager[None]]:
    """A ``lifespan=`` for Starlette or FastAPI apps that mount :func:`webhook_route`."""

    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        await startup(receiver)
        try:
            yield
        finally:
            await shutdown(receiver, drain_timeout)

    return lifespan


async def startup(receiver: Receiver) -> None:
    """Start the receiver's runner on this loop: due events are recovered at once."""
    runner = receiver.runner
    if isinstance(runner, AsyncioRunner):
        await runner.startup()


async def shutdown(receiver: Receiver, timeout: float) -> None:
    """Wait up to ``timeout`` s for events in progress; cancelled ones stay due in the store."""
    runner = receiver.runner
    if isinstance(runner, AsyncioRunner):
        cancelled = await runner.drain(timeout)
        if cancelled:
            log.warning("shutdown: %d event(s) left pending for the next start", cancelled)
    else:
        # A thread runner restarts lazily if the app is started again (tests do).
        await asyncio.to_thread(runner.close, timeout)


class ClientDisconnected(Exception):
    """The client closed the connection before its body was complete."""


async def read_body(receive: Receive, headers: Mapping[str, str], limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed ``limit`` bytes.

    A declared Content-Length over the limit is refused before reading anything; the
    running total is checked on every chunk, so neither chunked bodies nor a
    Content-Length that lies can make this buffer more than one chunk past the limit.
    """
    body = CappedBody(limit, headers.get("content-length"))
    while not body.too_large:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        body.add(message.get("body", b""))
        if not message.get("more_body", False):
            return None if body.too_large else body.getvalue()
    return None


async def send_reply(send: Send, reply: Reply) -> None:
    """Write the core's :class:`Reply` as an ASGI response."""
    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
    headers.append((b"content-length", str(len(reply.body)).encode()))
    await send({"type": "http.response.start", "status": reply.status, "headers": headers})
    await send({"type": "http.response.body", "body": reply.body})


def _headers(scope: Scope) -> dict[str, str]:
    # ASGI gives lower-case names; the first of repeated headers wins (a second
    # signature header cannot replace the first).
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return headers


def _route_path(scope: Scope) -> str:
    # Relative to the app this middleware wraps, as Starlette's router sees it: under a
    # Mount (or a server --root-path) ASGI servers and Starlette put the prefix in both
    # "path" and "root_path"; older versions left it out of "path".
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return _normalise(path)


def _normalise(path: str) -> str:
    # "/webhooks/iverton/" and "/webhooks/iverton" are one endpoint: a redirect
    # between them would turn the sender's POST into a failed delivery.
    return path.rstrip("/") or "/"
