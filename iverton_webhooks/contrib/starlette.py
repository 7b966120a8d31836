"""Starlette and FastAPI: a pure ASGI middleware, an ASGI endpoint and a lifespan helper.

Middleware (it also runs the receiver's lifespan: recovery at startup, drain at shutdown)::

    app = Starlette(routes=[...], middleware=[
        Middleware(IvertonWebhookMiddleware, path="/webhooks/iverton", secret="whsec_..."),
    ])
    app.add_middleware(IvertonWebhookMiddleware, path="/webhooks/iverton", secret="whsec_...")

Or as a route in a routing table, with `receiver_lifespan` as the app's lifespan::

    receiver = Receiver(secret="whsec_...", runner="asyncio")
    app = Starlette(routes=[webhook_route("/webhooks/iverton", receiver)],
                    lifespan=receiver_lifespan(receiver))

With ``endpoint_registry=True`` (a `Receiver` option) both also answer ``<path>/<name>``
for the endpoint ``name`` registered in the store. No ``BaseHTTPMiddleware``: the body is
read from the ASGI ``receive`` channel under the size cap, whatever other middleware does.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .._body import NextChunk
from .._errors import ConfigurationError
from .._finders import register_finder
from .._placement import lifespan_starts
from .._receiver import Receiver, Reply
from ..adapter import handle_async, make_receiver, named_endpoint, normalise_path

__all__ = ["IvertonWebhookMiddleware", "WebhookEndpoint", "receiver_lifespan", "webhook_route"]

log = logging.getLogger("iverton_webhooks")

DEFAULT_PATH = "/webhooks/iverton"
_MISSING = (
    "pass secret='whsec_...' (or secrets=[new, old] while rotating) to "
    "IvertonWebhookMiddleware, or a ready receiver="
)


class WebhookEndpoint:
    """ASGI app: every HTTP request to it is a webhook delivery for ``receiver``.

    With the receiver's endpoint registry on, a path parameter ``endpoint`` (a route
    such as ``/hooks/{endpoint}``) names the registered endpoint the request is for.
    If the app's lifespan never started the receiver's runner (a server run without
    lifespan), the first request on a loop starts it there.
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._started: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        name = named_endpoint(self.receiver, scope.get("path_params", {}).get("endpoint"))
        await self.answer(scope, receive, send, name)

    async def answer(
        self, scope: Scope, receive: Receive, send: Send, endpoint: str | None = None
    ) -> None:
        """Answer one request for the registered endpoint ``endpoint`` (None: the
        receiver's own)."""
        if scope["type"] != "http":
            raise RuntimeError(f"the webhook endpoint serves HTTP only, not {scope['type']!r}")
        gone = False

        async def next_chunk() -> tuple[bytes, bool]:
            nonlocal gone
            message = await receive()
            if message["type"] == "http.disconnect":
                gone = True
                raise ClientDisconnected
            return message.get("body", b""), bool(message.get("more_body", False))

        # A client gone mid-body is the kit's 400, logged once; it is not sent, as ASGI
        # lets a server raise on a send to a closed connection.
        reply = await self.reply(scope["method"], Headers(scope=scope), next_chunk, endpoint)
        if not gone:
            await reply_response(reply)(scope, receive, send)

    async def reply(
        self, method: str, headers: Headers, next_chunk: NextChunk, endpoint: str | None
    ) -> Reply:
        """The core's reply to a request whose body ``next_chunk`` reads (the FastAPI
        dependency's too), starting the runner on this loop first if nothing has."""
        if self._started is not asyncio.get_running_loop():
            await self.startup()
        return await handle_async(self.receiver, method, headers, next_chunk, endpoint=endpoint)

    async def startup(self) -> None:
        """Start the receiver's runner on the running loop: due events are recovered now."""
        self._started = asyncio.get_running_loop()
        await startup(self.receiver)


