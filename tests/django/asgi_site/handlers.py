"""The project's handlers, and a middleware saying which kind of view Django ran."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse
from django.utils.decorators import sync_and_async_middleware

from iverton_webhooks import Event, Router

router = Router()


@router.on("*")
def note(event: Event) -> None:
    """Nothing to do: the event's status becomes done."""


def _kind(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    match = request.resolver_match
    if match is not None:
        response["X-View-Async"] = str(iscoroutinefunction(match.func))
    return response


@sync_and_async_middleware
def view_kind(get_response: Callable[[HttpRequest], Any]) -> Any:
    if iscoroutinefunction(get_response):

        async def on_loop(request: HttpRequest) -> HttpResponse:
            response: Awaitable[HttpResponse] = get_response(request)
            return _kind(request, await response)

        return on_loop

    def in_thread(request: HttpRequest) -> HttpResponse:
        return _kind(request, get_response(request))

    return in_thread
