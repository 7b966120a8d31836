"""The adapter kit: every rule a web-framework adapter would otherwise repeat, framework-free.

An adapter (Django view, Flask blueprint, Starlette middleware, `iverton_webhooks.wsgi`)
only says how to read its request's body and how to write a `Reply`::

    reply = handle(receiver, request.method, request.headers, request.stream.read)

The kit owns the rules: a request that is not a POST gets the core's 405 with nothing
read; the body is read under the receiver's cap (`handle`), and one that cannot be read to
its end (the client went away) is a 400, logged on one line; ``/webhooks/iverton`` and
``/webhooks/iverton/`` are one endpoint (`normalise_path`), as a redirect would fail the
sender's POST; a receiver is given ready or built from a secret, never both, and a missing
secret says where this adapter's secret goes (`make_receiver`).

>>> from iverton_webhooks import Receiver
>>> receiver = Receiver(secret="whsec_kit_doc", store="memory://", runner="inline")
>>> def explode(size: int) -> bytes:
...     raise AssertionError("the body was read")
>>> handle(receiver, "PUT", {"Content-Length": "2000000"}, explode).status
405
>>> handle(receiver, "POST", {"Content-Length": "3000000"}, explode).status
413
>>> normalise_path("/webhooks/iverton/"), path_forms("/webhooks/iverton/")
('/webhooks/iverton', ('/webhooks/iverton', '/webhooks/iverton/'))
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ._body import (
    BodyTooLarge,
    BodyUnreadable,
    NextChunk,
    read_capped,
    read_capped_async,
)
from ._errors import ConfigurationError
from ._receiver import TOO_LARGE, UNREADABLE, HeadersLike, Receiver, Reply, header
from ._settings import Settings
from ._signature import validate_secrets
from ._text import printable

__all__ = [
    "BodyTooLarge",
    "BodyUnreadable",
    "check_secrets",
    "handle",
    "handle_async",
    "make_receiver",
    "normalise_path",
    "path_forms",
    "serves_registry",
]

log = logging.getLogger("iverton_webhooks")

Headers = HeadersLike | Mapping[str, str]
#: ``read(n)``: up to ``n`` more bytes of the body, ``b""`` at its end (a blocking stream).
Read = Callable[[int], bytes]


def make_receiver(
    receiver: Receiver | None,
    secret: str | None,
    secrets: Sequence[str] | None,
    *,
    missing_secret: str,
    **options: Any,
) -> Receiver:
    """``receiver`` as given, or a new `Receiver` built from ``secret``/``secrets``
    and ``options``.

    ``missing_secret`` tells this adapter's user where the secret goes (a keyword, a
    config key, a setting); it ends the error raised when there is none.
    """
    if receiver is not None:
        if secret or secrets or options:
            raise ConfigurationError(
                "pass either receiver= (a ready Receiver) or secret=/secrets= with Receiver "
                "options, not both"
            )
        return receiver
    check_secrets(
        secret, secrets, missing_secret=missing_secret, required=not serves_registry(options)
    )
    return Receiver(secret, secrets=secrets, **options)


def serves_registry(options: Mapping[str, Any]) -> bool:
    """Whether `Receiver` options turn the endpoint registry on (``endpoint_registry=``,
    else ``settings=``'s): the receiver's own secret is then optional."""
    given = options.get("endpoint_registry")
    if given is not None:
        return given is True
    settings = options.get("settings")
    return isinstance(settings, Settings) and settings.endpoint_registry


def check_secrets(
    secret: str | None,
    secrets: Sequence[str] | None,
    *,
    missing_secret: str,
    required: bool = True,
) -> None:
    """Refuse, before anything is built, a missing secret when one is ``required``
    (saying ``missing_secret``) and whatever `validate_secrets` refuses (a string where
    the list goes, blanks, placeholders)."""
    if required and not secret and not secrets:
        raise ConfigurationError(f"no webhook secret configured: {missing_secret}")
    if secrets is not None:
        validate_secrets(secrets)
    if secret is not None:
        validate_secrets([secret])


def normalise_path(path: str) -> str:
    """``path`` without trailing slashes (``"/"`` stays ``"/"``): the one form to compare."""
    return path.rstrip("/") or "/"


def path_forms(path: str) -> tuple[str, ...]:
    """Both spellings of an endpoint path, for routers that match exactly."""
    bare = normalise_path(path)
    return (bare,) if bare == "/" else (bare, bare + "/")


def named_endpoint(receiver: Receiver, name: object) -> str | None:
    """The registered endpoint ``name``, the URL's part below the webhook path, names
    when the receiver serves the registry (else None: the receiver's own endpoint).
    ``acme`` and ``acme/`` name one endpoint, as a webhook path's two forms are one."""
    if receiver.directory is None or name is None:
        return None
    return str(name).rstrip("/")


def handle(
    receiver: Receiver,
    method: str,
    headers: Headers,
    read: Read,
    *,
    limit: int | None = None,
    endpoint: str | None = None,
) -> Reply:
    """Answer one request from a blocking body stream (to the registered endpoint
    ``endpoint`` when the URL names one).

    ``read`` is not called for a non-POST request nor for a declared Content-Length over
    the cap (``receiver.max_body_bytes``, or ``limit`` when a framework's own cap is
    lower); a body with no length is read until it ends or passes the cap. ``read`` may
    raise `BodyTooLarge` (a 413); anything else it raises is an unreadable body (a 400).
    """
    if method.upper() != "POST":
        return receiver.receive(method, b"", headers, endpoint)  # the 405, with nothing read
    try:
        body = read_capped(read, _cap(receiver, limit), header(headers, "Content-Length"))
    except BodyTooLarge:
        return TOO_LARGE
    except BodyUnreadable as error:
        return unreadable(receiver, error)
    return TOO_LARGE if body is None else receiver.receive(method, body, headers, endpoint)


async def handle_async(
    receiver: Receiver,
    method: str,
    headers: Headers,
    next_chunk: NextChunk,
    *,
    limit: int | None = None,
    endpoint: str | None = None,
) -> Reply:
    """`handle` for async adapters, reading the body chunk by chunk.

    Whatever ``next_chunk`` raises (the client disconnected) is an unreadable body: the
    400 reply, which a server drops when its client is gone.
    """
    if method.upper() != "POST":
        return await receiver.receive_async(method, b"", headers, endpoint)
    cap = _cap(receiver, limit)
    try:
        body = await read_capped_async(next_chunk, cap, header(headers, "Content-Length"))
    except BodyUnreadable as error:
        return unreadable(receiver, error)
    if body is None:
        return TOO_LARGE
    return await receiver.receive_async(method, body, headers, endpoint)


def unreadable(receiver: Receiver, error: BodyUnreadable) -> Reply:
    """The 400 for a body that could not be read, and its one log line (no traceback:
    a client that goes away mid-body is not a fault of the app)."""
    log.warning(
        "endpoint %s: the request body could not be read (%s): answered 400",
        printable(receiver.endpoint),
        printable(str(error)),
    )
    return UNREADABLE


def _cap(receiver: Receiver, limit: int | None) -> int:
    cap = receiver.max_body_bytes
    return cap if limit is None else min(cap, limit)
