from __future__ import annotations

import io
from typing import Any

from iverton_webhooks import Receiver
from iverton_webhooks._body import CappedBody, read_capped
from iverton_webhooks.samples import sample_body
from iverton_webhooks.wsgi import WebhookApp
from tests.conftest import SECRET, signed_headers


class CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.bytes_read = 0

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.bytes_read += len(chunk)
        return chunk


def call(
    app: WebhookApp, method: str, body: bytes, headers: dict[str, str], length: bool = True
) -> tuple[int, bytes, CountingStream]:
    stream = CountingStream(body)
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "wsgi.input": stream}
    if length:
        environ["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers.items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    status: list[str] = []
    answer = b"".join(app(environ, lambda s, h: status.append(s)))
    return int(status[0].split()[0]), answer, stream


def test_wsgi_app_paths() -> None:
    app = WebhookApp(Receiver(SECRET, store="memory://", runner="inline", max_body_bytes=4096))
    body = sample_body("deal.won")
    assert call(app, "POST", body, signed_headers(body))[0] == 200
    assert call(app, "POST", body, signed_headers(body), length=False)[:2] == (
        200,
        b'{"status":"duplicate"}',
    )
    status, _, stream = call(app, "GET", body, signed_headers(body))
    assert (status, stream.bytes_read) == (405, 0)
    big = b"x" * 10_000
    status, _, stream = call(app, "POST", big, signed_headers(big), length=False)
    assert status == 413
    assert stream.bytes_read == 4097  # stopped one byte past the cap
    status, _, stream = call(app, "POST", big, signed_headers(big))
    assert status == 413
    assert stream.bytes_read == 0  # declared too large: answered unread


def test_a_content_length_of_unicode_digits_is_no_length_not_a_500() -> None:
    # "²".isdigit() is True but int("²") raises: only ASCII digits make a length.
    app = WebhookApp(Receiver(SECRET, store="memory://", runner="inline"))
    body = sample_body("deal.won", id="evt_superscript")
    for length in ("\u00b2", "1\u00b2", "\u0661\u0662"):  # ², 1², Arabic-Indic 12
        stream = CountingStream(body)
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "POST",
            "wsgi.input": stream,
            "CONTENT_LENGTH": length,
            "HTTP_X_IVERTON_SIGNATURE": signed_headers(body)["X-Iverton-Signature"],
        }
        status: list[str] = []
        b"".join(app(environ, lambda s, h, out=status: out.append(s)))
        assert int(status[0].split()[0]) < 500, length


def test_a_put_or_get_is_405_without_reading_even_a_huge_body() -> None:
    app = WebhookApp(Receiver(SECRET, store="memory://", runner="inline", max_body_bytes=4096))
    for method in ("PUT", "GET"):
        status, _, stream = call(app, method, b"x" * 3_000_000, {})
        assert (status, stream.bytes_read) == (405, 0)


def test_capped_body_refuses_once_past_the_limit_and_keeps_nothing() -> None:
    body = CappedBody(limit=10, content_length="abc")  # garbage length is ignored
    assert not body.too_large
    assert body.add(b"0123456789")
    assert not body.add(b"!")
    assert body.getvalue() == b""
    assert read_capped(io.BytesIO(b"0123456789").read, 10) == b"0123456789"
    assert read_capped(io.BytesIO(b"short").read, 10, content_length=99) is None
