"""``path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls"))``.

Include it with no slash after the prefix, as above: the webhook answers with and
without one (a redirect, ``APPEND_SLASH``, would turn the sender's POST into a failed
delivery). Or use `webhook_path` for an endpoint of your own.

The patterns hold both views of their endpoint and give Django the async one when it
resolves the URL on its event loop (under ASGI), the sync one under WSGI. With
``ENDPOINT_REGISTRY`` on, ``/webhooks/iverton/<name>`` (``reverse("iverton_webhooks:receive",
kwargs={"name": "acme"})``) serves the endpoint ``name`` kept in the database; with it off
such a path is not matched, so patterns after the include keep their URLs.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from django.urls import URLPattern, re_path
from django.urls.resolvers import RegexPattern, ResolverMatch

from ..._errors import ConfigurationError
from .views import AsyncView, View, endpoint_for, make_async_view, make_view

__all__ = ["WebhookPattern", "app_name", "urlpatterns", "webhook_path"]

#: An optional path segment after the route: the name of a registered endpoint. Any
#: segment matches; the core answers a name no endpoint may have with its 404.
_NAMED = r"(?:/(?P<name>[^/]+))?"


class WebhookPattern(URLPattern):
    """A URL pattern with an endpoint's sync view and its async view: a match made on a
    running event loop (Django's ASGI handler) gets the async one. A match that names a
    registered endpoint counts only while the endpoint's receiver serves the registry."""

    def __init__(
        self,
        pattern: RegexPattern,
        view: View,
        async_view: AsyncView,
        name: str | None,
        *,
        route: str = "",
    ) -> None:
        super().__init__(pattern, view, name=name)
        self.async_callback = async_view
        #: The path it answers, below whatever includes it (the system checks resolve it).
        self.route = route

    def resolve(self, path: str) -> ResolverMatch | None:
        match = super().resolve(path)
        if match is None or ("name" in match.kwargs and not self.serves_registry()):
            return None
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return match
        match.func = self.async_callback
        return match

    def serves_registry(self) -> bool:
        endpoint = getattr(self.callback, "endpoint", None)
        try:
            return endpoint is not None and endpoint.receiver.directory is not None
        except ConfigurationError:
            return False  # the checks and the pattern's own URL report the setting


def webhook_path(
    route: str, view: View | AsyncView | None = None, *, name: str | None = None, **overrides: Any
) -> URLPattern:
    """A URL pattern answering webhooks at ``route`` with or without its trailing slash.

    With no ``view``, it serves ``webhook_view(**overrides)``'s endpoint, e.g.
    ``webhook_path("webhooks/iverton/eu", endpoint="eu", secret=...)``, with the async
    view under ASGI and the sync one under WSGI; with ``endpoint_registry=True`` (or
    ``ENDPOINT_REGISTRY`` in the setting) ``route/<name>`` serves the registered
    endpoints too. A ``view`` given is served as it is, at ``route`` only.
    """
    route = route.strip("/")
    pattern = re.escape(route)
    if view is not None:
        if overrides:
            raise TypeError("pass either view= or webhook_view() options, not both")
        # "(?:/)?" rather than "/?": a pattern starting "^/" draws a system-check warning.
        callback: Any = view  # Django's stubs type views as sync only
        given: URLPattern = re_path(rf"^{pattern}(?:/)?$", callback, name=name)
        return given
    endpoint = endpoint_for(overrides)
    return WebhookPattern(
        RegexPattern(rf"^{pattern}{_NAMED}/?$", name=name, is_endpoint=True),
        make_view(endpoint),
        make_async_view(endpoint),
        name,
        route=route,
    )


app_name = "iverton_webhooks"
urlpatterns = [webhook_path("", name="receive")]
