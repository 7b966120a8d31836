"""The Flask view's own behaviour, through Flask's test client: app context, Flask's caps
and streams, HEAD/OPTIONS. The answers every adapter shares are in tests/adapters."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from flask import Flask

from iverton_webhooks import MemoryStore, Receiver, Status, sign
from iverton_webhooks.samples import sample_body
from tests.conftest import signed, signed_headers
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


@pytest.mark.parametrize("method", ["HEAD", "OPTIONS", "PUT"])
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
    def record(self, *args: object, **kwargs: object) -> bool:
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
