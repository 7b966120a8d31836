"""The adapter kit: every rule a web-framework adapter would otherwise repeat, framework-free.

An adapter (Django view, Flask blueprint, Starlette middleware, :mod:`iverton_webhooks.wsgi`)
only says how to read its request's body and how to write a :class:`Reply`::

    reply = handle(receiver, request.method, request.headers, request.stream.read)

The kit owns the rules:

- a request that is not a POST gets the core's 405 without a byte of its body being read
  (a 2 MB PUT is not read, a 3 MB GET is not a 413);
- the body is read under the receiver's cap (or a lower framework cap): a declared
  Content-Length over it is a 413 before reading; a chunked body with no Content-Length is
  read until it ends or passes the cap; only ASCII digits are a length;
- ``/webhooks/iverton`` and ``/webhooks/iverton/`` are one endpoint (:func:`normalise_path`):
  a redirect between them would turn the sender's POST into a failed delivery;
- a receiver is either given ready or built from a secret, never both, and a missing secret
  is a :class:`ConfigurationError` that says where this adapter's secret goes
  (:func:`make_receiver`).

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

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .body import CappedBody, declared_length, read_capped
from .errors import ConfigurationError
from .receiver import TOO_LARGE, HeadersLike, Receiver, Reply, header
from .signature import validate_secrets

__all__ = [
    "BodyTooLarge",
    "check_secrets",
    "handle",
    "handle_async",
    "make_receiver",
    "normalise_path",
    "path_forms",
]

Headers = HeadersLike | Mapping[str, str]
#: ``read(n)``: up to ``n`` more bytes of the body, ``b""`` at its end (a blocking stream).
Read = Callable[[int], bytes]
#: ``next_chunk()``: the next piece of the body and whether more follows (ASGI style).
NextChunk = Callable[[], Awaitable[tuple[bytes, bool]]]


class BodyTooLarge(Exception):
    """Raised by an adapter's ``read`` when its framework refuses the body as too large
    (Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``, Flask's ``MAX_CONTENT_LENGTH``): a 413."""


def make_receiver(
    receiver: Receiver | None,
    secret: str | None,
    secrets: Sequence[str] | None,
    *,
    missing_secret: str,
    **options: Any,
) -> Receiver:
    """``receiver`` as given, or a new :class:`Receiver` built from ``secret``/``secrets``
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
    check_secrets(secret, secrets, missing_secret=missing_secret)
    return Receiver(secret, secrets=secrets, **options)


def check_secrets(
    secret: str | None, secrets: Sequence[str] | None, *, missing_secret: str
) -> None:
    """Refuse, before anything is built, a missing secret (saying ``missing_secret``) and
    whatever :func:`~iverton_webhooks.signature.validate_secrets` refuses (a string where
    the list goes, blanks, placeholders)."""
    if not secret and not secrets:
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


def handle(
    receiver: Receiver, method: str, headers: Headers, read: Read, *, limit: int | None = None
) -> Reply:
    """Answer one request from a blocking body stream.

    ``read`` is not called for a non-POST request nor for a declared length over the cap
    (``receiver.max_body_bytes``, or ``limit`` when a framework's own cap is lower); it may
    raise :class:`BodyTooLarge`.
    """
    if method.upper() != "POST":
        return receiver.receive(method, b"", headers)  # the 405, with nothing read
    cap = _cap(receiver, limit)
    length = declared_length(header(headers, "Content-Length"))
    if length is not None and length > cap:
        return TOO_LARGE
    try:
        body = read_capped(read, cap, length)
    except BodyTooLarge:
        return TOO_LARGE
    if body is None:
        return TOO_LARGE
    return receiver.receive(method, body, headers)


async def handle_async(
    receiver: Receiver,
    method: str,
    headers: Headers,
    next_chunk: NextChunk,
    *,
    limit: int | None = None,
) -> Reply:
    """:func:`handle` for async adapters, reading the body chunk by chunk.

    ``next_chunk`` may raise to abandon the request (e.g. the client disconnected).
    """
    if method.upper() != "POST":
        return await receiver.receive_async(method, b"", headers)
    cap = _cap(receiver, limit)
    body = CappedBody(cap, header(headers, "Content-Length"))
    more = True
    while more and not body.too_large:
        chunk, more = await next_chunk()
        body.add(chunk)
    if body.too_large:
        return TOO_LARGE
    return await receiver.receive_async(method, body.getvalue(), headers)


def _cap(receiver: Receiver, limit: int | None) -> int:
    cap = receiver.max_body_bytes
    return cap if limit is None else min(cap, limit)
