"""``path("webhooks/iverton", include("iverton_webhooks.contrib.django.urls"))``.

The webhook answers with and without a trailing slash: the sender's URL form has none
(``https://yourapp.com/webhooks/iverton``), and a redirect (``APPEND_SLASH``) would turn
its POST into a failed delivery. Include it with no slash after the prefix, as above;
or use :func:`webhook_path` for an endpoint of your own.
"""

from __future__ import annotations

import re
from typing import Any

from django.urls import URLPattern, re_path

from .views import View, receive_webhook, webhook_view

__all__ = ["app_name", "urlpatterns", "webhook_path"]


def webhook_path(
    route: str, view: View | None = None, *, name: str | None = None, **overrides: Any
) -> URLPattern:
    """A URL pattern answering webhooks at ``route`` with or without its trailing slash.

    ``view`` defaults to ``webhook_view(**overrides)``, e.g.
    ``webhook_path("webhooks/iverton/eu", endpoint="eu", secret=...)``.
    """
    if view is None:
        view = webhook_view(**overrides)
    elif overrides:
        raise TypeError("pass either view= or webhook_view() options, not both")
    pattern = re.escape(route.strip("/"))
    # "(?:/)?" rather than "/?": a pattern starting "^/" draws a system-check warning.
    return re_path(rf"^{pattern}/?$" if pattern else r"^(?:/)?$", view, name=name)


app_name = "iverton_webhooks"
urlpatterns = [webhook_path("", receive_webhook, name="receive")]
