"""The Flask extension's state: each app's webhook endpoints, kept in ``app.extensions``.

Shared by the blueprint (`iverton_webhooks.contrib.flask`) and the ``flask iverton``
commands (`iverton_webhooks.contrib.flask_cli`), so that the commands never import
the blueprint module that registers them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from flask import Flask

from .._errors import ConfigurationError
from .._receiver import Receiver

EXTENSION_KEY = "iverton_webhooks"
VIEW = "webhook"


@dataclass
class Endpoint:
    """One webhook endpoint of one app: its receiver, and a secret for ``send-test``."""

    receiver: Receiver
    signing_secret: str | None = field(default=None, repr=False)


@dataclass
class WebhooksState:
    """``app.extensions["iverton_webhooks"]``: the app's endpoints by blueprint name."""

    endpoints: dict[str, Endpoint] = field(default_factory=dict)

    def endpoint(self, name: str | None = None) -> Endpoint:
        """The endpoint called ``name``; without a name, the app's only one."""
        if name is None:
            if len(self.endpoints) == 1:
                return next(iter(self.endpoints.values()))
            raise ConfigurationError(
                f"this app has {len(self.endpoints)} webhook endpoints; "
                f"name one of: {', '.join(sorted(self.endpoints)) or '(none)'}"
            )
        try:
            return self.endpoints[name]
        except KeyError:
            raise ConfigurationError(
                f"no webhook endpoint {name!r}; this app has: "
                f"{', '.join(sorted(self.endpoints)) or '(none)'}"
            ) from None

    def receiver(self, name: str | None = None) -> Receiver:
        return self.endpoint(name).receiver


def state_of(app: Flask) -> WebhooksState:
    """The app's webhook state (created empty on first use)."""
    found = app.extensions.get(EXTENSION_KEY)
    if found is None:
        found = app.extensions[EXTENSION_KEY] = WebhooksState()
    if not isinstance(found, WebhooksState):
        raise ConfigurationError(f"app.extensions[{EXTENSION_KEY!r}] is taken by {found!r}")
    return found
