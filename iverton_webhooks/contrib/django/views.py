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

from ...body import declared_length
from ...receiver import TOO_LARGE, Reply
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
    receiver = endpoint.receiver
    reply = _reply(receiver.max_body_bytes, request) or receiver.receive(
        request.method or "", request.body, request.headers
    )
    return HttpResponse(reply.body, status=reply.status, headers=dict(reply.headers))


def _reply(limit: int, request: HttpRequest) -> Reply | None:
    """A reply when the body cannot or need not be read (too large, already consumed)."""
    if request.method == "POST":
        length = declared_length(request.META.get("CONTENT_LENGTH"))
        if length is not None and length > limit:
            return TOO_LARGE  # refuse without reading it
    try:
        request.body  # noqa: B018 - read (and cached by Django) once, here
    except RequestDataTooBig:
        return TOO_LARGE
    except RawPostDataException:
        log.error("the webhook body was read as a stream before the view: answering 400")
        return BODY_CONSUMED
    return None


def webhook_view(**overrides: Any) -> View:
    """A view for one endpoint. With no arguments it serves the ``IVERTON_WEBHOOKS``
    setting; keyword arguments (``secret=``, ``secrets=``, ``router=``, ``runner=``, ...,
    as for :class:`~iverton_webhooks.Receiver`) override it, e.g. for a second account::

        path("webhooks/iverton/eu/", webhook_view(secret=os.environ["EU_SECRET"]))
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
