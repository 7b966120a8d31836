"""``path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls"))``.

The webhook answers with and without a trailing slash: the sender's URL form has none
(``https://yourapp.com/webhooks/iverton``), and a redirect (``APPEND_SLASH``) would turn
its POST into a failed delivery. Include it with no slash after the prefix, as above;
or use `webhook_path` for an endpoint of your own.

Sync or async: the patterns made here hold both views of their endpoint and give Django
the async one when it resolves the URL on its event loop, which it does only when it
serves the request under ASGI (uvicorn, daphne, hypercorn, ``AsyncClient``), and the
sync one under WSGI (gunicorn, uWSGI, ``runserver``, ``Client``). So one URLconf and
one settings module serve both kinds of process, each without an adapter thread hop
of Django's: no setting to keep in step with how the project is deployed.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from django.urls import URLPattern, re_path
from django.urls.resolvers import RegexPattern, ResolverMatch

from .views import (
    AsyncView,
    View,
    endpoint_for,
    make_async_view,
    make_view,
    receive_webhook,
)

__all__ = ["WebhookPattern", "app_name", "urlpatterns", "webhook_path"]


class WebhookPattern(URLPattern):
    """A URL pattern with an endpoint's sync view and its async view: a match made on a
    running event loop (Django's ASGI handler) gets the async one."""

    def __init__(
        self, pattern: RegexPattern, view: View, async_view: AsyncView, name: str | None
    ) -> None:
        super().__init__(pattern, view, name=name)
        self.async_callback = async_view

    def resolve(self, path: str) -> ResolverMatch | None:
        match = super().resolve(path)
        if match is not None and _on_event_loop():
            match.func = self.async_callback
        return match


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def webhook_path(
    route: str, view: View | AsyncView | None = None, *, name: str | None = None, **overrides: Any
) -> URLPattern:
    """A URL pattern answering webhooks at ``route`` with or without its trailing slash.

    With no ``view``, it serves ``webhook_view(**overrides)``'s endpoint, e.g.
    ``webhook_path("webhooks/iverton/eu", endpoint="eu", secret=...)``, with the async
    view under ASGI and the sync one under WSGI. A ``view`` given is served as it is.
    """
    pattern = re.escape(route.strip("/"))
    # "(?:/)?" rather than "/?": a pattern starting "^/" draws a system-check warning.
    regex = rf"^{pattern}/?$" if pattern else r"^(?:/)?$"
    if view is not None:
        if overrides:
            raise TypeError("pass either view= or webhook_view() options, not both")
        callback: Any = view  # Django's stubs type views as sync only
        given: URLPattern = re_path(regex, callback, name=name)
        return given
    endpoint = endpoint_for(overrides)
    return _pattern(regex, make_view(endpoint), make_async_view(endpoint), name)


def _pattern(regex: str, view: View, async_view: AsyncView, name: str | None) -> WebhookPattern:
    return WebhookPattern(RegexPattern(regex, name=name, is_endpoint=True), view, async_view, name)


app_name = "iverton_webhooks"
urlpatterns = [
    _pattern(
        r"^(?:/)?$",
        receive_webhook,
        make_async_view(receive_webhook.endpoint),  # type: ignore[attr-defined]
        "receive",
    )
]
