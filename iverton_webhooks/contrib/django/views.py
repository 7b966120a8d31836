"""The webhook views: raw body and headers in, the core's ``Reply`` out.

`webhook_view` is the sync view (WSGI), `async_webhook_view` the async one (ASGI);
`webhook_path` (and the included ``urls``) holds both. A URL argument ``name`` is the
registered endpoint the request is for.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.http.request import RawPostDataException

from ..._body import declared_length
from ..._receiver import Reply
from ...adapter import BodyTooLarge, Read, handle
from .endpoint import Endpoint, default_endpoint

__all__ = [
    "async_webhook_view",
    "webhook_view",
]

BODY_CONSUMED = Reply.json(
    400, error="invalid payload", detail="the request body was consumed before the webhook view"
)

View = Callable[[HttpRequest], HttpResponse]
AsyncView = Callable[[HttpRequest], Awaitable[HttpResponse]]
V = TypeVar("V", View, AsyncView)


def respond(endpoint: Endpoint, request: HttpRequest, name: str | None = None) -> HttpResponse:
    """Pass the request to the endpoint's receiver and answer what it says (``name``:
    the registered endpoint the URL names)."""
    return _response(_reply(endpoint, request, name))


async def respond_async(
    endpoint: Endpoint, request: HttpRequest, name: str | None = None
) -> HttpResponse:
    """`respond` for an async view: reading the body and recording it run in
    ``sync_to_async`` (thread-sensitive), as any ORM call from an async view does, so
    the request's database connection is the one Django closes when the request ends."""
    endpoint.receiver.runner.attach(asyncio.get_running_loop())  # an asyncio runner runs here
    # One hop for both: Django's ASGI request body is a spooled file (maybe on disk),
    # and the insert is a blocking database call.
    reply = await sync_to_async(_reply, thread_sensitive=True)(endpoint, request, name)
    return _response(reply)


def _response(reply: Reply) -> HttpResponse:
    return HttpResponse(reply.body, status=reply.status, headers=dict(reply.headers))


def _reply(endpoint: Endpoint, request: HttpRequest, name: str | None) -> Reply:
    consumed: list[RawPostDataException] = []
    reply = handle(
        endpoint.receiver,
        request.method or "",
        request.headers,
        _reader(request, consumed),
        limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        endpoint=name,
    )
    # The kit answered 400 and logged the reason; the reply says which mistake it was.
    return BODY_CONSUMED if consumed else reply


def _reader(request: HttpRequest, consumed: list[RawPostDataException]) -> Read:
    """How to read this request's body; the kit decides whether and how much (and
    turns any error of the read into its 400). ``consumed`` notes a body a middleware
    read as a stream before the view."""
    environ = getattr(request, "environ", {})
    if declared_length(request.META.get("CONTENT_LENGTH")) is None and environ.get(
        "wsgi.input_terminated"
    ):
        # Chunked, with no Content-Length: Django's own stream is limited to 0 bytes,
        # but the server (gunicorn, ...) says its input ends where the body does.
        stream: Any = environ["wsgi.input"]
        return stream.read  # type: ignore[no-any-return]
    body: list[bytes] = []

    def read(size: int) -> bytes:
        # Django's request.body: cached for middleware, its own cap (413 here), and
        # already read if a middleware got there first. Asked for only when the declared
        # length is under the cap.
        if body:
            return b""
        try:
            body.append(request.body)
        except RequestDataTooBig:
            raise BodyTooLarge from None
        except RawPostDataException as error:
            consumed.append(error)
            raise
        return body[0]

    return read


def webhook_view(**overrides: Any) -> View:
    """A sync view for one endpoint. With no arguments it serves the ``IVERTON_WEBHOOKS``
    setting; keyword arguments (``endpoint=``, ``secret=``, ``secrets=``, ``router=``,
    ``runner=``, ..., as for `Receiver`) override it, e.g. for a second account, whose
    events are kept under its own endpoint name::

        webhook_path("webhooks/iverton/eu", endpoint="eu", secret=os.environ["EU_SECRET"])
    """
    return make_view(endpoint_for(overrides))


def async_webhook_view(**overrides: Any) -> AsyncView:
    """`webhook_view`, as an async view: for a URL pattern of your own in a project
    served only under ASGI (``webhook_path`` chooses by itself)."""
    return make_async_view(endpoint_for(overrides))


def endpoint_for(overrides: dict[str, Any]) -> Endpoint:
    return Endpoint(**overrides) if overrides else default_endpoint


def _exempt(view: V, endpoint: Endpoint) -> V:
    # Never inside ATOMIC_REQUESTS, on any database: the insert must commit before the
    # 2xx, and the hand-off must not wait for (or roll back with) the request.
    for alias in settings.DATABASES:
        view = transaction.non_atomic_requests(alias)(view)
    marked: Any = view
    # Attributes rather than the decorators: csrf_exempt wraps coroutine functions only
    # from Django 5.0, and login_not_required exists from 5.1.
    marked.csrf_exempt = True
    marked.login_required = False
    marked.endpoint = endpoint
    return view


def make_view(endpoint: Endpoint) -> View:
    """The sync view of ``endpoint`` (and of its registered endpoints, by ``name``)."""

    def receive_webhook(request: HttpRequest, name: str | None = None) -> HttpResponse:
        return respond(endpoint, request, name)

    return _exempt(receive_webhook, endpoint)


def make_async_view(endpoint: Endpoint) -> AsyncView:
    """The async view of ``endpoint`` (Django awaits it, with no thread of its own)."""

    async def receive_webhook(request: HttpRequest, name: str | None = None) -> HttpResponse:
        return await respond_async(endpoint, request, name)

    return _exempt(receive_webhook, endpoint)
