"""A framework-free WSGI app around a `Receiver` (used by the demo; mountable anywhere).

>>> from iverton_webhooks import Receiver
>>> app = WebhookApp(Receiver(secret="whsec_doc_9f8a7b6c5d4e", store="memory://", runner="inline"))
>>> callable(app)
True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from ._placement import start_if_serving
from ._receiver import Receiver
from .adapter import handle, named_endpoint

__all__ = [
    "EnvironHeaders",
    "WebhookApp",
]

StartResponse = Callable[..., Any]
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    503: "Service Unavailable",
}
#: The two request headers a WSGI environ keeps without the ``HTTP_`` prefix.
_UNPREFIXED = ("CONTENT_TYPE", "CONTENT_LENGTH")


class EnvironHeaders(Mapping[str, str]):
    """Read-only, case-insensitive view of a WSGI environ's request headers."""

    def __init__(self, environ: Mapping[str, Any]) -> None:
        self._environ = environ

    def __getitem__(self, name: str) -> str:
        key = name.upper().replace("-", "_")
        if key in _UNPREFIXED and key in self._environ:
            return str(self._environ[key])
        return str(self._environ["HTTP_" + key])

    def __iter__(self) -> Iterator[str]:
        for key in self._environ:
            if key in _UNPREFIXED or (key.startswith("HTTP_") and key[5:] not in _UNPREFIXED):
                yield key.removeprefix("HTTP_").replace("_", "-").title()

    def __len__(self) -> int:
        return sum(1 for _ in self)


class WebhookApp:
    """WSGI application: every request to it is a webhook delivery.

    Built in a process that serves (a gunicorn or uWSGI worker, waitress, mod_wsgi; see
    `iverton_webhooks._placement`), it starts the receiver's processing at once:
    events left over from a previous run are recovered with no request. Under a pre-fork
    master (gunicorn ``--preload``) it starts in each forked worker instead, and in a
    script that only imports it, not at all (call ``receiver.start()`` to start there).

    With the receiver's ``endpoint_registry``, a path below the app's root names a
    registered endpoint: ``/acme`` (or ``/acme/``) is endpoint ``acme``.
    """

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        start_if_serving(receiver)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        headers = EnvironHeaders(environ)
        method = environ["REQUEST_METHOD"]
        name = named_endpoint(self.receiver, environ.get("PATH_INFO", "").lstrip("/") or None)
        reply = handle(self.receiver, method, headers, environ["wsgi.input"].read, endpoint=name)
        out = [*reply.headers, ("Content-Length", str(len(reply.body)))]
        start_response(f"{reply.status} {_REASONS.get(reply.status, '')}", out)
        return [reply.body]
