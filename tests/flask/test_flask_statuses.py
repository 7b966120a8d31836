"""Every answer of the Flask view, through Flask's test client."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import datetime

import pytest
from flask import Flask

from iverton_webhooks import MemoryStore, Receiver, Status, sign
from iverton_webhooks.samples import sample_body
from tests.conftest import SECRET, signed, signed_headers
from tests.flask.flask_helpers import PREFIX, Seen, receiver_of

MakeApp = Callable[..., Flask]


def test_signed_event_is_accepted_recorded_and_handled_in_an_app_context(
    make_app: MakeApp, seen: Seen
) -> None:
    app = make_app("shop")
    body, headers = signed("deal.won", id="evt_ok")
    response = app.test_client().post(PREFIX, data=body, headers=headers)
    assert response.status_code == 200
    assert response.get_json() == {"status": "accepted"}
    assert response.headers["Content-Type"] == "application/json"
    assert seen.runs == [("evt_ok", "shop")]
    stored = receiver_of(app).store.get("evt_ok")
    assert stored is not None
    assert stored.body == body  # the exact bytes, not re-serialised JSON
    assert stored.status is Status.DONE


def test_trailing_slash_is_the_same_endpoint_without_a_redirect(
    make_app: MakeApp, seen: Seen
) -> None:
    client = make_app().test_client()
    body, headers = signed(id="evt_slash")
    response = client.post(PREFIX + "/", data=body, headers=headers)
    assert response.status_code == 200
    assert client.post(PREFIX, data=body, headers=headers).get_json() == {"status": "duplicate"}
    assert seen.ids == ["evt_slash"]


def test_duplicate_is_acknowledged_and_not_processed_again(make_app: MakeApp, seen: Seen) -> None:
    app = make_app()
    client = app.test_client()
    body, headers = signed(id="evt_dup")
    replies = [client.post(PREFIX, data=body, headers=headers) for _ in range(3)]
    assert [r.status_code for r in replies] == [200, 200, 200]
    assert [r.get_json()["status"] for r in replies] == ["accepted", "duplicate", "duplicate"]
    assert seen.ids == ["evt_dup"]
    stored = receiver_of(app).store.get("evt_dup")
    assert stored is not None
    assert stored.deliveries == 3


@pytest.mark.parametrize(
    "content_type",
    [
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=xyz",
        "text/plain; charset=latin-1",
        "application/octet-stream",
        None,
    ],
)
def test_raw_body_verifies_whatever_the_content_type(
    make_app: MakeApp, seen: Seen, content_type: str | None
) -> None:
    client = make_app().test_client()
    body = sample_body("contact.created", id="evt_ct", data={"first_name": "Zoë"})
    headers = {"X-Iverton-Signature": sign(body, SECRET)}
    if content_type:
        headers["Content-Type"] = content_type
    response = client.post(PREFIX, data=body, headers=headers)
    assert response.status_code == 200, response.data
    assert seen.ids == ["evt_ct"]


def test_a_real_form_body_is_verified_as_bytes_then_refused_as_not_json(
    make_app: MakeApp, seen: Seen
) -> None:
    # A 400 (not 401) shows the signature was checked against the raw form bytes.
    client = make_app().test_client()
    body = b"payload=%7B%22id%22%3A1%7D&b=2"
    headers = {
        "X-Iverton-Signature": sign(body, SECRET),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    response = client.post(PREFIX, data=body, headers=headers)
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid payload"
    assert seen.runs == []


@pytest.mark.parametrize(
    ("name", "mutate"),
    [
        ("missing header", lambda body, h: (body, {})),
        ("forged digest", lambda body, h: (body, {"X-Iverton-Signature": "sha256=" + "0" * 64})),
        ("other secret", lambda body, h: (body, {"X-Iverton-Signature": sign(body, "whsec_no")})),
        ("truncated body", lambda body, h: (body[:-7], h)),
        ("extra byte", lambda body, h: (body + b" ", h)),
        ("malformed header", lambda body, h: (body, {"X-Iverton-Signature": "md5=abc"})),
        ("short digest", lambda body, h: (body, {"X-Iverton-Signature": h[next(iter(h))][:20]})),
    ],
)
def test_bad_signatures_get_one_401_and_nothing_is_stored(
    make_app: MakeApp, seen: Seen, name: str, mutate: Callable[..., tuple[bytes, dict[str, str]]]
) -> None:
    app = make_app()
    body = sample_body("deal.won", id="evt_forged")
    sent_body, headers = mutate(body, {"X-Iverton-Signature": sign(body, SECRET)})
    response = app.test_client().post(PREFIX, data=sent_body, headers=headers)
    assert response.status_code == 401, name
    assert response.get_json() == {"error": "invalid signature"}
    assert receiver_of(app).store.count() == 0
    assert seen.runs == []


@pytest.mark.parametrize(
    "body",
    [
        b"not json at all",
        b"\xff\xfe\x00garbage",  # not UTF-8
        b"[1, 2, 3]",
        b'{"type": "deal.won", "created_at": "2024-01-15T10:30:00Z", "data": {"id": "d"}}',
        b'{"id": "evt_x", "type": "deal.won", "created_at": "yesterday", "data": {"id": "d"}}',
        b"",
    ],
)
def test_signed_but_malformed_payloads_get_400(make_app: MakeApp, seen: Seen, body: bytes) -> None:
    app = make_app()
    response = app.test_client().post(PREFIX, data=body, headers=signed_headers(body))
    assert response.status_code == 400
    assert response.get_json()["error"] == "invalid payload"
    assert receiver_of(app).store.count() == 0
    assert seen.runs == []


def test_unknown_event_type_is_acknowledged(make_app: MakeApp, seen: Seen) -> None:
    client = make_app().test_client()
    event = {"id": "evt_new", "type": "invoice.paid", "created_at": "2024-01-15T10:30:00Z"}
    body = json.dumps({**event, "data": {"id": "inv_1"}}).encode()
    response = client.post(PREFIX, data=body, headers=signed_headers(body))
    assert response.status_code == 200
    assert response.get_json()["status"] == "accepted"
    assert seen.ids == ["evt_new"]  # "*" handlers see it


@pytest.mark.parametrize("method", ["GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS"])
def test_other_methods_get_the_cores_405_with_allow(make_app: MakeApp, method: str) -> None:
    app = make_app()
    body, headers = signed()
    response = app.test_client().open(PREFIX, method=method, data=body, headers=headers)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    if method != "HEAD":
        assert response.get_json() == {"error": "method not allowed"}
    assert receiver_of(app).store.count() == 0


class ExplodingStream(io.BytesIO):
    """A request body of ``size`` bytes that fails the test if anyone reads it."""

    def __init__(self, size: int) -> None:
        super().__init__(b"x" * size)

    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("the body was read")

    def readinto(self, buffer: object) -> int:
        raise AssertionError("the body was read")

    readline = read1 = read


def test_body_over_the_receiver_cap_gets_413_before_reading(make_app: MakeApp) -> None:
    app = make_app(max_body_bytes=1000)
    body, headers = signed()
    over = body + b" " * (1001 - len(body))
    response = app.test_client().post(PREFIX, data=over, headers=signed_headers(over))
    assert response.status_code == 413
    assert response.get_json() == {"error": "body too large"}
    unread = app.test_client().post(
        PREFIX,
        input_stream=ExplodingStream(5000),
        headers=headers,
    )
    assert unread.status_code == 413
    exact = body + b" " * (1000 - len(body))
    ok = app.test_client().post(PREFIX, data=exact, headers=signed_headers(exact))
    assert ok.status_code == 200


def test_flask_max_content_length_also_caps_with_the_cores_413(make_app: MakeApp) -> None:
    app = make_app(config={"MAX_CONTENT_LENGTH": 600})
    body, headers = signed("deal.won")  # about 400 bytes: under both caps
    assert app.test_client().post(PREFIX, data=body, headers=headers).status_code == 200
    over = sample_body("deal.won", data={"notes": "x" * 600})
    unread = app.test_client().post(
        PREFIX,
        input_stream=ExplodingStream(len(over)),
        headers=signed_headers(over),
    )
    assert unread.status_code == 413
    assert unread.get_json() == {"error": "body too large"}  # ours, not Flask's HTML page


def test_chunked_body_without_length_is_capped_while_reading(make_app: MakeApp) -> None:
    app = make_app(max_body_bytes=1000)
    over = sample_body("deal.won", data={"notes": "x" * 5000})
    response = app.test_client().post(
        PREFIX,
        input_stream=io.BytesIO(over),
        headers={**signed_headers(over), "Transfer-Encoding": "chunked"},
        environ_base={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413
    body, headers = signed("deal.won", id="evt_chunked")
    small = app.test_client().post(
        PREFIX,
        input_stream=io.BytesIO(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_base={"wsgi.input_terminated": True},
    )
    assert small.status_code == 200
    assert receiver_of(app).store.get("evt_chunked") is not None


class Dribble(io.BytesIO):
    """A WSGI input that returns at most 7 bytes per read, as a stream may."""

    def read(self, size: int | None = -1) -> bytes:
        return super().read(7 if size is None or size < 0 else min(size, 7))


def test_chunked_body_arriving_in_short_reads_is_read_whole(make_app: MakeApp) -> None:
    app = make_app(max_body_bytes=1000)
    body, headers = signed("deal.won", id="evt_dribble")
    response = app.test_client().post(
        PREFIX,
        input_stream=Dribble(body),
        headers={**headers, "Transfer-Encoding": "chunked"},
        environ_base={"wsgi.input_terminated": True},
    )
    assert response.status_code == 200
    over = sample_body("deal.won", data={"notes": "x" * 2000})
    response = app.test_client().post(
        PREFIX,
        input_stream=Dribble(over),
        headers={**signed_headers(over), "Transfer-Encoding": "chunked"},
        environ_base={"wsgi.input_terminated": True},
    )
    assert response.status_code == 413


class BrokenStore(MemoryStore):
    def record(self, event_id: str, event_type: str, created_at: datetime, body: bytes) -> bool:
        raise OSError("disk on fire")


def test_store_down_gets_503_so_the_sender_retries(make_app: MakeApp, seen: Seen) -> None:
    client = make_app(store=BrokenStore()).test_client()
    body, headers = signed()
    response = client.post(PREFIX, data=body, headers=headers)
    assert response.status_code == 503
    assert "retry" in response.get_json()["error"]
    assert seen.runs == []


def test_failing_handler_does_not_change_the_answer(make_app: MakeApp) -> None:
    from iverton_webhooks import Router

    router = Router()

    @router.on("deal.won")
    def broken(event: object) -> None:
        raise RuntimeError("CRM down")

    app = make_app(router=router)
    body, headers = signed("deal.won", id="evt_fails")
    response = app.test_client().post(PREFIX, data=body, headers=headers)
    assert response.status_code == 200
    stored = receiver_of(app).store.get("evt_fails")
    assert stored is not None
    assert stored.status is Status.FAILED
    assert "CRM down" in (stored.last_error or "")


def test_a_ready_receiver_is_used_as_given(make_app: MakeApp, seen: Seen) -> None:
    receiver = Receiver(secret="whsec_ready", store="memory://", runner="inline")
    app = make_app(receiver=receiver)
    body = sample_body("deal.won", id="evt_ready")
    response = app.test_client().post(
        PREFIX, data=body, headers={"X-Iverton-Signature": sign(body, "whsec_ready")}
    )
    assert response.status_code == 200
    assert receiver_of(app) is receiver
    assert receiver.store.get("evt_ready") is not None
