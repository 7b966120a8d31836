"""Reading a request body without ever holding much more than the size cap.

Adapters do the I/O (a WSGI stream, ASGI messages); this decides when to stop.

>>> body = CappedBody(limit=8)
>>> body.add(b"12345"), body.add(b"678"), body.getvalue()
(True, True, b'12345678')
>>> body.add(b"9"), body.too_large
(False, True)
>>> CappedBody(limit=8, content_length="9").too_large
True
>>> import io
>>> read_capped(io.BytesIO(b"x" * 20).read, limit=8) is None
True
>>> declared_length("12"), declared_length("\u00b2"), declared_length("-1")
(12, None, None)
>>> def cut_short(size: int) -> bytes:
...     raise OSError("no more data")
>>> read_capped(cut_short, limit=8)
Traceback (most recent call last):
...
iverton_webhooks._body.BodyUnreadable: OSError: no more data
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ._errors import WebhookError

#: ``next_chunk()``: the next piece of the body and whether more follows (ASGI style).
NextChunk = Callable[[], Awaitable[tuple[bytes, bool]]]


class BodyTooLarge(Exception):
    """Raised by an adapter's ``read`` when its framework refuses the body as too large
    (Django's ``DATA_UPLOAD_MAX_MEMORY_SIZE``, Flask's ``MAX_CONTENT_LENGTH``): a 413."""


class BodyUnreadable(WebhookError):
    """The body could not be read to its end: the client disconnected or half-closed
    mid-body, a chunk was cut short, the server's stream failed. Nothing was signed
    that could be verified, so the adapters answer 400 (a client that is gone never
    sees it). The stream's own exception is kept as ``__cause__``."""

    @classmethod
    def from_error(cls, error: BaseException) -> BodyUnreadable:
        # Servers raise their own types (gunicorn's NoMoreData, Werkzeug's and
        # Starlette's client-disconnect errors): the name says more than the text.
        text = str(error)
        return cls(f"{type(error).__name__}: {text}" if text else type(error).__name__)


def declared_length(content_length: str | int | None) -> int | None:
    """The Content-Length as a number, or None when absent or not a plain number.

    Only ASCII digits make a length: ``str.isdigit`` also accepts ``"²"`` and other
    Unicode digits that ``int()`` then refuses.
    """
    if isinstance(content_length, int):
        return content_length if content_length >= 0 else None
    if content_length and content_length.isascii() and content_length.isdigit():
        return int(content_length)
    return None


class CappedBody:
    """Collects chunks until the body ends or passes ``limit`` bytes.

    A declared Content-Length over the limit marks the body too large before a byte is
    read; the running total is checked on every chunk, so a chunked body or a
    Content-Length that lies cannot make it buffer past the limit.
    """

    __slots__ = ("_chunks", "limit", "size", "too_large")

    def __init__(self, limit: int, content_length: str | int | None = None) -> None:
        self.limit = limit
        self.size = 0
        self._chunks: list[bytes] = []
        declared = declared_length(content_length)
        self.too_large = declared is not None and declared > limit

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; False (and nothing kept) once the total passes the limit."""
        self.size += len(chunk)
        if self.size > self.limit:
            self.too_large = True
            self._chunks.clear()
        if self.too_large:
            return False
        self._chunks.append(chunk)
        return True

    def getvalue(self) -> bytes:
        return self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)


def read_capped(
    read: Callable[[int], bytes], limit: int, content_length: str | int | None = None
) -> bytes | None:
    """Read a blocking stream to its end, or None once it is known to pass ``limit``.

    With a declared length, reads exactly that many bytes (a WSGI server may block on a
    read past it); without one (chunked), reads to the end of the stream, asking for at
    most one byte past the limit in all. Loops because a stream may return fewer bytes
    than asked for before its end.

    Any exception from ``read`` but `BodyTooLarge` becomes `BodyUnreadable`,
    whatever the server's stream raises for a body cut short; so does a stream that
    ends before the declared length.
    """
    body = CappedBody(limit, content_length)
    declared = declared_length(content_length)
    end = limit + 1 if declared is None else declared
    while not body.too_large and body.size < end:
        try:
            chunk = read(end - body.size)
        except BodyTooLarge:
            raise
        except Exception as error:
            raise BodyUnreadable.from_error(error) from error
        if not chunk:
            break
        body.add(chunk)
    if body.too_large:
        return None
    if declared is not None and body.size < declared:
        # The stream ended before the declared length: the client stopped sending.
        raise BodyUnreadable(f"the body ended after {body.size} of the {declared} bytes declared")
    return body.getvalue()


async def read_capped_async(
    next_chunk: NextChunk, limit: int, content_length: str | int | None = None
) -> bytes | None:
    """`read_capped` for an ASGI-style body: chunks until the last one, or None
    once the body is known to pass ``limit``. Any exception from ``next_chunk`` (a
    client that disconnected) becomes `BodyUnreadable`."""
    body = CappedBody(limit, content_length)
    more = True
    while more and not body.too_large:
        try:
            chunk, more = await next_chunk()
        except Exception as error:
            raise BodyUnreadable.from_error(error) from error
        body.add(chunk)
    return None if body.too_large else body.getvalue()
