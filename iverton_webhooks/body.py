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
"""

from __future__ import annotations

from collections.abc import Callable


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
    """
    body = CappedBody(limit, content_length)
    declared = declared_length(content_length)
    end = limit + 1 if declared is None else declared
    while not body.too_large and body.size < end:
        chunk = read(end - body.size)
        if not chunk:
            break
        body.add(chunk)
    return None if body.too_large else body.getvalue()