class IvertonWebhookMiddleware:
    """Pure ASGI middleware answering Iverton webhooks at ``path`` (with or without a
    trailing ``/``), and with ``endpoint_registry=True`` at ``path + "/<name>"`` for the
    endpoints registered in the store (the secret is then optional: without one only
    they are served, and ``path`` itself answers 404).

    Pass ``secret=`` (or ``secrets=[new, old]`` while rotating), ``endpoint=`` (the name
    its events are kept under, default ``"default"``) plus any other `Receiver`
    option (``store=``, ``router=``, ``max_body_bytes=``, ...), or a ready ``receiver=``.
    The receiver built here uses ``runner="asyncio"``. At lifespan startup (after the
    wrapped app's own) it recovers pending events; at shutdown (before the wrapped app's)
    it waits up to ``drain_timeout`` seconds for events in progress. Without a lifespan,
    the first request starts it.

    A configuration mistake is logged when the middleware is built and fails the app's
    lifespan startup with the `ConfigurationError` (raised here, it would only read as
    "lifespan unsupported": Starlette builds middleware on the first ASGI call). Without a
    lifespan, requests to ``path`` raise it; other routes are not affected.
    """

    endpoint: WebhookEndpoint

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
        self.app = app
        self.path = normalise_path(path)
        self.drain_timeout = drain_timeout
        self.error: ConfigurationError | None = None
        if receiver is None:
            receiver_options.setdefault("runner", "asyncio")
        try:
            built = make_receiver(
                receiver, secret, secrets, missing_secret=_MISSING, **receiver_options
            )
        except ConfigurationError as error:
            log.error("IvertonWebhookMiddleware: %s", error)
            self.error = error
            return
        self.endpoint = WebhookEndpoint(built)

    @property
    def receiver(self) -> Receiver:
        """The receiver; raises the configuration error when it could not be built."""
        if self.error is not None:
            raise self.error
        return self.endpoint.receiver

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = _route_path(scope)
            if path == self.path:
                if self.error is not None:
                    raise self.error
                await self.endpoint.answer(scope, receive, send)
                return
            if self.error is None and self.endpoint.receiver.directory is not None:
                name = _name_below(path, self.path)
                if name is not None:
                    await self.endpoint.answer(scope, receive, send, name)
                    return
        elif scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The wrapped app keeps its lifespan; ours runs inside it, so handlers may use
        # whatever the app set up, and it is still there while we drain.
        async def receive_and_drain() -> Message:
            message = await receive()
            if message["type"] == "lifespan.shutdown" and self.error is None:
                await shutdown(self.receiver, self.drain_timeout)
            return message

        async def start_then_send(message: Message) -> None:
            if message["type"] == "lifespan.startup.complete":
                if self.error is not None:
                    message = {
                        "type": "lifespan.startup.failed",
                        "message": f"IvertonWebhookMiddleware: {self.error}",
                    }
                else:
                    await self.endpoint.startup()
            await send(message)

        await self.app(scope, receive_and_drain, start_then_send)


def webhook_route(path: str, receiver: Receiver, *, name: str | None = "iverton_webhooks") -> Route:
    """A Starlette ``Route`` answering webhooks at ``path``, with or without a trailing
    ``/`` (any method; non-POST gets 405), and with the receiver's endpoint registry on,
    at ``path + "/<name>"`` for each registered endpoint.

    For FastAPI: ``router.add_route(path, WebhookEndpoint(receiver))`` on an ``APIRouter``,
    or ``app.router.routes.append(webhook_route(path, receiver))``. Give the app
    ``lifespan=receiver_lifespan(receiver)`` for recovery at startup and a drain at shutdown.
    """
    return _WebhookRoute(path, WebhookEndpoint(receiver), name=name)


