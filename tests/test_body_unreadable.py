"""The core's one rule for a body that cannot be read: any exception from the stream (or
a stream that ends before its declared length) is ``BodyUnreadable``, which the adapter
kit answers 400 with one log line, never a traceback."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Callable

import pytest

from iverton_webhooks import Receiver
from iverton_webhooks._body import BodyUnreadable, read_capped, read_capped_async
from iverton_webhooks._receiver import UNREADABLE
from iverton_webhooks.adapter import BodyTooLarge, handle, handle_async
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed_headers


class NoMoreData(OSError):
    """What gunicorn's stream raises for a chunk cut short."""


def broken(after: bytes = b"") -> io.RawIOBase:
    class Stream(io.RawIOBase):
        given = False

        def read(self, size: int = -1) -> bytes:
            if not self.given and after:
                self.given = True
                return after[:size]
            raise NoMoreData("No more data after: None")

    return Stream()


@pytest.fixture
def receiver() -> Receiver:
    return Receiver(secret=SECRET, store="memory://", runner="inline")


def test_any_error_of_the_read_is_unreadable_and_keeps_its_cause() -> None:
    with pytest.raises(BodyUnreadable, match="NoMoreData") as caught:
        read_capped(broken(b"0123456789").read, limit=1000)
    assert isinstance(caught.value.__cause__, NoMoreData)
    with pytest.raises(BodyTooLarge):  # a framework's own cap is still a 413
        read_capped(_raises(BodyTooLarge()), limit=1000)


def test_a_stream_that_ends_before_its_declared_length_is_unreadable() -> None:
    with pytest.raises(BodyUnreadable, match="10 of the 256 bytes"):
        read_capped(io.BytesIO(b"0123456789").read, limit=1000, content_length="256")
    assert read_capped(io.BytesIO(b"0123456789").read, 1000, content_length="10") == b"0123456789"


def test_handle_answers_400_with_one_line_and_no_traceback(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    body = sample_body("deal.won", id="evt_cut")
    with caplog.at_level(logging.DEBUG, logger="iverton_webhooks"):
        reply = handle(receiver, "POST", signed_headers(body), broken(body[:10]).read)
    assert (reply.status, reply.body) == (400, UNREADABLE.body)
    assert [r.getMessage() for r in caplog.records] == [
        "endpoint default: the request body could not be read "
        "(NoMoreData: No more data after: None): answered 400"
    ]
    assert all(r.exc_info is None for r in caplog.records)
    assert receiver.processor.get("evt_cut") is None


def test_handle_async_answers_400_when_the_client_goes(
    receiver: Receiver, caplog: pytest.LogCaptureFixture
) -> None:
    class ClientDisconnect(Exception):
        pass

    chunks = iter([(b'{"id": "evt_', True)])

    async def next_chunk() -> tuple[bytes, bool]:
        for chunk in chunks:
            return chunk
        raise ClientDisconnect

    with caplog.at_level(logging.WARNING, logger="iverton_webhooks"):
        reply = asyncio.run(handle_async(receiver, "POST", {}, next_chunk))
    assert reply is UNREADABLE
    (record,) = caplog.records
    assert "ClientDisconnect" in record.getMessage()


def test_read_capped_async_still_caps() -> None:
    parts = iter([(b"x" * 6, True), (b"x" * 6, True)])

    async def next_chunk() -> tuple[bytes, bool]:
        return next(parts)

    assert asyncio.run(read_capped_async(next_chunk, limit=10)) is None


def _raises(error: Exception) -> Callable[[int], bytes]:
    def read(size: int) -> bytes:
        raise error

    return read
