"""The webhook view: raw body and headers in, the core's ``Reply`` out."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse
from django.http.request import RawPostDataException
from django.views.decorators.csrf import csrf_exempt

from ...adapter import BodyTooLarge, Read, handle
from ...body import declared_length
from ...receiver import Reply
from .endpoint import Endpoint, default_endpoint


def _login_not_required(view_func: Any) -> Any:
    """Django >= 5.1: exempt from LoginRequiredMiddleware (older Django has none)."""
    from django.contrib.auth import decorators

    exempt = getattr(decorators, "login_not_required", None)
    return view_func if exempt is None else exempt(view_func)


log = logging.getLogger("iverton_webhooks")

BODY_CONSUMED = Reply.json(
    400, error="invalid payload", detail="the request body was consumed before the webhook view"
)

View = Callable[[HttpRequest], HttpResponse]


def respond(endpoint: Endpoint, request: HttpRequest) -> HttpResponse:
    """Pass the request to the endpoint's receiver and answer what it says."""
    try:
        reply = handle(
            endpoint.receiver,
            request.method or "",
            request.headers,
            _reader(request),
            limit=settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        )
    except RawPostDataException:
        log.error("the webhook body was read as a stream before the view: answering 400")
        reply = BODY_CONSUMED
    return HttpResponse(reply.body, status=reply.status, headers=dict(reply.headers))


def _reader(request: HttpRequest) -> Read:
    """How to read this request's body; the kit decides whether and how much."""
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
        return body[0]

    return read


def webhook_view(**overrides: Any) -> View:
    """A view for one endpoint. With no arguments it serves the ``IVERTON_WEBHOOKS``
    setting; keyword arguments (``endpoint=``, ``secret=``, ``secrets=``, ``router=``,
    ``runner=``, ..., as for :class:`~iverton_webhooks.Receiver`) override it, e.g. for a
    second account, whose events are kept under its own endpoint name::

        webhook_path("webhooks/iverton/eu", endpoint="eu", secret=os.environ["EU_SECRET"])

    (:func:`~iverton_webhooks.contrib.django.urls.webhook_path` answers with and without
    the trailing slash.)
    """
    endpoint = Endpoint(**overrides) if overrides else default_endpoint
    return _make_view(endpoint)


def _make_view(endpoint: Endpoint) -> View:
    def receive_webhook(request: HttpRequest) -> HttpResponse:
        return respond(endpoint, request)

    view: Any = csrf_exempt(_login_not_required(receive_webhook))
    # Never inside ATOMIC_REQUESTS, on any database: the insert must commit before the
    # 2xx, and the hand-off must not wait for (or roll back with) the request.
    view._non_atomic_requests = set(settings.DATABASES)
    view.endpoint = endpoint
    return view  # type: ignore[no-any-return]


receive_webhook = webhook_view()