class _WebhookRoute(Route):
    """A ``Route`` that also takes its path's other trailing-slash form (the router would
    redirect, and the sender does not follow redirects) and, with the endpoint registry
    on, every path below it as the ``endpoint`` path parameter (the core 404s a name
    nobody registered)."""

    def __init__(self, path: str, endpoint: WebhookEndpoint, *, name: str | None) -> None:
        super().__init__(path, endpoint, name=name)
        self.webhook = endpoint
        self.root = normalise_path(path)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE or scope["type"] != "http":
            return match, child
        path, params = _route_path(scope), dict(scope.get("path_params", {}))
        if path != self.root:
            name = _name_below(path, self.root)
            if name is None or self.webhook.receiver.directory is None:
                return match, child
            params["endpoint"] = name
        return Match.FULL, {"endpoint": self.endpoint, "path_params": params}


def receiver_lifespan(
    receiver: Receiver, *, drain_timeout: float = 10.0
) -> Callable[[object], AbstractAsyncContextManager[None]]:
    """A ``lifespan=`` for Starlette or FastAPI apps that mount `webhook_route`."""

    @asynccontextmanager
    async def lifespan(app: object) -> AsyncIterator[None]:
        await startup(receiver)
        try:
            yield
        finally:
            await shutdown(receiver, drain_timeout)

    return lifespan


async def startup(receiver: Receiver) -> None:
    """Start the receiver's runner on this loop, in each worker, where the core's policy
    (`lifespan_starts`) lets a lifespan start it: due events are recovered at once."""
    if not lifespan_starts():
        return
    receiver.runner.attach(asyncio.get_running_loop())
    await receiver.runner.startup()


async def shutdown(receiver: Receiver, timeout: float) -> None:
    """Wait up to ``timeout`` s for events in progress; cancelled ones stay due in the store."""
    runner = receiver.runner
    handed_back = await runner.drain(timeout)
    if handed_back:
        log.warning("shutdown: %d event(s) left pending for the next start", handed_back)
    # Then stop what the runner runs off the loop (a thread runner's pool); it starts
    # again if the app is started again.
    await asyncio.to_thread(runner.close, timeout)


class ClientDisconnected(Exception):
    """The client closed the connection before its body was complete."""


def reply_response(reply: Reply) -> Response:
    """The core's `Reply` as a Starlette (or FastAPI) response."""
    return Response(reply.body, status_code=reply.status, headers=dict(reply.headers))


def _name_below(path: str, root: str) -> str | None:
    """What a normalised ``path`` has below ``root`` (``"acme"`` for
    ``/webhooks/iverton/acme``), or None when it is not below it."""
    prefix = root if root.endswith("/") else root + "/"
    return path[len(prefix) :] if path != root and path.startswith(prefix) else None


def _route_path(scope: Scope) -> str:
    # Relative to the app this middleware wraps, as Starlette's router sees it: under a
    # Mount (or a server --root-path) ASGI servers and Starlette put the prefix in both
    # "path" and "root_path"; older versions left it out of "path".
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return normalise_path(path)


def _find(target: object, depth: int = 0) -> list[Receiver] | None:
    """The receivers a Starlette (or FastAPI) app serves through this module: its
    `IvertonWebhookMiddleware` and its `webhook_route` endpoints, for
    ``iverton-webhooks ... --app``; ``None`` for other objects."""
    if isinstance(target, (IvertonWebhookMiddleware, WebhookEndpoint)):
        return [target.receiver]  # a middleware that could not build one raises its error
    if not isinstance(target, Starlette) or depth > 8:
        return None
    found: list[Receiver] = []
    # Starlette builds the middleware stack on the first call, as done here.
    if target.middleware_stack is None:
        target.middleware_stack = target.build_middleware_stack()
    layer: object = target.middleware_stack
    for _ in range(100):  # each ASGI middleware keeps the app it wraps as .app
        if isinstance(layer, IvertonWebhookMiddleware):
            found.append(layer.receiver)
        layer = getattr(layer, "app", None)
        if layer is None or layer is target.router:
            break
    for route in target.routes:
        endpoint = getattr(route, "endpoint", None)
        if isinstance(endpoint, WebhookEndpoint):
            found.append(endpoint.receiver)
        mounted = getattr(route, "app", None)
        if isinstance(mounted, Starlette) and mounted is not target:
            found.extend(_find(mounted, depth + 1) or ())
    return found


register_finder(_find)
